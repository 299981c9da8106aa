"""Post-training data beyond dialogues: preference pairs (DPO-P) and verifiable tasks (GRPO).

Preference record (one JSON object per line, Parquet row or saved-dataset row)::

    {"messages": [{"role": "user", "content": "..."}, ...],   # the context, ending with a user turn
     "prompt": "...",                                         # or: one user turn (when no messages)
     "chosen": "...", "rejected": "...",                      # the two replies (strings, or a list
                                                              #   holding one assistant message)
     "weight": 0.8 | "quality": "high"|"medium"|"low",        # optional: the pair's loss weight
     "id": ..., "lang": ..., "source": ..., "license": ..., "meta": {...}}   # optional, kept

``messages`` wins over ``prompt`` (the shipped pairs hold both: ``prompt`` repeats the last user
turn). The context is an optional leading system turn, then user and assistant turns starting with
the user's and ending with the user's. Unlike SFT dialogues two turns of one role may follow each
other (three shipped HH-RLHF contexts hold two assistant turns in a row; ChatML renders them
unambiguously). The weight is 1
unless ``weight`` or ``quality`` (mapped as in SFT: high 1.0 / medium 0.7 / low 0.5) says otherwise.

Verifiable task: ``{"question": str, "answer": "1234" | 1234 | "3/4" | "1 234,5", "id", "lang", ...}``;
the answer must be one unambiguous number (:func:`bielik.data.numbers.parse_reference`).

Every violation is a :class:`DataError` naming the file, the line (JSONL, 1-based) or the row
(tables, 0-based) and the field, raised before anything is written. Inputs are read by
:func:`bielik.data.chat.iter_records` (JSONL, Parquet, saved datasets, folders); ``shipped`` is the
package's ``preferences.jsonl.gz`` / ``math.jsonl.gz`` and ``shipped:pl`` / ``shipped:en`` their
records of one ``lang``.

Rendering goes through the tokenizer's chat template: the prompt is the context with the generation
prompt (``<|im_start|>assistant\\n``), a completion is the reply's content and its ``<|im_end|>`` —
exactly the tokens SFT trains (:func:`bielik.data.chat_rows.encode_dialogue`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bielik.data.chat import (
    ROLES,
    _expand,
    _got,
    _weight,
    is_heldout,
    iter_records,
    post_dir,
)
from bielik.data.numbers import parse_reference
from bielik.errors import DataError

SHIPPED_FILES = {"preferences": "preferences.jsonl.gz", "math": "math.jsonl.gz"}


@dataclass(frozen=True)
class PreferencePair:
    messages: tuple[dict[str, str], ...]
    chosen: str
    rejected: str
    weight: float
    where: str
    id: str | None = None
    lang: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        if self.id is not None:
            return f"id:{self.id}"
        blob = json.dumps([self.messages, self.chosen, self.rejected], ensure_ascii=False).encode()
        return "content:" + hashlib.blake2b(blob, digest_size=16).hexdigest()


@dataclass(frozen=True)
class MathTask:
    question: str
    answer: str
    where: str
    id: str | None = None
    lang: str | None = None

    @property
    def key(self) -> str:
        return (
            f"id:{self.id}"
            if self.id is not None
            else "content:" + hashlib.blake2b(self.question.encode(), digest_size=16).hexdigest()
        )

    def messages(self, system: str | None = None) -> list[dict[str, str]]:
        turns = [{"role": "system", "content": system}] if system else []
        return turns + [{"role": "user", "content": self.question}]


# ------------------------------------------------------------------------------------------ records
def _check_context(messages: Any, where: str) -> tuple[dict[str, str], ...]:
    if not isinstance(messages, (list, tuple)) or not messages:
        raise DataError(
            f"{where}: messages: expected a non-empty list of {{role, content}} objects ending with a user turn, got "
            f"{_got(messages)}"
        )
    start = 1 if isinstance(messages[0], dict) and messages[0].get("role") == "system" else 0
    out = []
    for i, msg in enumerate(messages):
        path = f"{where}: messages[{i}]"
        if not isinstance(msg, dict):
            raise DataError(f"{path}: expected an object with 'role' and 'content', got {_got(msg)}")
        role, content = msg.get("role"), msg.get("content")
        expected = ("system",) if i < start else ("user",) if i == start else ("user", "assistant")
        if role not in expected:
            what = f"'{role}'" if role in ROLES else _got(role)
            raise DataError(
                f"{path}.role: expected {' or '.join(map(repr, expected))}, got {what} (an optional system turn "
                "first, then user and assistant turns starting with user)"
            )
        if not isinstance(content, str):
            raise DataError(f"{path}.content: expected a string, got {'nothing' if content is None else _got(content)}")
        out.append({"role": role, "content": content})
    if out[-1]["role"] != "user":
        raise DataError(
            f"{where}: messages[{len(out) - 1}].role: expected the context to end with a 'user' turn "
            f"(the one chosen and rejected answer), got '{out[-1]['role']}'"
        )
    return tuple(out)


def _reply(obj: dict, key: str, where: str) -> str:
    value = obj.get(key)
    if (
        isinstance(value, list)
        and len(value) == 1
        and isinstance(value[0], dict)
        and value[0].get("role") == "assistant"
    ):
        value = value[0].get("content")
    if not isinstance(value, str) or not value.strip():
        raise DataError(
            f"{where}: {key}: expected the assistant's reply (a non-blank string or a list holding one "
            f"assistant message), got {'nothing' if value is None else _got(value)}"
        )
    return value


def parse_preference(obj: Any, where: str, quality_weights: dict[str, float] | None = None) -> PreferencePair:
    """Validate one preference record (see the module docstring)."""
    from bielik.data.chat import QUALITY_WEIGHTS

    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object (a preference record), got {_got(obj)}")
    if obj.get("messages") is not None:
        messages = _check_context(obj["messages"], where)
    elif isinstance(obj.get("prompt"), str) and obj["prompt"].strip():
        messages = ({"role": "user", "content": obj["prompt"]},)
    else:
        raise DataError(
            f"{where}: prompt: expected the user's request (a non-blank string) or 'messages', got "
            f"{'nothing' if obj.get('prompt') is None else _got(obj.get('prompt'))}"
        )
    chosen, rejected = _reply(obj, "chosen", where), _reply(obj, "rejected", where)
    weight = 1.0
    if obj.get("weight") is not None or obj.get("quality") is not None:
        weight, _ = _weight(obj, where, QUALITY_WEIGHTS if quality_weights is None else quality_weights, None)
    meta = obj.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise DataError(f"{where}: meta: expected an object, got {_got(meta)}")
    rid = obj.get("id")
    return PreferencePair(
        messages, chosen, rejected, weight, where, None if rid is None else str(rid), obj.get("lang"), dict(meta or {})
    )


def parse_math_task(obj: Any, where: str) -> MathTask:
    """Validate one verifiable task: a non-blank ``question`` and a numeric ``answer``."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object (a task record), got {_got(obj)}")
    q = obj.get("question")
    if not isinstance(q, str) or not q.strip():
        raise DataError(f"{where}: question: expected a non-blank string, got {'nothing' if q is None else _got(q)}")
    a = obj.get("answer")
    if isinstance(a, bool) or not isinstance(a, (str, int, float)) or parse_reference(str(a)) is None:
        raise DataError(
            f'{where}: answer: expected one number (e.g. 42, "-3.5", "3/4", "1 234,5"), got '
            f"{'nothing' if a is None else _got(a)}"
        )
    rid = obj.get("id")
    return MathTask(q, str(a), where, None if rid is None else str(rid), obj.get("lang"))


def resolve_post_inputs(
    inputs: Iterable[str | Path], kind: Literal["preferences", "math"]
) -> list[tuple[Path, str | None]]:
    """(file, lang filter) for every input; ``shipped`` / ``shipped:<lang>`` name the shipped ``kind`` file."""
    out: list[tuple[Path, str | None]] = []
    for raw in inputs:
        spec = str(raw)
        if spec == "shipped" or spec.startswith("shipped:"):
            lang = spec.partition(":")[2] or None
            if lang not in (None, "pl", "en"):
                raise DataError(
                    f"unknown shipped {kind} part '{lang}'; expected 'shipped', 'shipped:pl' or 'shipped:en'"
                )
            out.append((post_dir() / SHIPPED_FILES[kind], lang))
        else:
            out.extend((p, None) for p in _expand(Path(spec)))
    if not out:
        raise DataError(f"no {kind} data inputs given")
    return out


def read_preferences(
    inputs: Iterable[str | Path], quality_weights: dict[str, float] | None = None
) -> Iterator[PreferencePair]:
    """Every preference pair of ``inputs``, validated; stops at the first bad record."""
    for path, lang in resolve_post_inputs(inputs, "preferences"):
        for where, obj in iter_records(path):
            if lang is None or (isinstance(obj, dict) and obj.get("lang") == lang):
                yield parse_preference(obj, where, quality_weights)


def read_math_tasks(inputs: Iterable[str | Path]) -> Iterator[MathTask]:
    """Every verifiable task of ``inputs``, validated; stops at the first bad record."""
    for path, lang in resolve_post_inputs(inputs, "math"):
        for where, obj in iter_records(path):
            if lang is None or (isinstance(obj, dict) and obj.get("lang") == lang):
                yield parse_math_task(obj, where)


def split_heldout(items: list, fraction: float, seed: int = 0) -> tuple[list, list]:
    """(train, held out) by a seeded hash of each item's ``key`` (order-independent, as SFT's split)."""
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"val_fraction: expected a number in [0, 1), got {fraction}")
    train, val = [], []
    for it in items:
        (val if is_heldout(it.key, fraction, seed) else train).append(it)
    return train, val


# ----------------------------------------------------------------------------------------- encoding
@dataclass(frozen=True)
class EncodedPair:
    prompt: np.ndarray  # (P,) int64: the context rendered with the generation prompt
    chosen: np.ndarray  # (C,) int64: the chosen reply's content and <|im_end|>
    rejected: np.ndarray  # (R,) int64
    weight: float = 1.0
    key: str = ""


def render_prompt(tokenizer, messages) -> np.ndarray:
    """Token ids of ``messages`` followed by the assistant's generation prompt (one BOS, from the template)."""
    enc = tokenizer.apply_chat_template(list(messages), tokenize=True, add_generation_prompt=True, return_dict=True)
    return np.asarray(enc["input_ids"], dtype=np.int64)


def _completion(tokenizer, messages, reply: str, prompt: np.ndarray, where: str) -> np.ndarray:
    from bielik.data.chat_rows import encode_dialogue

    ids, mask = encode_dialogue(tokenizer, [*messages, {"role": "assistant", "content": reply}], where)
    p = len(prompt)
    if len(ids) <= p or not np.array_equal(ids[:p], prompt):
        raise DataError(
            f"{where}: the chat template does not render the prompt as a prefix of prompt + reply; "
            "expected a template whose generation prompt starts every assistant turn"
        )
    trained = np.flatnonzero(mask[p:])
    if not len(trained) or trained[0] != 0 or not mask[p : p + trained[-1] + 1].all():
        raise DataError(f"{where}: the reply's trained tokens do not directly follow the generation prompt")
    return ids[p : p + trained[-1] + 1].astype(np.int64)


def encode_pair(tokenizer, pair: PreferencePair) -> EncodedPair:
    """Render one pair (raises :class:`~bielik.data.chat_rows.UnusableDialogue` for control tokens in text)."""
    prompt = render_prompt(tokenizer, pair.messages)
    chosen = _completion(tokenizer, pair.messages, pair.chosen, prompt, f"{pair.where}: chosen")
    rejected = _completion(tokenizer, pair.messages, pair.rejected, prompt, f"{pair.where}: rejected")
    return EncodedPair(prompt, chosen, rejected, pair.weight, pair.key)


def fit_pair(e: EncodedPair, max_tokens: int, overflow: Literal["truncate", "drop"]) -> EncodedPair | None:
    """The pair with prompt + chosen + rejected ≤ ``max_tokens``: as is, with both replies cut to their
    first tokens (``truncate``; the prompt is kept whole and must leave room for 8 tokens of each
    reply), or None (``drop``, or a prompt too long to truncate)."""
    p, c, r = len(e.prompt), len(e.chosen), len(e.rejected)
    if p + c + r <= max_tokens:
        return e
    budget = max_tokens - p
    if overflow == "drop" or budget < 16:
        return None
    c2 = min(c, max(budget // 2, budget - r))
    return EncodedPair(e.prompt, e.chosen[:c2], e.rejected[: budget - c2], e.weight, e.key)
