"""``bielik compress plan``: candidate pruned shapes of a base model and their exact parameter counts.

For a base (a preset, built on no device at all, or an HF model directory) and a parameter budget,
the planner lists, like the Minitron report's candidate table, the candidates along each axis alone
(depth, FFN width, hidden width, heads) and every mix of them that lands within ``tolerance`` of the
budget, with the exact parameter count (:func:`bielik.compress.shape.count_params`, equal to
transformers' count). For ``bielik-11b-v3`` the default grid is the report's (hidden 3072/3648, FFN
8192–12800, 32–44 layers); for other bases it is derived from the base (90–60% of the layers, 90–50%
of the FFN, 87.5/75% of the hidden size, rounded to hardware-friendly multiples). The default budget
is two thirds of the base (the report removed a third of Bielik-11B-v3's parameters).

``rank`` (optional, needs a base with weights, its importance file and packed data) prunes the best
``rank.top`` candidates near the budget and distils each for ``rank.train.steps`` steps, then orders
them by held-out CE — the report's "short distillation" search, at a toy scale.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

from pydantic import Field

from bielik.artifacts import atomic_write_text, staged_dir, write_json, write_stage_record
from bielik.compress.shape import Shape, check_target, count_params
from bielik.config import StageConfig
from bielik.errors import ConfigError
from bielik.log import get_logger
from bielik.train.config import EngineConfig

log = get_logger(__name__)

REPORT_GRIDS: dict[str, dict[str, Any]] = {
    # Bielik-Minitron-7B report (RECIPE §7.3): candidates searched for Bielik-11B-v3 and the shape chosen
    "bielik-11b-v3": {
        "layers": [44, 40, 36, 32],
        "ffn": [12800, 12288, 11264, 10240, 9216, 8192],
        "hidden": [3648, 3072],
        "chosen": {"layers": 40, "ffn": 11264},
        "notes": {
            "ffn=8192": "unstable in the report",
            "layers=36": "reasoning collapsed below 40 layers",
            "layers=32": "reasoning collapsed below 40 layers",
        },
    },
}
AXES = ("layers", "hidden", "ffn", "heads")


class RankConfig(StageConfig):
    importance: str = Field(..., description="importance of the base (bielik compress importance)")
    data: str = Field(..., description="packed dataset for the short distillations")
    top: int = Field(3, ge=1, description="candidates nearest the budget to try")
    tau: float = Field(1.0, gt=0)
    train: EngineConfig = Field(
        default_factory=lambda: EngineConfig(
            steps=20, eval={"every": 0, "batches": 4}, checkpoint={"every": 0, "save_final": False}
        )
    )


class PlanConfig(StageConfig):
    base: str = Field("bielik-11b-v3", description="preset name or HF model directory")
    budget: float | str | None = Field(
        None, description="parameters: 7.35e9, '7.35B', '750M', or a fraction of the base (<= 1); default 2/3"
    )
    tolerance: float = Field(0.05, gt=0, description="mixes within ±tolerance of the budget are listed")
    layers: list[int] | None = Field(
        None, description="candidate layer counts (default: the report's grid or 90-60% of the base)"
    )
    hidden: list[int] | None = Field(None, description="candidate hidden sizes")
    ffn: list[int] | None = Field(None, description="candidate FFN sizes")
    heads: list[int] | None = Field(
        None, description="candidate query-head counts (KV heads follow GQA, see compress prune)"
    )
    output: str | None = Field(None, description="write plan.md / plan.json / the stage record here (null: print only)")
    rank: RankConfig | None = None
    overwrite: bool = False


def parse_budget(value: float | str | None, base_params: int) -> int:
    if value is None:
        return round(base_params * 2 / 3)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([KMBT]?)\s*", value, re.IGNORECASE)
        if m is None:
            raise ConfigError(f"budget={value!r}: expected a number, '7.35B', '750M' or a fraction of the base")
        value = float(m.group(1)) * {"": 1, "K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}[m.group(2).upper()]
    if value <= 0:
        raise ConfigError(f"budget={value}: must be positive")
    return round(base_params * value) if value <= 1 else round(value)


def _round(x: float, m: int) -> int:
    return max(m, int(round(x / m)) * m)


def default_grid(name: str, src: Shape) -> dict[str, list[int]]:
    if name in REPORT_GRIDS:
        return {a: list(REPORT_GRIDS[name].get(a, [])) for a in AXES}
    fm, hm = (256, 64) if src.ffn >= 2048 else (16, 16)
    layers = sorted({max(1, round(src.layers * f)) for f in (0.9, 0.8, 0.7, 0.6)} - {src.layers}, reverse=True)
    ffn = sorted({_round(src.ffn * f, fm) for f in (0.9, 0.8, 0.7, 0.6, 0.5)} - {src.ffn}, reverse=True)
    hidden = sorted({_round(src.hidden * f, hm) for f in (0.875, 0.75)} - {src.hidden}, reverse=True)
    return {"layers": layers, "hidden": hidden, "ffn": ffn, "heads": []}


def base_shape(base: str) -> Shape:
    from transformers import AutoConfig

    from bielik.model.factory import build_config
    from bielik.model.presets import PRESETS

    if Path(base).is_dir():
        return Shape.of(AutoConfig.from_pretrained(base))
    if base in PRESETS:
        return Shape.of(build_config(base))
    raise ConfigError(f"base={base!r} is neither an HF model directory nor a preset (bielik model presets)")


def _with_heads(src: Shape, heads: int) -> Shape:
    kv = heads if src.kv_heads == src.heads else src.kv_heads
    return src.with_(heads=heads, kv_heads=kv)


def _label(src: Shape, s: Shape) -> str:
    parts = [
        f"{s.layers} layers" if s.layers != src.layers else "",
        f"hidden {s.hidden}" if s.hidden != src.hidden else "",
        f"FFN {s.ffn}" if s.ffn != src.ffn else "",
        f"heads {s.heads}/{s.kv_heads}" if s.heads != src.heads else "",
    ]
    return " + ".join(p for p in parts if p) or "base"


def candidates(src: Shape, grid: dict[str, list[int]], budget: int, tolerance: float) -> list[tuple[str, Shape]]:
    """(axis, shape): the base, each axis alone, and mixes of ≥ 2 axes within ``tolerance`` of ``budget``."""
    options = {a: [None] + [v for v in grid.get(a, []) if v != getattr(src, a)] for a in AXES}
    rows = [("base", src)]
    for a in AXES:
        rows += [
            ({"layers": "depth", "ffn": "FFN"}.get(a, a), _with_heads(src, v) if a == "heads" else src.with_(**{a: v}))
            for v in options[a][1:]
        ]
    mixes = []
    for combo in itertools.product(*(options[a] for a in AXES)):
        if sum(v is not None for v in combo) < 2:
            continue
        layers, hidden, ffn, heads = combo
        s = src.with_(layers=layers, hidden=hidden, ffn=ffn)
        s = _with_heads(s, heads) if heads is not None else s
        if abs(count_params(s) / budget - 1) <= tolerance:
            mixes.append(("mix", s))
    mixes.sort(key=lambda r: abs(count_params(r[1]) / budget - 1))
    kept = [r for r in rows + mixes if _valid(src, r[1])]
    if len(kept) < len(rows) + len(mixes):
        log.info(
            "skipped %d candidate(s) that are not valid prunings of %s",
            len(rows) + len(mixes) - len(kept),
            src.model_type,
        )
    return kept


def _valid(src: Shape, s: Shape) -> bool:
    try:
        check_target(src, s)
    except ConfigError:
        return False
    return True


def plan_rows(name: str, src: Shape, grid: dict[str, list[int]], budget: int, tolerance: float) -> list[dict[str, Any]]:
    from bielik.model.factory import human

    base_n = count_params(src)
    report = REPORT_GRIDS.get(name, {})
    chosen = report.get("chosen")
    rows = []
    for axis, s in candidates(src, grid, budget, tolerance):
        n = count_params(s)
        notes = [v for k, v in report.get("notes", {}).items() if _matches(src, s, k)]
        if chosen and s == src.with_(**chosen):
            notes.insert(0, "the report's choice")
        rows.append(
            {
                "axis": axis,
                "candidate": _label(src, s),
                "layers": s.layers,
                "hidden": s.hidden,
                "ffn": s.ffn,
                "heads": s.heads,
                "kv_heads": s.kv_heads,
                "parameters": n,
                "parameters_human": human(n),
                "vs_base": n / base_n - 1,
                "vs_budget": n / budget - 1,
                "within_budget": abs(n / budget - 1) <= tolerance,
                "note": "; ".join(notes),
            }
        )
    return rows


def _matches(src: Shape, s: Shape, key: str) -> bool:
    axis, value = key.split("=")
    return getattr(s, axis) == int(value) and getattr(src, axis) != int(value)


def markdown_table(rows: list[dict[str, Any]], title: str) -> str:
    lines = [
        title,
        "",
        "| axis | candidate | layers | hidden | FFN | heads/KV | parameters | vs base | vs budget | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        mark = " ✓" if r["within_budget"] else ""
        extra = f" | {r['rank_val_ce']:.4f}" if "rank_val_ce" in r else ""
        lines.append(
            f"| {r['axis']} | {r['candidate']} | {r['layers']} | {r['hidden']} | {r['ffn']} | "
            f"{r['heads']}/{r['kv_heads']} | {r['parameters']:,} ({r['parameters_human']}) | "
            f"{100 * r['vs_base']:+.1f}% | {100 * r['vs_budget']:+.1f}%{mark} | {r['note']}{extra} |"
        )
    if any("rank_val_ce" in r for r in rows):
        lines[2] = lines[2].replace("| note |", "| note | short-KD held-out CE |")
        lines[3] += "---:|"
    return "\n".join(lines)


def rank_candidates(cfg: PlanConfig, rows: list[dict[str, Any]], work: Path) -> list[dict[str, Any]]:
    """Prune and briefly distil the ``rank.top`` candidates nearest the budget; order them by held-out CE."""
    from bielik.compress.distill import DistillConfig, distill
    from bielik.compress.prune import PruneConfig, prune

    if not Path(cfg.base).is_dir():
        raise ConfigError(f"rank: base={cfg.base!r} must be an HF model directory with weights (a preset has none)")
    pool = sorted((r for r in rows if r["within_budget"] and r["axis"] != "base"), key=lambda r: abs(r["vs_budget"]))[
        : cfg.rank.top
    ]
    for r in pool:
        slug = re.sub(r"[^a-z0-9]+", "-", r["candidate"].lower()).strip("-")
        prune(
            PruneConfig(
                model=cfg.base,
                importance=cfg.rank.importance,
                output=str(work / slug / "pruned"),
                layers=r["layers"],
                hidden_size=r["hidden"],
                intermediate_size=r["ffn"],
                num_attention_heads=r["heads"],
                num_key_value_heads=r["kv_heads"],
            )
        )
        res = distill(
            DistillConfig(
                teacher=cfg.base,
                student=str(work / slug / "pruned"),
                data=cfg.rank.data,
                output=str(work / slug / "distill"),
                train=cfg.rank.train,
                tau=cfg.rank.tau,
            )
        )
        r["rank_val_ce"] = res["heldout"]["student_ce"]
        log.info("rank: %s -> held-out CE %.4f after %d steps", r["candidate"], r["rank_val_ce"], cfg.rank.train.steps)
    ranked = sorted((r for r in rows if "rank_val_ce" in r), key=lambda r: r["rank_val_ce"])
    return ranked + [r for r in rows if "rank_val_ce" not in r]


def plan(cfg: PlanConfig) -> dict[str, Any]:
    """The candidate table of ``cfg.base`` for ``cfg.budget``; written to ``cfg.output`` when given."""
    from bielik.model.factory import human

    if cfg.rank is not None and not cfg.output:
        raise ConfigError("rank: set output=DIR (the short distillations are written there)")
    src = base_shape(cfg.base)
    n_base = count_params(src)
    budget = parse_budget(cfg.budget, n_base)
    grid = default_grid(cfg.base, src)
    grid.update({a: getattr(cfg, a) for a in AXES if getattr(cfg, a) is not None})
    rows = plan_rows(cfg.base, src, grid, budget, cfg.tolerance)
    title = (
        f"Candidates for {cfg.base} ({human(n_base)} parameters), budget {human(budget)} "
        f"({100 * (budget / n_base - 1):+.1f}%), ✓ = within ±{100 * cfg.tolerance:.0f}%"
    )
    result = {"base": cfg.base, "base_shape": src.as_dict(), "base_parameters": n_base, "budget": budget, "grid": grid}
    if not cfg.output:
        return {**result, "rows": rows, "table": markdown_table(rows, title)}
    with staged_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
        if cfg.rank is not None:
            rows = rank_candidates(cfg, rows, tmp / "rank")
        result.update(rows=rows, table=markdown_table(rows, title))
        atomic_write_text(tmp / "plan.md", result["table"] + "\n")
        write_json(tmp / "plan.json", rows)
        inputs = None
        if Path(cfg.base).is_dir():
            inputs = {
                "base": cfg.base,
                **({"importance": cfg.rank.importance, "data": cfg.rank.data} if cfg.rank else {}),
            }
        write_stage_record(tmp, "compress.plan", cfg, inputs=inputs, metrics=result)
    return result
