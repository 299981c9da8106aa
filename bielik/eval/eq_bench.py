"""Polish EQ-Bench scoring (EQ-Bench v2, Paech 2023, arXiv:2312.06281; SpeakLeash's Polish port).

The model rates the intensity (0-10) of four emotions of a dialogue character, critiques itself and
gives revised ratings. Parsing (``polish_eq_bench/utils.py``): the text before ``Zmienione oceny:`` is
the first pass, the text after it the revised pass; ratings are ``name: N`` pairs
(``([ \\w]+):\\s+(\\d+)``; the revised pass keeps the first four). A pass scores only with exactly four
ratings whose names all equal the reference emotions; otherwise it scores 0 and is unparseable.

Score of one pass (v2 "fullscale"): with d_i = |rating_i − reference_i|,

    s(d) = 0 if d = 0;  6.5 / (1 + e^{−1.2 (d − 4)}) if d ≤ 5;  d otherwise
    score = (10 − 0.7477 · Σ_i s(d_i)) · 10

(0.7477 makes random answers score 0). The first pass is compared with ``reference_answer``, the
revised pass with ``reference_answer_fullscale``; ``average_eqbench`` = (first + revised) / 2.
"""

from __future__ import annotations

import ast
import math
import re
from typing import Any

_PAIR = re.compile(r"([ \w]+):\s+(\d+)")
ADJUST = 0.7477


def _reference(value: Any) -> dict:
    if isinstance(value, str):  # the HF copy stores repr() strings; never eval() them
        return ast.literal_eval(value)
    return dict(value)


def parse_revised(text: str) -> tuple[dict[str, str], dict[str, str]]:
    first, revised = {}, {}
    m = re.search(r"(.*?)Zmienione oceny:", text, re.DOTALL)
    if m:
        first = dict(_PAIR.findall(m.group(1)))
    m = re.search(r"Zmienione oceny:(.*?)$", text, re.DOTALL)
    if m:
        revised = dict(_PAIR.findall(m.group(1))[:4])
    return first, revised


def pass_score(reference: dict, ratings: dict[str, str]) -> dict[str, float]:
    """``{"eqbench": 0-100, "percent_parseable": 0|100}`` of one pass."""
    names = [reference[f"emotion{i}"] for i in range(1, 5)]
    if len(ratings) != 4 or len({e for e in ratings if e in names}) != 4:
        return {"eqbench": 0.0, "percent_parseable": 0.0}
    tally = 0.0
    for emotion, value in ratings.items():
        i = names.index(emotion) + 1
        d = abs(float(value) - float(reference[f"emotion{i}_score"]))
        if d == 0:
            s = 0.0
        elif d <= 5:
            s = 6.5 * (1 / (1 + math.e ** (-1.2 * (d - 4))))
        else:
            s = d
        tally += s
    return {"eqbench": (10 - tally * ADJUST) * 10, "percent_parseable": 100.0}


def score(doc: dict, response: str) -> dict[str, float]:
    """The per-question metrics of ``polish_eq_bench``."""
    first, revised = parse_revised(response)
    f = pass_score(_reference(doc["reference_answer"]), first)
    r = pass_score(_reference(doc["reference_answer_fullscale"]), revised)
    return {
        "first_eqbench": f["eqbench"],
        "first_percent_parseable": f["percent_parseable"],
        "revised_eqbench": r["eqbench"],
        "revised_percent_parseable": r["percent_parseable"],
        "average_eqbench": (f["eqbench"] + r["eqbench"]) / 2,
    }


def score_first_turn(doc: dict, response: str) -> dict[str, float]:
    """The per-question metrics of ``polish_eq_bench_first_turn`` (first four ratings vs ``reference_answer``)."""
    f = pass_score(_reference(doc["reference_answer"]), dict(_PAIR.findall(response)[:4]))
    return {"first_eqbench": f["eqbench"], "first_percent_parseable": f["percent_parseable"]}


PROCESS_RESULTS = {"eq_bench": score, "eq_bench_first_turn": score_first_turn}
