"""Tables of the data stages: the curation funnel, drop reasons and PII, the quality classifier,
tokenizer efficiency, packed shards."""

from __future__ import annotations

from typing import Any

from bielik.report.document import Table
from bielik.report.tables.generic import generic

# ------------------------------------------------------------------------------------------ curation


def curation(m: dict[str, Any]) -> list[Table]:
    """Funnel (documents remaining after each step, share of the input), drop reasons, edits and PII spans."""
    if "funnel" not in m:
        return generic(m)
    n = max(m.get("input", 0), 1)
    tables = [
        Table(
            f"funnel: {m.get('input', 0):,} → {m.get('kept', 0):,} documents",
            ["step", "dropped", "remaining", "remaining [%]"],
            [[r["step"], r["dropped"], r["remaining"], 100 * r["remaining"] / n] for r in m["funnel"]],
            [None, None, None, ".1f"],
            note=f"bad records skipped: {m['bad_records_skipped']:,}" if m.get("bad_records_skipped") else "",
        )
    ]
    if m.get("dropped"):
        total = sum(m["dropped"].values()) or 1
        tables.append(
            Table(
                "drop reasons",
                ["reason", "documents", "share of dropped [%]"],
                [[k, v, 100 * v / total] for k, v in sorted(m["dropped"].items(), key=lambda kv: -kv[1])],
                [None, None, ".1f"],
            )
        )
    if m.get("changed"):
        tables.append(
            Table(
                "documents changed (kept, edited)",
                ["edit", "documents"],
                [[k, v] for k, v in m["changed"].items()],
            )
        )
    if m.get("pii_spans"):
        tables.append(pii(m))
    return tables


def pii(m: dict[str, Any]) -> Table:
    spans = m.get("pii_spans") or {}
    rows = [[k, v] for k, v in sorted(spans.items(), key=lambda kv: -kv[1])]
    return Table(
        "PII spans replaced by placeholders",
        ["type", "spans"],
        rows + [["total", sum(spans.values())]],
    )


def classification(report: dict[str, Any], title: str) -> list[Table]:
    """Per-class precision/recall/F1 with the macro row, and the confusion matrix (rows: true class)."""
    labels = report.get("labels") or list(report["per_class"])
    rows = [[lab, p["precision"], p["recall"], p["f1"], p["support"]] for lab, p in report["per_class"].items()]
    mac = report["macro"]
    rows.append(["macro", mac["precision"], mac["recall"], mac["f1"], report.get("n")])
    tables = [
        Table(
            f"{title}: precision, recall, F1",
            ["class", "precision", "recall", "F1", "support"],
            rows,
            [None, ".4f", ".4f", ".4f", None],
            note=f"accuracy {report['accuracy']:.4f}",
        )
    ]
    if "confusion" in report:
        tables.append(
            Table(
                f"{title}: confusion matrix (rows: true class, columns: predicted)",
                ["true \\ predicted", *labels],
                [[lab, *row] for lab, row in zip(labels, report["confusion"])],
            )
        )
    if "filter" in report:
        f = report["filter"]
        tables.append(
            Table(
                f"{title}: filter rule P(HIGH) > {f['threshold']}",
                [
                    "kept",
                    "precision(HIGH)",
                    "recall(HIGH)",
                    *[f"kept {k}" for k in f.get("kept_by_true_class", {})],
                ],
                [
                    [
                        f["kept"],
                        f["precision_high"],
                        f["recall_high"],
                        *f.get("kept_by_true_class", {}).values(),
                    ]
                ],
            )
        )
    return tables


def quality_eval(m: dict[str, Any]) -> list[Table]:
    return classification(m, "quality classifier") if "per_class" in m else generic(m)


def quality_train(m: dict[str, Any]) -> list[Table]:
    tables = []
    if m.get("class_counts"):
        tables.append(
            Table(
                "training documents per class",
                ["class", "documents"],
                [[k, v] for k, v in m["class_counts"].items()],
            )
        )
    for split in ("train", "test"):
        if isinstance(m.get(split), dict) and "per_class" in m[split]:
            tables += classification(m[split], f"{split} set")
    if m.get("top_features"):
        tf = m["top_features"]
        rows = (
            [[k, v] for k, v in tf.items()]
            if isinstance(tf, dict)
            else [[x, None] if not isinstance(x, (list, tuple)) else list(x[:2]) for x in tf]
        )
        tables.append(Table("most important features (XGBoost gain)", ["feature", "gain"], rows))
    return tables or generic(m)


# ------------------------------------------------------------------------------------------ tokenizer, data


def tokenizer_stats(m: dict[str, Any]) -> list[Table]:
    """CpT (characters per token, higher is better) and TpW (tokens per word, lower is better) per text."""
    rows = m.get("rows") or []
    texts = list(dict.fromkeys(r["text"] for r in rows))
    by: dict[str, dict[str, dict]] = {}
    for r in rows:
        by.setdefault(r["tokenizer"], {})[r["text"]] = r
    header = ["tokenizer", "vocab"] + [f"{t} {c}" for t in texts for c in ("tokens", "CpT", "TpW")]
    out = []
    for name, per in by.items():
        row: list[Any] = [name, next(iter(per.values()))["vocab_size"]]
        for t in texts:
            r = per.get(t, {})
            row += [r.get("tokens"), r.get("cpt"), r.get("tpw")]
        out.append(row)
    formats = [None, None] + [f for _ in texts for f in (None, ".2f", ".2f")]
    return [Table("tokenizer efficiency", header, out, formats, note=m.get("definitions", ""))]


def pack(m: dict[str, Any]) -> list[Table]:
    langs = sorted({lang for s in ("train", "val") for lang in (m.get(s) or {}).get("tokens_by_lang", {})})
    rows = []
    for split in ("train", "val"):
        s = m.get(split)
        if s:
            rows.append(
                [
                    split,
                    s.get("rows"),
                    s.get("tokens"),
                    *[s.get("share_by_lang", {}).get(lang) for lang in langs],
                ]
            )
    t = Table(
        f"packed token shards (sequence length {m.get('seq_len')}, vocabulary {m.get('vocab_size')})",
        ["split", "rows", "tokens", *[f"share {lang}" for lang in langs]],
        rows,
        [None, None, None, *[".3f"] * len(langs)],
        note=f"{m.get('documents', 0):,} documents read",
    )
    return [t]
