"""Polish EQ-Bench: parsing of first/revised ratings and the v2 scoring formula, on the shipped questions."""

from __future__ import annotations

import math

import pytest

from bielik.eval import eq_bench as E
from bielik.eval.data import load_split, search_dirs
from bielik.eval.tasks import get_task


@pytest.fixture(scope="module")
def questions():
    docs = load_split(get_task("polish_eq_bench"), "validation", search_dirs(None))
    assert len(docs) == 171
    return docs


def ratings(ref: dict, delta: tuple[int, ...] = (0, 0, 0, 0)) -> str:
    return "".join(f"{ref[f'emotion{i}']}: {ref[f'emotion{i}_score'] + d}\n" for i, d in zip(range(1, 5), delta))


def answer(doc, first_delta=(0, 0, 0, 0), revised_delta=(0, 0, 0, 0)) -> str:
    return (
        ratings(doc["reference_answer"], first_delta)
        + "\nWeryfikacja: przemyślałem to jeszcze raz.\n\nZmienione oceny:\n"
        + ratings(doc["reference_answer_fullscale"], revised_delta)
        + "\n"
    )


def test_perfect_answers_score_100(questions):
    for doc in questions[:20]:
        s = E.score(doc, answer(doc))
        assert s == {
            "first_eqbench": 100.0,
            "first_percent_parseable": 100.0,
            "revised_eqbench": 100.0,
            "revised_percent_parseable": 100.0,
            "average_eqbench": 100.0,
        }


def test_formula_by_hand(questions):
    doc = questions[0]
    ref = doc["reference_answer_fullscale"]
    delta = (1, 0, 0, 0) if ref["emotion1_score"] < 10 else (-1, 0, 0, 0)
    s = E.score(doc, answer(doc, revised_delta=delta))
    expect = (10 - 0.7477 * 6.5 / (1 + math.exp(-1.2 * (1 - 4)))) * 10
    assert s["revised_eqbench"] == pytest.approx(expect) and s["first_eqbench"] == 100.0
    assert s["average_eqbench"] == pytest.approx((100 + expect) / 2)
    # d > 5 counts linearly
    assert E.pass_score(
        {
            "emotion1": "A",
            "emotion2": "B",
            "emotion3": "C",
            "emotion4": "D",
            "emotion1_score": 0,
            "emotion2_score": 0,
            "emotion3_score": 0,
            "emotion4_score": 0,
        },
        {"A": "7", "B": "0", "C": "0", "D": "0"},
    ) == {"eqbench": pytest.approx((10 - 0.7477 * 7) * 10), "percent_parseable": 100.0}


def test_unparseable_and_wrong_emotions(questions):
    doc = questions[1]
    assert E.score(doc, "Nie wiem.")["average_eqbench"] == 0.0
    no_revision = ratings(doc["reference_answer"])  # no 'Zmienione oceny:' heading: nothing is parsed
    assert E.score(doc, no_revision)["first_percent_parseable"] == 0.0
    wrong = answer(doc).replace(doc["reference_answer"]["emotion2"] + ":", "Radość:", 1)
    assert E.score(doc, wrong)["first_eqbench"] == 0.0 and E.score(doc, wrong)["revised_eqbench"] == 100.0
    five = "Złość: 3\n" + answer(doc)  # five first-pass ratings -> unparseable first pass
    assert E.score(doc, five)["first_percent_parseable"] == 0.0


def test_string_references_are_parsed_safely(questions):
    doc = dict(questions[2])
    plain = E.score(doc, answer(questions[2]))
    doc["reference_answer"], doc["reference_answer_fullscale"] = (
        repr(doc["reference_answer"]),
        repr(doc["reference_answer_fullscale"]),
    )
    assert E.score(doc, answer(questions[2])) == plain
    doc["reference_answer"] = "__import__('os').getcwd()"
    with pytest.raises(ValueError):
        E.score(doc, "x")
