"""The HIGH/MEDIUM/LOW quality classifier (RECIPE.md §1.4): XGBoost on stylometric features.

Multi-class gradient-boosted trees (Chen & Guestrin 2016, "XGBoost"), objective ``multi:softprob``
(softmax over the three classes, cross-entropy loss) on the :data:`FEATURE_NAMES` vector of each
document. Selection keeps a document when P(HIGH) > 0.90, the reports' threshold.

A model is a directory: ``model.json`` (XGBoost's own JSON format: no pickle, safe to load),
``quality_model.json`` (labels, feature names, threshold, training parameters) and, after training,
``feature_importance.png`` and ``metrics.json``. The default recipe's model ships in
``bielik/resources/quality`` (:func:`default_model_dir`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
from pydantic import Field

from bielik.artifacts import read_json, staged_dir, write_json, write_stage_record
from bielik.config import StageConfig
from bielik.data.curate.config import DEFAULT_MAX_CHARS, DEFAULT_THRESHOLD
from bielik.data.curate.quality_data import LABELS
from bielik.data.curate.stylometry import FEATURE_NAMES, FeatureExtractor
from bielik.errors import DataError
from bielik.log import get_logger
from bielik.progress import progress

log = get_logger(__name__)


def default_model_dir() -> Path:
    """The classifier trained on the constructed set (see docs/curation.md), shipped in the package."""
    return Path(str(resources.files("bielik") / "resources" / "quality"))


def resolve_model(path: str | None) -> Path:
    p = default_model_dir() if path in (None, "", "default") else Path(path)
    if not (p / "model.json").is_file() or not (p / "quality_model.json").is_file():
        raise DataError(
            f"quality model {p} is missing model.json or quality_model.json "
            "(train one with `bielik data quality train`)"
        )
    return p


class QualityModel:
    """A trained classifier: ``proba(texts)`` → (n, 3) probabilities in :data:`LABELS` order."""

    def __init__(self, path: str | Path | None = None, nthread: int = 1):
        import xgboost as xgb

        self.path = resolve_model(None if path is None else str(path))
        self.meta = read_json(self.path / "quality_model.json")
        if list(self.meta["features"]) != list(FEATURE_NAMES):
            raise DataError(
                f"quality model {self.path} was trained on a different feature set "
                f"({len(self.meta['features'])} features, this bielik computes {len(FEATURE_NAMES)}); retrain it"
            )
        self.labels = tuple(self.meta["labels"])
        self.booster = xgb.Booster(params={"nthread": nthread}, model_file=str(self.path / "model.json"))
        self.extractor = FeatureExtractor(max_chars=self.meta.get("max_chars", DEFAULT_MAX_CHARS))

    def proba_features(self, X: np.ndarray) -> np.ndarray:
        import xgboost as xgb

        return self.booster.predict(xgb.DMatrix(X, feature_names=list(FEATURE_NAMES)))

    def proba(self, texts: list[str]) -> np.ndarray:
        return self.proba_features(self.extractor.many(texts))


# --- metrics ----------------------------------------------------------------------------------


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, labels: tuple[str, ...] = LABELS) -> dict:
    """Per-class precision/recall/F1, their macro averages, accuracy and the confusion matrix.

    P = TP/(TP+FP), R = TP/(TP+FN), F1 = 2PR/(P+R); macro = unweighted mean over classes.
    ``confusion[i][j]`` counts true class i predicted as j.
    """
    k = len(labels)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    per = {}
    for i, lab in enumerate(labels):
        tp = cm[i, i]
        p = tp / cm[:, i].sum() if cm[:, i].sum() else 0.0
        r = tp / cm[i, :].sum() if cm[i, :].sum() else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        per[lab] = {
            "precision": round(float(p), 4),
            "recall": round(float(r), 4),
            "f1": round(float(f), 4),
            "support": int(cm[i, :].sum()),
        }
    macro = {m: round(float(np.mean([per[lab][m] for lab in labels])), 4) for m in ("precision", "recall", "f1")}
    return {
        "per_class": per,
        "macro": macro,
        "accuracy": round(float(np.trace(cm) / max(cm.sum(), 1)), 4),
        "confusion": cm.tolist(),
        "labels": list(labels),
        "n": int(cm.sum()),
    }


def plot_confusion(report: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.array(report["confusion"])
    labels = report["labels"]
    fig, ax = plt.subplots(figsize=(4.6, 4))
    ax.imshow(cm, cmap="Blues")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j, i, str(cm[i, j]), ha="center", va="center", color="white" if cm[i, j] > cm.max() / 2 else "black"
            )
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}\nmacro-F1 {report['macro']['f1']:.3f}, accuracy {report['accuracy']:.3f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_importance(booster, path: Path, top: int = 30) -> list[tuple[str, float]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gain = booster.get_score(importance_type="gain")
    total = sum(gain.values()) or 1.0
    ranked = sorted(((k, v / total) for k, v in gain.items()), key=lambda kv: -kv[1])[:top]
    fig, ax = plt.subplots(figsize=(6.5, 0.22 * len(ranked) + 1))
    ax.barh([k for k, _ in ranked][::-1], [v for _, v in ranked][::-1], color="#3b6ea8")
    ax.set_xlabel("share of total gain")
    ax.set_title(f"Quality classifier: top {len(ranked)} features by gain", fontsize=10)
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [(k, round(v, 4)) for k, v in ranked]


# --- labelled data ----------------------------------------------------------------------------


def read_labelled(path: str | Path, label_key: str = "label") -> tuple[list[str], np.ndarray, list[str]]:
    """Texts, label indices and ids of a labelled JSONL(.gz) file (labels HIGH/MEDIUM/LOW)."""
    from bielik.data.curate.io import iter_input_records

    texts, ys, ids = [], [], []
    for lineno, rec in iter_input_records(Path(path), on_error="raise"):
        lab = str(rec.get(label_key, "")).upper()
        if lab not in LABELS:
            raise DataError(
                f"{path}:{lineno}: field '{label_key}' is {rec.get(label_key)!r}; expected one of {', '.join(LABELS)}"
            )
        texts.append(rec["text"])
        ys.append(LABELS.index(lab))
        ids.append(str(rec.get("id", lineno)))
    if not texts:
        raise DataError(f"{path}: no labelled documents")
    return texts, np.array(ys, dtype=np.int64), ids


def _featurize(texts: list[str], extractor: FeatureExtractor, desc: str) -> np.ndarray:
    X = np.zeros((len(texts), len(FEATURE_NAMES)), dtype=np.float32)
    with progress(desc, total=len(texts), unit="doc") as rep:
        for i, t in enumerate(texts):
            X[i] = extractor(t)
            rep.advance()
    return X


# --- stages -----------------------------------------------------------------------------------


class QualityTrainConfig(StageConfig):
    train: str = Field(
        ...,
        description="labelled JSONL(.gz): text + label (HIGH/MEDIUM/LOW); a folder holding train.jsonl[.gz] also works",
    )
    test: str | None = Field(
        None, description="held-out labelled JSONL evaluated after training (default: test.jsonl next to train, if any)"
    )
    output: str = "runs/quality-model"
    label_key: str = "label"
    max_chars: int = Field(
        DEFAULT_MAX_CHARS, ge=200, description="features are computed on the first max_chars characters"
    )
    rounds: int = Field(150, ge=1)
    max_depth: int = Field(5, ge=1)
    eta: float = Field(0.1, gt=0)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    min_child_weight: float = 1.0
    nthread: int = Field(2, ge=1, description="XGBoost threads; keep ≤ cores (oversubscription makes it 10-30× slower)")
    threshold: float = Field(DEFAULT_THRESHOLD, gt=0, lt=1, description="P(HIGH) a document needs to be kept")
    seed: int = 0
    overwrite: bool = False


def _split_file(path: str, name: str) -> Path | None:
    p = Path(path)
    if p.is_dir():
        for cand in (p / f"{name}.jsonl", p / f"{name}.jsonl.gz"):
            if cand.is_file():
                return cand
        return None
    return p


def train_quality(cfg: QualityTrainConfig) -> dict:
    """Fit the classifier; write the model directory with metrics and plots."""
    import xgboost as xgb

    train_path = _split_file(cfg.train, "train")
    if train_path is None:
        raise DataError(f"{cfg.train}: folder holds no train.jsonl(.gz)")
    test_path = Path(cfg.test) if cfg.test else (_split_file(cfg.train, "test") if Path(cfg.train).is_dir() else None)
    texts, y, _ = read_labelled(train_path, cfg.label_key)
    extractor = FeatureExtractor(max_chars=cfg.max_chars)
    X = _featurize(texts, extractor, "features (train)")
    params = {
        "objective": "multi:softprob",
        "num_class": len(LABELS),
        "max_depth": cfg.max_depth,
        "eta": cfg.eta,
        "subsample": cfg.subsample,
        "colsample_bytree": cfg.colsample_bytree,
        "min_child_weight": cfg.min_child_weight,
        "nthread": cfg.nthread,
        "seed": cfg.seed,
        "eval_metric": "mlogloss",
        "tree_method": "hist",
    }
    dtrain = xgb.DMatrix(X, label=y, feature_names=list(FEATURE_NAMES))
    log.info(f"training XGBoost on {len(y)} documents × {X.shape[1]} features ({cfg.rounds} rounds)")
    booster = xgb.train(params, dtrain, num_boost_round=cfg.rounds)
    metrics: dict = {
        "train": classification_report(y, booster.predict(dtrain).argmax(1)),
        "class_counts": {lab: int((y == i).sum()) for i, lab in enumerate(LABELS)},
    }
    with staged_dir(cfg.output, overwrite=cfg.overwrite) as out:
        booster.save_model(str(out / "model.json"))
        write_json(
            out / "quality_model.json",
            {
                "labels": list(LABELS),
                "features": list(FEATURE_NAMES),
                "threshold": cfg.threshold,
                "max_chars": cfg.max_chars,
                "params": params,
                "rounds": cfg.rounds,
                "train_file": str(train_path),
                "n_train": int(len(y)),
            },
        )
        metrics["top_features"] = plot_importance(booster, out / "feature_importance.png")
        if test_path is not None:
            tt, ty, _ = read_labelled(test_path, cfg.label_key)
            Xt = _featurize(tt, extractor, "features (test)")
            P = booster.predict(xgb.DMatrix(Xt, feature_names=list(FEATURE_NAMES)))
            metrics["test"] = classification_report(ty, P.argmax(1))
            metrics["test"]["filter"] = _filter_metrics(ty, P, cfg.threshold)
            plot_confusion(metrics["test"], out / "confusion_test.png", f"held-out: {test_path.name}")
        write_stage_record(
            out, "quality.train", cfg, {"train": train_path, **({"test": test_path} if test_path else {})}, metrics
        )
    summary = {"output": cfg.output, "train_macro_f1": metrics["train"]["macro"]["f1"]}
    if "test" in metrics:
        summary["test_macro_f1"] = metrics["test"]["macro"]["f1"]
        summary["test_per_class"] = metrics["test"]["per_class"]
    return summary


def _filter_metrics(y: np.ndarray, P: np.ndarray, threshold: float) -> dict:
    """Precision/recall of the selection rule P(HIGH) > threshold for the class HIGH."""
    keep = P[:, LABELS.index("HIGH")] > threshold
    is_high = y == LABELS.index("HIGH")
    tp = int((keep & is_high).sum())
    return {
        "threshold": threshold,
        "kept": int(keep.sum()),
        "precision_high": round(tp / max(int(keep.sum()), 1), 4),
        "recall_high": round(tp / max(int(is_high.sum()), 1), 4),
        "kept_by_true_class": {lab: int((keep & (y == i)).sum()) for i, lab in enumerate(LABELS)},
    }


class QualityEvalConfig(StageConfig):
    data: str = Field(..., description="labelled JSONL(.gz) (text + label)")
    model: str = Field("default", description="model directory ('default' = the shipped model)")
    output: str = "runs/quality-eval"
    label_key: str = "label"
    threshold: float | None = Field(
        None, gt=0, lt=1, description="P(HIGH) threshold for the filter metrics (default: the model's)"
    )
    nthread: int = Field(1, ge=1)
    overwrite: bool = False


def eval_quality(cfg: QualityEvalConfig) -> dict:
    """Per-class and macro precision/recall/F1, accuracy, the filter rule's precision/recall, confusion PNG."""
    model = QualityModel(None if cfg.model == "default" else cfg.model, nthread=cfg.nthread)
    texts, y, _ = read_labelled(cfg.data, cfg.label_key)
    X = _featurize(texts, model.extractor, "features")
    P = model.proba_features(X)
    report = classification_report(y, P.argmax(1), model.labels)
    report["filter"] = _filter_metrics(y, P, cfg.threshold or model.meta.get("threshold", DEFAULT_THRESHOLD))
    with staged_dir(cfg.output, overwrite=cfg.overwrite) as out:
        plot_confusion(report, out / "confusion.png", f"{Path(cfg.data).name} · {model.path.name}")
        write_stage_record(out, "quality.eval", cfg, {"data": cfg.data, "model": model.path}, report)
    return report


def format_report(report: dict) -> str:
    rows = [f"{'class':<8}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}"]
    for lab, m in report["per_class"].items():
        rows.append(f"{lab:<8}{m['precision']:>10.4f}{m['recall']:>10.4f}{m['f1']:>10.4f}{m['support']:>9}")
    mac = report["macro"]
    rows.append(f"{'macro':<8}{mac['precision']:>10.4f}{mac['recall']:>10.4f}{mac['f1']:>10.4f}{report['n']:>9}")
    rows.append(f"accuracy {report['accuracy']:.4f}")
    if "filter" in report:
        f = report["filter"]
        rows.append(
            f"filter P(HIGH) > {f['threshold']}: kept {f['kept']}, precision(HIGH) {f['precision_high']:.4f}, "
            f"recall(HIGH) {f['recall_high']:.4f}"
        )
    return "\n".join(rows)
