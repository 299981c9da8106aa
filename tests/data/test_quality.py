import numpy as np
import pytest

from bielik.data.corpus import iter_jsonl_records
from bielik.data.curate.quality import (
    QualityEvalConfig,
    QualityModel,
    QualityTrainConfig,
    classification_report,
    eval_quality,
    train_quality,
)
from bielik.data.curate.quality_data import LABELS, QualitySetConfig, build_quality_set, make_low
from bielik.errors import DataError


def test_classification_report_matches_hand_computation():
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    p = np.array([0, 0, 1, 1, 2, 2, 2, 2, 0])
    r = classification_report(y, p)
    assert r["confusion"] == [[2, 1, 0], [0, 1, 1], [1, 0, 3]]
    # HIGH: TP 2, FP 1, FN 1 -> P = R = F1 = 2/3
    assert r["per_class"]["HIGH"] == {"precision": 0.6667, "recall": 0.6667, "f1": 0.6667, "support": 3}
    # MEDIUM: P = 1/2, R = 1/2; LOW: P = 3/4, R = 3/4
    assert r["per_class"]["MEDIUM"]["f1"] == 0.5 and r["per_class"]["LOW"]["f1"] == 0.75
    assert r["macro"]["f1"] == pytest.approx((2 / 3 + 0.5 + 0.75) / 3, abs=1e-4)
    assert r["accuracy"] == pytest.approx(6 / 9, abs=1e-4)


def _read(path):
    return [rec for _, rec in iter_jsonl_records(path)]


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "set"
    build_quality_set(
        QualitySetConfig(
            output=str(out),
            sources=["pl_ntrex_news", "pl_legal", "pl_wikipedia"],
            examples_per_source=120,
            max_chars=2500,
        )
    )
    return out


def test_constructed_set_is_deterministic_balanced_and_split_by_source(small_set, tmp_path):
    train, test = _read(small_set / "train.jsonl.gz"), _read(small_set / "test.jsonl.gz")
    assert {r["label"] for r in train} == set(LABELS)
    assert not {r["source_doc"] for r in train} & {r["source_doc"] for r in test}
    counts = [sum(r["label"] == lab for r in train + test) for lab in LABELS]
    assert min(counts) > 0.2 * sum(counts)
    again = tmp_path / "again"
    build_quality_set(
        QualitySetConfig(
            output=str(again),
            sources=["pl_ntrex_news", "pl_legal", "pl_wikipedia"],
            examples_per_source=120,
            max_chars=2500,
        )
    )
    assert _read(again / "train.jsonl.gz") == train


def test_train_eval_on_the_constructed_set(small_set, tmp_path):
    model_dir = tmp_path / "model"
    summary = train_quality(
        QualityTrainConfig(train=str(small_set), output=str(model_dir), rounds=40, max_depth=4, nthread=1)
    )
    for f in ("model.json", "quality_model.json", "feature_importance.png", "confusion_test.png", "metrics.json"):
        assert (model_dir / f).is_file(), f
    assert summary["test_macro_f1"] > 0.7
    report = eval_quality(
        QualityEvalConfig(data=str(small_set / "test.jsonl.gz"), model=str(model_dir), output=str(tmp_path / "ev"))
    )
    assert report["macro"]["f1"] == summary["test_macro_f1"]
    assert (tmp_path / "ev" / "confusion.png").is_file()


def test_shipped_model_separates_edited_text_from_corruptions(shipped_pl_docs):
    import random

    model = QualityModel()
    docs = [d["text"][: d["text"].rfind("\n", 0, 4000)] for d in shipped_pl_docs if len(d["text"]) > 1500][:30]
    rng = random.Random(0)
    low = [make_low(t, rng, docs)[0] for t in docs]
    P_good, P_low = model.proba(docs), model.proba(low)
    assert (P_good.argmax(1) == 0).mean() > 0.8
    assert (P_low.argmax(1) == 2).mean() > 0.6 and (P_low[:, 0] > 0.9).mean() < 0.1


def test_bad_labels_name_the_line(tmp_path):
    p = tmp_path / "l.jsonl"
    p.write_text('{"text": "a", "label": "HIGH"}\n{"text": "b", "label": "GOOD"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"l.jsonl:2: field 'label'"):
        train_quality(QualityTrainConfig(train=str(p), output=str(tmp_path / "m"), rounds=2))
    assert not (tmp_path / "m").exists()
