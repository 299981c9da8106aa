"""Tables of stage results, as data (:class:`bielik.report.document.Table`), built from what a stage returns
(which is also what it writes to ``metrics.json``).

These functions are the one place where a stage's numbers become a table: the report's sections use them,
and the CLI can print the same tables after running a stage (``bielik.report.render.to_rich``). Each takes
the stage's metrics dict and returns a list of tables (empty when the metrics hold nothing for it).
"""

from __future__ import annotations

from bielik.report.document import Table
from bielik.report.tables.data import (
    classification,
    curation,
    pack,
    pii,
    quality_eval,
    quality_train,
    tokenizer_stats,
)
from bielik.report.tables.generic import dict_rows, flatten, generic, key_values
from bielik.report.tables.models import (
    compare,
    distill,
    grpo,
    importance,
    leaderboard,
    objective_trend,
    plan,
    prune,
    quantize,
    sft,
    speed,
    training,
)

__all__ = [
    "TABLES",
    "classification",
    "compare",
    "curation",
    "dict_rows",
    "distill",
    "flatten",
    "generic",
    "grpo",
    "importance",
    "key_values",
    "leaderboard",
    "objective_trend",
    "pack",
    "pii",
    "plan",
    "prune",
    "quality_eval",
    "quality_train",
    "quantize",
    "sft",
    "speed",
    "tables_for",
    "tokenizer_stats",
    "training",
]

#: stage kind -> table function (the CLI calls :func:`tables_for`)
TABLES = {
    **dict.fromkeys(
        ("data.clean", "data.anonymize", "data.dedup", "data.features", "data.quality_filter", "data.curate"), curation
    ),
    "quality.eval": quality_eval,
    "quality.train": quality_train,
    "tokenizer.stats": tokenizer_stats,
    "data.pack": pack,
    "train.pretrain": training,
    "train.sft": sft,
    "train.dpo": training,
    "train.grpo": grpo,
    "compress.importance": importance,
    "compress.prune": prune,
    "compress.plan": plan,
    "compress.distill": distill,
    "quant.quantize": quantize,
    "quant.compare": compare,
    "bench.speed": speed,
    "eval.leaderboard": leaderboard,
    "eval.eq_bench": leaderboard,
}


def tables_for(kind: str, metrics: dict | list | None) -> list[Table]:
    """The tables of a stage's result (its return value or ``metrics.json``); any kind works (generic fallback)."""
    if metrics is None:
        return []
    fn = TABLES.get(kind)
    return fn(metrics) if fn is not None else generic(metrics)
