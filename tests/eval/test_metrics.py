"""Metrics against reference implementations (sklearn, lm-eval's filters) and the published baselines."""

from __future__ import annotations

import random

import numpy as np
import pytest

from bielik.eval import metrics as M
from bielik.eval.tasks import FilterSpec, MetricSpec, get_task
from tests.conftest import shared_dir
from tests.eval.conftest import read_jsonl


def test_f1_matches_sklearn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    for _ in range(50):
        k = int(rng.integers(2, 7))
        g, p = rng.integers(0, k, 40), rng.integers(0, k, 40)
        assert M.f1_score(g, p, "macro") == pytest.approx(f1_score(g, p, average="macro"))
        gb, pb = g % 2, p % 2
        assert M.f1_score(gb, pb) == pytest.approx(f1_score(gb, pb))
    assert M.f1_score([0, 0], [0, 0]) == 0.0  # no positives anywhere: sklearn's zero_division gives 0 too


def test_aggregate_and_stderr():
    value, se = M.aggregate("acc", [1.0, 0.0, 1.0, 1.0])
    assert value == 0.75 and se == pytest.approx(np.std([1, 0, 1, 1], ddof=1) / 2)
    f1, se = M.aggregate(
        "f1", [(1, 1), (0, 1), (1, 0), (1, 1)], MetricSpec(metric="f1", average="binary"), bootstrap_iters=200
    )
    assert f1 == pytest.approx(2 * 2 / (2 * 2 + 1 + 1)) and 0 < se < 1
    assert M.aggregate("acc", [1.0, 0.0], bootstrap_iters=0)[1] == "N/A"


def test_regex_filter_matches_lm_eval():
    from lm_eval.filters.extraction import RegexFilter

    spec = get_task("polish_klej_ner_regex").filter_list[0]
    theirs = RegexFilter(regex_pattern=r"(\b[ABCDEF]\b)")
    for text in [" B", " odpowiedź: C - Nazwa osoby", " nic", " A lub F", "BAD", " ", "E)"]:
        assert M.apply_filter(spec, text) == theirs.apply([[text]], [{}])[0][0]


def test_levenshtein_distance():
    assert M.levenshtein_distance("kitten", "sitting") == 3
    assert M.levenshtein_distance("", "abc") == 3 and M.levenshtein_distance("żółw", "żółw") == 0
    rnd = random.Random(0)
    for _ in range(100):  # against a plain recursive definition
        a = "".join(rnd.choice("abc") for _ in range(rnd.randint(0, 5)))
        b = "".join(rnd.choice("abc") for _ in range(rnd.randint(0, 5)))

        def d(i, j):
            if i == 0 or j == 0:
                return i + j
            return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))  # noqa: B023

        assert M.levenshtein_distance(a, b) == d(len(a), len(b))


def test_levenshtein_match_rules():
    polqa = get_task("polish_polqa_open_book").metric_list[1]
    poquad = get_task("polish_poquad_open_book").metric_list[1]
    assert (
        M.levenshtein_match(" Adam Mickiewicz", ["Adam Mickiewicz"], polqa.strip_pattern, polqa.lstrip) == 1
    )  # distance 1 < 7.5
    assert M.levenshtein_match(" Słowacki", ["Adam Mickiewicz"], polqa.strip_pattern) == 0
    assert M.levenshtein_match("w roku 1410", ["1410"]) == 1 and M.levenshtein_match("1411", ["1410"]) == 0
    assert (
        M.levenshtein_match("w roku 1410.", ["1410"]) == 0
    )  # SpeakLeash's number regex takes the trailing dot: "1410." != "1410"
    assert M.levenshtein_match("3,5 mln", ["3.5"]) == 1  # comma read as a dot
    # PoQuAD's unescaped '.? ?(</s>)* ?$' drops the last character before comparing: "ab" -> "a", distance 1 < 2/2 fails
    assert M.levenshtein_match(" ab", ["ab"], poquad.strip_pattern, poquad.lstrip) == 0
    assert M.levenshtein_match(" Warszawa", ["Warszawa"], poquad.strip_pattern, poquad.lstrip) == 1


def test_generation_f1_label_map():
    spec = get_task("polish_dyk_regex")
    f1 = spec.metric_list[1]
    vals = [
        M.score_generation(spec.metric_list, p, g) for p, g in [("C", "C"), ("B", "C"), ("[invalid]", "B"), ("A", "C")]
    ]
    assert [v["f1"] for v in vals] == [(1, 1), (1, 0), (0, 0), (1, 0)] and vals[0]["exact_match"] == 1.0
    assert M.aggregate("f1", [v["f1"] for v in vals], f1, 0)[0] == pytest.approx(0.5)


def test_published_baselines_are_test_majorities():
    """The leaderboard's baselines for 8TAGS (0.143) and PPC (0.419) are the majority-class rates of their test
    splits."""
    root = shared_dir() / "data" / "eval"
    tags = [r["label"] for r in read_jsonl(root / "8tags" / "test.jsonl")]
    ppc = [r["label"] for r in read_jsonl(root / "ppc" / "test.jsonl")]
    assert round(M.majority_baseline("acc", tags), 3) == get_task("polish_8tags_multiple_choice").leaderboard.baseline
    assert round(M.majority_baseline("acc", ppc), 3) == get_task("polish_ppc_multiple_choice").leaderboard.baseline
    # constant-answer F1 baselines
    assert M.majority_baseline("f1", [0, 0, 1, 1]) == pytest.approx(2 / 3)
    assert M.majority_baseline("f1", [0, 0, 0, 1, 2], MetricSpec(metric="f1", average="macro")) == pytest.approx(
        (2 * 3 / (2 * 3 + 2)) / 3
    )


def test_unused_filter_steps_pass_through():
    spec = FilterSpec(name="x", filter=[{"function": "lowercase"}, {"function": "take_first"}])
    assert M.apply_filter(spec, "ABC") == "abc"
