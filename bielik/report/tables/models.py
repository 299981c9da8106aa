"""Tables of the model stages: training (pretraining, SFT, DPO-P, GRPO, distillation), compression,
quantisation, speed and evaluation."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from bielik.report.document import Table
from bielik.report.tables.generic import dict_rows

# ------------------------------------------------------------------------------------------ training

_TRAIN_KEYS = (
    "steps",
    "tokens",
    "final_train_loss",
    "initial_val_loss",
    "final_val_loss",
    "initial_val_ppl",
    "final_val_ppl",
    "tokens_per_s",
    "mfu",
    "world_size",
    "skipped_steps",
)


def training(m: dict[str, Any]) -> list[Table]:
    """The engine's summary: steps, tokens, losses, throughput, MFU."""
    rows = [[k, m.get(k)] for k in _TRAIN_KEYS if k in m]
    return [Table("training summary", ["metric", "value"], rows)] if rows else []


def objective_trend(
    records: list[dict[str, Any]], keys: Iterable[str], title: str = "objective metrics"
) -> Table | None:
    """First and last logged value of each objective metric, in training and on held-out data."""
    train = [r for r in records if r.get("kind", "train") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]

    def first_last(rows: list[dict], key: str) -> tuple[Any, Any]:
        vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        return (vals[0], vals[-1]) if vals else (None, None)

    rows = []
    for k in keys:
        tf, tl = first_last(train, k)
        ef, el = first_last(evals, f"val_{k}")
        if tf is not None or ef is not None:
            rows.append([k, tf, tl, ef, el])
    if not rows:
        return None
    return Table(
        title,
        ["metric", "train first", "train last", "held-out first", "held-out last"],
        rows,
    )


def sft(m: dict[str, Any]) -> list[Table]:
    """Engine summary, the weight mix (dialogues per instruction weight) and the packing statistics."""
    tables = training(m)
    data = m.get("data") or {}
    weights = data.get("weights") or {}
    if weights:
        total = sum(weights.values()) or 1
        rows = sorted(
            ([float(w), n, 100 * n / total] for w, n in weights.items()),
            key=lambda r: -r[0],
        )
        tables.append(
            Table(
                "SFT weight mix (WICE instruction weights)",
                ["weight", "dialogues", "share [%]"],
                rows,
                [".2f", None, ".1f"],
            )
        )
    rows = []
    for split in ("train", "val"):
        s = data.get(split)
        if isinstance(s, dict):
            rows.append(
                [
                    split,
                    s.get("dialogues_in"),
                    s.get("rows"),
                    s.get("tokens"),
                    s.get("trained_tokens"),
                    s.get("fill"),
                    s.get("dialogues_per_row"),
                    s.get("truncated"),
                    s.get("dropped_too_long"),
                ]
            )
    if rows:
        tables.append(
            Table(
                "packing",
                [
                    "split",
                    "dialogues",
                    "rows",
                    "tokens",
                    "trained tokens",
                    "fill",
                    "dialogues/row",
                    "truncated",
                    "dropped (too long)",
                ],
                rows,
            )
        )
    return tables


def grpo(m: dict[str, Any]) -> list[Table]:
    """Engine summary and the held-out task metrics before and after GRPO."""
    tables = training(m)
    names = [
        k[len("initial_") :]
        for k in m
        if k.startswith("initial_")
        and f"final_{k[len('initial_') :]}" in m
        and k not in ("initial_val_loss", "initial_val_ppl")
    ]
    if names:
        tables.append(
            Table(
                "held-out tasks before and after GRPO",
                ["metric", "before", "after", "change"],
                [
                    [
                        n,
                        m[f"initial_{n}"],
                        m[f"final_{n}"],
                        _diff(m[f"final_{n}"], m[f"initial_{n}"]),
                    ]
                    for n in names
                ],
            )
        )
    return tables


def _diff(a: Any, b: Any) -> float | None:
    return a - b if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None


# ------------------------------------------------------------------------------------------ compression


def importance(m: dict[str, Any]) -> list[Table]:
    bi = m.get("block_influence") or []
    order = {layer: i for i, layer in enumerate(m.get("layers_by_influence") or [])}
    return [
        Table(
            "Block Influence per layer (1 − E[cos(x_in, x_out)]; low = candidate to drop)",
            ["layer", "Block Influence", "rank (least influential first)"],
            [[i, b, order.get(i, 0) + 1 if order else None] for i, b in enumerate(bi)],
            [None, ".5f", None],
        )
    ]


def prune(m: dict[str, Any]) -> list[Table]:
    src, dst = m.get("source_shape") or {}, m.get("shape") or {}
    keys = list(dict.fromkeys([*src, *dst]))
    rows = [[k, src.get(k), dst.get(k)] for k in keys]
    rows.append(["parameters", m.get("parameters_source"), m.get("parameters")])
    return [
        Table(
            f"pruned shape ({100 * m.get('parameter_ratio', 0):.1f}% of the parameters kept)",
            ["", "source", "pruned"],
            rows,
            note=f"kept layers {m.get('kept_layers')}, dropped {m.get('dropped_layers')} "
            f"(depth criterion: {m.get('depth_criterion')})",
        )
    ]


def plan(m: dict[str, Any]) -> list[Table]:
    return [
        dict_rows(
            f"candidate shapes (budget {m.get('budget'):,} parameters)" if m.get("budget") else "candidate shapes",
            m.get("rows") or [],
        )
    ]


def distill(m: dict[str, Any]) -> list[Table]:
    tables = training(m)
    h = m.get("heldout")
    if h:
        rows = [["teacher", m.get("parameters_teacher"), h["teacher_ce"], h["teacher_ppl"]]]
        if m.get("pruned_val_ce") is not None:
            rows.append(
                [
                    "pruned (step 0)",
                    m.get("parameters_student"),
                    m["pruned_val_ce"],
                    math.exp(min(m["pruned_val_ce"], 50)),
                ]
            )
        rows.append(
            [
                "distilled",
                m.get("parameters_student"),
                h["student_ce"],
                h["student_ppl"],
            ]
        )
        tables.append(
            Table(
                "recovery on held-out text",
                ["model", "parameters", "CE (nats/token)", "perplexity"],
                rows,
                [None, None, ".4f", ".2f"],
                note=f"perplexity recovery {100 * h['ppl_recovery']:.1f}%, "
                f"top-1 agreement {100 * h['top1_agree']:.1f}%, "
                f"KL(teacher ‖ student) {h['kl']:.4f} nats/token",
            )
        )
    return tables


# ------------------------------------------------------------------------------------------ quantisation, speed


def quantize(m: dict[str, Any]) -> list[Table]:
    return [
        Table(
            "quantised files",
            ["file", "type", "imatrix", "bits/weight", "size [MiB]"],
            [
                [
                    f["file"],
                    f["type"],
                    f["imatrix"],
                    f["bits_per_weight"],
                    f["bytes"] / 2**20,
                ]
                for f in m.get("files", [])
            ],
            [None, None, None, ".2f", ",.1f"],
            note=f"reference: {m.get('reference')} ({m.get('reference_bits_per_weight') or 0:.2f} bits/weight)",
        )
    ]


def compare(m: dict[str, Any]) -> list[Table]:
    """Quantised GGUFs against the reference: size, PPL, KLD, Δp, same top token (llama-perplexity)."""
    ref = m["reference"]
    chars = sum((m.get("text") or {}).get("characters", {}).values())
    rows = [
        [
            r["model"],
            r["type"],
            r["imatrix"],
            r["gib"],
            r["bits_per_weight"],
            r["ppl"],
            r["delta_ppl"],
            r["kld_mean"],
            r.get("kld_stderr"),
            r.get("kld_p99"),
            r["dp_mean_pct"],
            r["dp_rms_pct"],
            r["same_top_pct"],
        ]
        for r in m["rows"]
    ]
    return [
        Table(
            "quantisation error against the reference",
            [
                "model",
                "type",
                "imatrix",
                "size [GiB]",
                "bits/weight",
                "PPL",
                "ΔPPL",
                "mean KLD",
                "± (stderr)",
                "KLD p99",
                "mean Δp [%]",
                "RMS Δp [%]",
                "same top [%]",
            ],
            rows,
            [
                None,
                None,
                None,
                ".4f",
                ".2f",
                ".4f",
                "+.4f",
                ".5f",
                ".5f",
                ".4f",
                "+.3f",
                ".3f",
                ".2f",
            ],
            note=f"reference {ref['model']} ({ref['type']}, {ref['bits_per_weight']:.2f} bits/weight), "
            f"PPL {ref['ppl']:.4f} "
            f"on {chars:,} held-out characters, context {(m.get('text') or {}).get('ctx')}",
        )
    ]


def speed(m: dict[str, Any] | list) -> list[Table]:
    """Single-stream decode speed: median (min–max) over the runs."""
    rows = m if isinstance(m, list) else m.get("rows", [])

    def cell(s: dict, fmt: str) -> str:
        return f"{s['median']:{fmt}} ({s['min']:{fmt}}–{s['max']:{fmt}})"

    return [
        Table(
            "single-stream speed: median (min–max)",
            [
                "model",
                "engine",
                "weights",
                "output tok/s",
                "TTFT [ms]",
                "TPOT [ms]",
                "prompt tok/s",
            ],
            [
                [
                    r["model"].rsplit("/", 1)[-1],
                    r["engine"],
                    r["dtype"],
                    cell(r["output_tok_s"], ".1f"),
                    cell(r["ttft_ms"], ".1f"),
                    cell(r["tpot_ms"], ".2f"),
                    cell(r["prompt_tok_s"], ".0f"),
                ]
                for r in rows
            ],
            note="median (min–max) over runs; single stream, greedy",
        )
    ]


# ------------------------------------------------------------------------------------------ evaluation


def leaderboard(m: dict[str, Any]) -> list[Table]:
    """Per task score, baseline and baseline-normalised score for each shot count; averages; perplexity."""
    tables = []
    for k, s in (m.get("shots") or {}).items():
        tables.append(
            Table(
                f"{k}-shot",
                ["task", "split", "metric", "score", "baseline", "normalised"],
                [
                    [
                        r["task"],
                        r.get("split"),
                        r["metric"],
                        r["score"],
                        r.get("baseline"),
                        r.get("normalised"),
                    ]
                    for r in s["tasks"]
                ],
                [None, None, None, ".4f", ".3f", ".2f"],
                note=f"average (baseline-normalised) {_num(s.get('average_normalised'))} "
                f"over {s.get('tasks_averaged')} tasks (mc {_num(s.get('average_normalised_mc'))}, "
                f"generation {_num(s.get('average_normalised_generate'))});"
                f" RAG reranking {_num(s.get('rag_reranking'))}, RAG reader {_num(s.get('rag_reader'))}",
            )
        )
    p = m.get("perplexity")
    if p:
        tables.append(
            Table(
                "perplexity on held-out text (lower is better)",
                ["token perplexity", "tokens", "documents", "bits per byte"],
                [
                    [
                        p["token_perplexity"],
                        p["tokens"],
                        p["documents"],
                        p["bits_per_byte"],
                    ]
                ],
                [".3f", None, None, ".4f"],
            )
        )
    return tables


def _num(v: Any) -> str:
    return "—" if v is None else f"{v:.2f}"
