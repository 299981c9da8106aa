"""Answer extraction and metrics of the leaderboard tasks, with lm-eval's per-document semantics.

Per document:

* multiple choice: ``pred = argmax_i ll_i``, ``pred_norm = argmax_i ll_i / len(choice_i)`` (length in
  characters, lm-eval's acc_norm); acc = [pred = gold], acc_norm = [pred_norm = gold]; f1 keeps the
  pair (gold, pred).
* generation: the response goes through the task's filter pipeline (``regex``: the ``group_select``-th
  ``re.findall`` match, else ``[invalid]``; ``take_first``), then exact_match = [pred = gold] (any gold
  of a list), f1 maps answers to class ids through ``label_map`` (unknown -> ``default_label``) and
  ``levenshtein`` is SpeakLeash's PolQA/PoQuAD match (:func:`levenshtein_match`).

Aggregations: the mean for 0/1 scores; F1 over all pairs — binary: F1 of class 1 = 2TP / (2TP + FP +
FN); macro: the unweighted mean of per-class F1 over the labels present in gold or prediction
(sklearn's ``f1_score`` definitions, which SpeakLeash's ``agg_f1`` / ``agg_f1_macro`` call).
Standard errors: sqrt(s² / n) with the sample variance for means (lm-eval's ``mean_stderr``); a
seeded bootstrap for F1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from bielik.eval.tasks import FilterSpec, MetricSpec

INVALID = "[invalid]"
MEAN_METRICS = {"acc", "acc_norm", "exact_match", "levenshtein"}


# ------------------------------------------------------------------------------------- filters


def apply_filter(spec: FilterSpec, response: str) -> str:
    out: Any = [response]
    for step in spec.filter:
        if step.function == "regex":
            out = [_regex_extract(step.regex_pattern or "", step.group_select, step.fallback, r) for r in out]
        elif step.function == "take_first":
            out = out[:1]
        elif step.function == "lowercase":
            out = [r.lower() for r in out]
        elif step.function == "uppercase":
            out = [r.upper() for r in out]
    return out[0]


def _regex_extract(pattern: str, group_select: int, fallback: str, text: str) -> str:
    found = re.findall(pattern, text if isinstance(text, str) else "")
    if not found:
        return fallback
    match = found[group_select]
    if isinstance(match, tuple):
        match = next((m for m in match if m), fallback)
    return match.strip()


# ------------------------------------------------------------------------------- levenshtein

_NUMBER = re.compile(r"-?\d[\d,]*[.,]?[\d{2}]*")


def levenshtein_distance(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions of characters), O(len(a)·len(b))."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _first_number(s: str) -> str | None:
    m = _NUMBER.search(s)
    return m.group().replace(",", ".") if m else None


def levenshtein_match(
    prediction: str, references: Sequence[str], strip_pattern: str | None = None, lstrip: bool = False
) -> int:
    """SpeakLeash's QA match: 1 if any reference is matched, else 0.

    The prediction is lower-cased (and left-stripped for PoQuAD). A reference holding a number (first
    match of ``-?\\d[\\d,]*[.,]?[\\d{2}]*``, comma read as a dot) matches iff the prediction's first
    number is the same string; any other reference matches iff Levenshtein(prediction, reference) <
    len(reference) / 2, after ``strip_pattern`` removed the prediction's ending (the task's own
    regex, kept verbatim: PoQuAD's unescaped ``.? ?(</s>)* ?$`` drops the last character).

    The fork's ``utils.levenshtein`` reads ``predictions[0][0]``; with lm-eval's string responses that is
    the first *character*, which cannot be the intent (the comments and TASKS.md describe comparing the
    answer): the whole prediction is compared here.
    """
    pred = prediction.lower()
    if lstrip:
        pred = pred.lstrip()
    pred_number = _first_number(pred)
    if strip_pattern:
        pred = re.sub(strip_pattern, "", pred)
    for ref in references:
        ref = str(ref)
        ref_number = _first_number(ref)
        if ref_number is not None:
            if ref_number == pred_number:
                return 1
        else:
            r = ref.lower().lstrip() if lstrip else ref.lower()
            if levenshtein_distance(pred, r) < len(ref) / 2:
                return 1
    return 0


# ----------------------------------------------------------------------------------------- F1


def f1_score(golds: Sequence[int], preds: Sequence[int], average: str = "binary") -> float:
    golds, preds = np.asarray(golds), np.asarray(preds)
    if average == "binary":
        return _f1_of(golds, preds, 1)
    labels = np.union1d(golds, preds)
    return float(np.mean([_f1_of(golds, preds, c) for c in labels])) if len(labels) else 0.0


def _f1_of(golds: np.ndarray, preds: np.ndarray, label: int) -> float:
    tp = int(np.sum((preds == label) & (golds == label)))
    fp = int(np.sum((preds == label) & (golds != label)))
    fn = int(np.sum((preds != label) & (golds == label)))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


# ------------------------------------------------------------------------------ per document


def score_choice(
    metrics: list[MetricSpec], lls: Sequence[float], choices: Sequence[str], gold: int
) -> tuple[dict, dict]:
    """(metric values, prediction record) of one multiple-choice document."""
    lls_arr = np.asarray(lls, dtype=np.float64)
    pred = int(np.argmax(lls_arr))
    pred_norm = int(np.argmax(lls_arr / np.array([float(len(c)) for c in choices])))
    out: dict[str, Any] = {}
    for m in metrics:
        if m.metric == "acc":
            out["acc"] = float(pred == gold)
        elif m.metric == "acc_norm":
            out["acc_norm"] = float(pred_norm == gold)
        elif m.metric == "f1":
            out["f1"] = (gold, pred)
    return out, {"pred": pred, "pred_norm": pred_norm}


def score_generation(metrics: list[MetricSpec], prediction: str, gold: Any) -> dict:
    out: dict[str, Any] = {}
    golds = [str(g) for g in gold] if isinstance(gold, list) else [str(gold)]
    for m in metrics:
        if m.metric == "exact_match":
            out["exact_match"] = float(any(prediction == g for g in golds))
        elif m.metric == "f1":
            lm = m.label_map or {}
            out["f1"] = (lm.get(golds[0], m.default_label), lm.get(prediction, m.default_label))
        elif m.metric == "levenshtein":
            out["levenshtein"] = float(levenshtein_match(prediction, golds, m.strip_pattern, m.lstrip))
    return out


# ------------------------------------------------------------------------------ aggregation


def aggregate(
    name: str, values: list, spec: MetricSpec | None = None, bootstrap_iters: int = 1000, seed: int = 1234
) -> tuple[float, float | str]:
    """(value, standard error) of a metric over all documents."""
    if name == "f1":
        golds, preds = (list(x) for x in zip(*values)) if values else ([], [])
        average = spec.average if spec and spec.average else "binary"
        value = f1_score(golds, preds, average)
        if bootstrap_iters <= 0 or len(values) < 2:
            return value, "N/A"
        rng = np.random.default_rng(seed)
        g, p = np.asarray(golds), np.asarray(preds)
        idx = rng.integers(0, len(g), size=(bootstrap_iters, len(g)))
        samples = [f1_score(g[i], p[i], average) for i in idx]
        return value, float(np.std(samples, ddof=1))
    arr = np.asarray(values, dtype=np.float64)
    if len(arr) == 0:
        return float("nan"), "N/A"
    value = float(arr.mean())
    # lm-eval reports no standard error at all when bootstrap_iters is 0 (closed form for means otherwise)
    stderr = float(math.sqrt(arr.var(ddof=1) / len(arr))) if len(arr) > 1 and bootstrap_iters > 0 else "N/A"
    return value, stderr


# --------------------------------------------------------------------------------- baselines


def majority_baseline(metric: str, golds: Sequence[int], spec: MetricSpec | None = None) -> float:
    """Score of always answering the most frequent gold class (how the leaderboard's baselines were made).

    For binary F1 the constant answer is the positive class if that scores higher (F1 of a constant
    negative answer is 0); for macro F1 it is the majority class (the other classes score 0).
    """
    golds = list(golds)
    if not golds:
        return 0.0
    values, counts = np.unique(np.asarray(golds), return_counts=True)
    if metric.startswith("f1"):
        major = int(values[np.argmax(counts)])
        average = spec.average if spec and spec.average else "binary"
        if average == "binary":
            return max(f1_score(golds, [1] * len(golds)), f1_score(golds, [major] * len(golds)))
        return f1_score(golds, [major] * len(golds), "macro")
    return float(np.max(counts) / len(golds))
