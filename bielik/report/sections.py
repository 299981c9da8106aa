"""Per-stage-kind section builders: a registry keyed by stage kind, so a new stage kind adds one function.

A builder takes a loaded :class:`~bielik.report.run.StageRun` and returns the stage-specific part of its
:class:`~bielik.report.document.Section` (tables, figures, notes); :func:`stage_section` adds what every
stage shows (status, wall time, version, git rev, lineage, config). A kind without a builder gets
:func:`generic` (its ``metrics.json`` as a table). Tables come from :mod:`bielik.report.tables`, the same
functions the CLI uses to print a stage's result.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from bielik.artifacts import read_json
from bielik.errors import BielikError
from bielik.report import plots, tables
from bielik.report.document import DASH, Figure, Section, Table, duration, slug
from bielik.report.run import StageRun

Builder = Callable[[StageRun], Section]
BUILDERS: dict[str, Builder] = {}


def builder(*kinds: str) -> Callable[[Builder], Builder]:
    def register(fn: Builder) -> Builder:
        for k in kinds:
            BUILDERS[k] = fn
        return fn

    return register


def _png(st: StageRun, name: str, caption: str) -> list[Figure]:
    """A figure the stage drew itself (e.g. ``funnel.png``), when it is there."""
    p = st.file(name)
    return [Figure(f"{slug(st.name)}-{Path(name).stem}.png", caption, p.read_bytes())] if p else []


def _fig(st: StageRun, stem: str, caption: str, png: bytes | None) -> list[Figure]:
    return [Figure(f"{slug(st.name)}-{stem}.png", caption, png)] if png else []


def _metrics(st: StageRun) -> dict:
    return st.metrics if isinstance(st.metrics, dict) else {}


#: figures a stage draws itself, shown under its tables by :func:`generic`: kind -> [(file, caption)]
STAGE_FIGURES: dict[str, list[tuple[str, str]]] = {
    "quality.eval": [("confusion.png", "Quality classifier: confusion matrix on the labelled set")],
    "quality.train": [
        ("confusion_test.png", "Quality classifier: confusion matrix on the held-out test set"),
        ("feature_importance.png", "Quality classifier: most important stylometric features"),
    ],
    "tokenizer.stats": [("chart.png", "Characters per token (higher is better) and tokens per word (lower is better)")],
    "compress.importance": [
        ("importance.png", "Minitron importance: Block Influence per layer, heads, sorted hidden and FFN scores")
    ],
    "eval.leaderboard": [("scores.png", "Baseline-normalised score per task")],
    "eval.eq_bench": [("scores.png", "Baseline-normalised score per task")],
}


def generic(st: StageRun) -> Section:
    """Any kind: the tables of :func:`bielik.report.tables.tables_for` (its metrics as key/value rows if no
    table function is registered) and the figures the stage drew itself (:data:`STAGE_FIGURES`)."""
    sec = Section("", "", tables=tables.tables_for(st.kind, st.metrics))
    for name, caption in STAGE_FIGURES.get(st.kind, []):
        sec.figures += _png(st, name, caption)
    if st.metrics is None:
        sec.notes.append("no metrics.json: the stage did not finish")
    return sec


@builder(
    "data.clean",
    "data.anonymize",
    "data.dedup",
    "data.features",
    "data.quality_filter",
    "data.curate",
)
def curation(st: StageRun) -> Section:
    m = _metrics(st)
    sec = Section("", "", tables=tables.curation(m))
    sec.figures += _png(
        st,
        "funnel.png",
        "Curation funnel: documents remaining after each step (drops in brackets)",
    )
    if m.get("pii_spans"):
        spans = sorted(m["pii_spans"].items(), key=lambda kv: -kv[1])
        sec.figures += _fig(
            st,
            "pii",
            "PII spans replaced by typed placeholders, by type",
            plots.bars(
                [k for k, _ in spans],
                [v for _, v in spans],
                "PII spans by type",
                "spans replaced",
            ),
        )
    elif st.kind in ("data.anonymize", "data.curate") and "anonymize" in str(st.config.get("steps", "anonymize")):
        sec.notes.append("no PII spans found")
    if m.get("status") == "incomplete":
        sec.notes.append(str(m.get("message", "incomplete")))
    return sec


def _training(st: StageRun, kind_label: str, loss_label: str = "loss (nats/token)") -> Section:
    sec = Section("", "")
    sec.figures += _fig(
        st,
        "loss",
        f"{kind_label}: train and held-out loss; learning rate on the right axis",
        plots.loss_lr(
            st.rows("train"),
            st.rows("eval"),
            f"{kind_label}: loss and learning rate",
            loss_label,
        ),
    )
    if not st.records:
        sec.notes.append("no metrics.jsonl: no curves")
    return sec


@builder("train.pretrain")
def pretrain(st: StageRun) -> Section:
    sec = _training(st, "pretraining")
    sec.tables = tables.training(_metrics(st))
    return sec


@builder("train.sft")
def sft(st: StageRun) -> Section:
    sec = _training(st, "SFT", "weighted CE (nats/token)")
    sec.tables = tables.sft(_metrics(st))
    t = tables.objective_trend(st.records, ["ce", "mean_weight"], "instruction CE and mean token weight")
    sec.tables += [t] if t else []
    return sec


@builder("train.dpo")
def dpo(st: StageRun) -> Section:
    sec = _training(st, "DPO-P", "DPO-P loss (nats/pair)")
    keys = [
        "margin",
        "reward_chosen",
        "reward_rejected",
        "accuracy",
        "penalty",
        "dpo_loss",
        "logp_chosen",
        "logp_rejected",
    ]
    sec.tables = tables.training(_metrics(st))
    t = tables.objective_trend(st.records, keys, "DPO-P objective: first and last logged values")
    sec.tables += [t] if t else []
    sec.figures += _fig(
        st,
        "dpo",
        "DPO-P: reward margin, implicit rewards, preference accuracy and the DPO-P penalty",
        plots.panels(
            st.rows("train"),
            st.rows("eval"),
            [
                (
                    "reward margin r_w − r_l",
                    [("margin", "margin")],
                    "β·log-ratio (nats)",
                ),
                (
                    "implicit rewards",
                    [("reward_chosen", "chosen"), ("reward_rejected", "rejected")],
                    "β·log-ratio (nats)",
                ),
                (
                    "preference accuracy (r_w > r_l)",
                    [("accuracy", "accuracy")],
                    "fraction of pairs",
                ),
                (
                    "DPO-P penalty: chosen likelihood lost",
                    [("penalty", "penalty")],
                    "nats per pair",
                ),
            ],
            "DPO-P objective",
        ),
    )
    return sec


@builder("train.grpo")
def grpo(st: StageRun) -> Section:
    sec = _training(st, "GRPO", "GRPO loss")
    sec.tables = tables.grpo(_metrics(st))
    train = st.rows("train")
    reward_keys = [("reward", "total reward")] + [
        (k, k.removeprefix("reward_")) for k in dict.fromkeys(k for r in train for k in r if k.startswith("reward_"))
    ]
    sec.figures += _fig(
        st,
        "grpo",
        "GRPO: rewards of the sampled answers, KL to the reference, answer length, clipping",
        plots.panels(
            train,
            st.rows("eval"),
            [
                ("mean reward of the sampled answers", reward_keys, "reward"),
                ("k3 KL to the reference", [("kl", "KL")], "nats/token"),
                ("completion length", [("completion_length", "length")], "tokens"),
                (
                    "clipped tokens",
                    [("clip_fraction", "clip fraction")],
                    "fraction of tokens",
                ),
            ],
            "GRPO",
        ),
    )
    t = tables.objective_trend(
        st.records,
        [k for k, _ in reward_keys] + ["kl", "completion_length", "clip_fraction", "zero_std_groups"],
        "GRPO: first and last logged values",
    )
    sec.tables += [t] if t else []
    return sec


@builder("compress.distill")
def distill(st: StageRun) -> Section:
    sec = _training(st, "distillation", "KD loss (nats/token)")
    sec.tables = tables.distill(_metrics(st))
    sec.figures += _png(
        st,
        "recovery.png",
        "Recovery: the student's held-out CE during distillation against the teacher's",
    )
    return sec


@builder("quant.compare")
def quant_compare(st: StageRun) -> Section:
    m = _metrics(st)
    sec = Section("", "", tables=tables.compare(m))
    sec.figures += _fig(
        st,
        "quant-error",
        "Quantisation error vs bits per weight, with and without the importance matrix",
        plots.quant_error(m.get("rows") or []),
    )
    return sec


@builder("generate")
def generate(st: StageRun) -> Section:
    p = st.file("samples.json")
    samples = read_json(p) if p else []
    rows = [
        [
            s.get("prompt"),
            s.get("completion"),
            s.get("completion_tokens"),
            s.get("finish_reason"),
        ]
        for s in samples
    ]
    return Section(
        "",
        "",
        tables=[Table("samples", ["prompt", "completion", "tokens", "finish"], rows)] if rows else [],
    )


# kinds whose section is just their tables (bielik.report.tables.TABLES), e.g. data.pack, quant.quantize
for _kind in tables.TABLES:
    BUILDERS.setdefault(_kind, generic)


# ------------------------------------------------------------------------------------------ common parts


def lineage_table(st: StageRun) -> Table | None:
    inputs = st.lineage.get("inputs") or {}
    if not inputs:
        return None
    rows = [[name, (i or {}).get("path"), ((i or {}).get("sha256") or "")[:12] or None] for name, i in inputs.items()]
    return Table("inputs (lineage)", ["input", "path", "sha256 (first 12)"], rows)


def stage_facts(st: StageRun) -> list[tuple[str, str]]:
    lin = st.lineage
    return [
        ("kind", st.kind),
        ("status", st.status),
        ("wall time", duration(st.wall_time_s)),
        ("started", str(st.started or DASH)),
        ("finished", str(st.finished or DASH)),
        ("bielik", str(lin.get("bielik_version") or DASH)),
        ("git rev", str(lin.get("git_rev") or DASH)[:12]),
        ("config sha256", (lin.get("config_sha256") or DASH)[:12]),
        ("output", str(st.path)),
    ]


def stage_section(st: StageRun) -> Section:
    """The full section of one stage: the kind's builder (or the generic one) plus facts, lineage and config."""
    build = BUILDERS.get(st.kind, generic)
    try:
        sec = build(st)
    except (
        KeyError,
        TypeError,
        ValueError,
        BielikError,
    ) as exc:  # a stage of another version wrote other keys
        sec = generic(st)
        sec.notes.append(
            f"the {st.kind} section could not be built from {st.path}/metrics.json ({type(exc).__name__}: {exc}); "
            "showing the raw metrics"
        )
    if st.error:
        sec.notes.insert(0, f"failed: {st.error}")
    sec.id = "stage-" + slug(st.name)
    sec.title = st.name
    sec.kind = st.kind
    sec.facts = stage_facts(st)
    sec.lineage = lineage_table(st)
    from bielik.artifacts import yaml_dump

    sec.config_yaml = yaml_dump({"stage": st.kind, **st.config}) if st.config else ""
    if st.metrics is not None:
        text = json.dumps(st.metrics, indent=1, ensure_ascii=False, default=str)
        sec.metrics_json = text if len(text) <= 20000 else text[:20000] + "\n… (truncated; see metrics.json)"
    return sec
