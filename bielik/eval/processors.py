"""Document filters (lm-eval's ``process_docs``) of the PolQA and PoQuAD tasks.

Behaviour as in SpeakLeash's ``polish_polqa/utils.py`` and ``polish_poquad/utils.py``: one document
per unique (passage, question) pair — or per unique question for closed-book QA — with the answers
list parsed from its Python-literal string. Values read from CSV arrive as strings, so ``relevant``
and ``is_impossible`` are normalised to booleans.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

from bielik.errors import ConfigError, DataError

NO_INFORMATION = "Brak informacji"


def _bool(value) -> bool:
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("true", "1", "yes", "tak"):
            return True
        if v in ("false", "0", "no", "nie", ""):
            return False
        raise DataError(f"expected a boolean, got {value!r}")
    return bool(value)


def _answers(value) -> list:
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (SyntaxError, ValueError):
            raise DataError(f"answers {value[:80]!r} is not a Python/JSON list literal") from None
    return list(value)


def _unique(docs: list[dict], key: Callable[[dict], object]) -> list[dict]:
    seen, out = set(), []
    for d in docs:
        k = key(d)
        if k not in seen:
            seen.add(k)
            out.append(d)
    return out


def polqa_reranking(docs: list[dict]) -> list[dict]:
    docs = [{**d, "relevant": _bool(d["relevant"])} for d in docs]
    return _unique(docs, lambda d: (d["passage_text"], d["question"]))


def polqa_open_book(docs: list[dict]) -> list[dict]:
    docs = [{**d, "relevant": _bool(d["relevant"])} for d in docs]
    docs = _unique([d for d in docs if d["relevant"]], lambda d: (d["passage_text"], d["question"]))
    return [{**d, "answers": _answers(d["answers"])} for d in docs]


def polqa_closed_book(docs: list[dict]) -> list[dict]:
    docs = [{**d, "relevant": _bool(d["relevant"])} for d in docs]
    docs = _unique([d for d in docs if d["relevant"]], lambda d: d["question"])
    return [{**d, "answers": _answers(d["answers"])} for d in docs]


def _poquad(docs: list[dict], positive_only: bool) -> list[dict]:
    out = []
    for d in docs:
        d = {**d, "is_impossible": _bool(d.get("is_impossible", False))}
        if positive_only and d["is_impossible"]:
            continue
        if d["is_impossible"]:
            d["answers"] = {"text": [NO_INFORMATION], "answer_start": [0], "generative_answer": [NO_INFORMATION]}
        out.append(d)
    return _unique(out, lambda d: (d["context"], d["question"]))


def poquad_open(docs: list[dict]) -> list[dict]:
    return _poquad(docs, positive_only=False)


def poquad_open_positive(docs: list[dict]) -> list[dict]:
    return _poquad(docs, positive_only=True)


PROCESSORS: dict[str, Callable[[list[dict]], list[dict]]] = {
    f.__name__: f for f in (polqa_reranking, polqa_open_book, polqa_closed_book, poquad_open, poquad_open_positive)
}


def get_processor(name: str) -> Callable[[list[dict]], list[dict]]:
    if name not in PROCESSORS:
        raise ConfigError(f"unknown process_docs '{name}' (known: {', '.join(PROCESSORS)})")
    return PROCESSORS[name]
