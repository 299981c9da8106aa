"""``bielik compress distill``: recover a pruned student by logit distillation from its teacher.

The stage is the engine (:class:`bielik.train.engine.Engine`) with the
:class:`~bielik.train.objectives.kd.LogitDistillation` objective: the teacher is a frozen model of the
objective (moved, cast, never optimised, never checkpointed), its pass is the no-grad preparation
pass (cacheable per example with ``train.prepare.cache`` for ``top_k > 0``), and checkpoints, resume,
precision, DDP and logging are the engine's. Defaults follow the report: logit-only forward KL
(``alpha = 0``), τ = 1, AdamW with a cosine schedule; the student starts from the surviving teacher
weights (``bielik compress prune``).

Outputs in ``output``: ``final/`` (HF model + tokenizer), ``checkpoints/``, ``metrics.jsonl``,
``recovery.png`` (held-out CE of the student against the step, the teacher's as a line),
``report.md`` and ``metrics.json`` with the held-out comparison of teacher, pruned (step 0) and
distilled student: CE, perplexity, KL(teacher ‖ student), top-1 agreement, parameter counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from bielik.artifacts import atomic_write_text, read_log_rows, write_stage_record
from bielik.config import StageConfig
from bielik.errors import BielikError
from bielik.log import get_logger
from bielik.train.config import EngineConfig

log = get_logger(__name__)


class DistillConfig(StageConfig):
    teacher: str = Field("runs/pretrain/final", description="HF model directory of the teacher (the unpruned model)")
    student: str = Field(
        "runs/compress/pruned", description="HF model directory of the student (bielik compress prune)"
    )
    data: str = Field("runs/data", description="packed dataset directory (bielik data pack)")
    output: str = "runs/compress/distilled"
    train: EngineConfig = Field(default_factory=EngineConfig)
    tau: float = Field(1.0, gt=0, description="softmax temperature τ; the KL is scaled by τ²")
    alpha: float = Field(
        0.0, ge=0, le=1, description="weight of the ground-truth CE: (1-α)·KD + α·CE (0 = the report's logit-only KD)"
    )
    top_k: int = Field(
        0, ge=0, description="0: full-vocabulary KL; k: teacher's top-k logits + a rest bucket (cacheable)"
    )


@torch.no_grad()
def compare_heldout(
    student, teacher, batches: Iterable[dict[str, torch.Tensor]], chunk: int = 1024
) -> dict[str, float]:
    """Teacher and student on held-out rows: CE (nats/token), perplexity, KL(teacher ‖ student) and top-1 agreement."""
    from bielik.model.lm_head import fused_linear_cross_entropy
    from bielik.train.objectives.base import decoder_hidden_states, lm_head_weight, shifted_labels
    from bielik.train.objectives.kd import fused_linear_kd

    sums = torch.zeros(4, dtype=torch.float64)
    tokens = 0
    for m in (student, teacher):
        m.eval()
    for batch in batches:
        ids = batch["input_ids"].to(next(student.parameters()).device)
        y = shifted_labels({"input_ids": ids})
        ht = decoder_hidden_states(teacher, ids)[:, :-1]
        t_ce = fused_linear_cross_entropy(ht, lm_head_weight(teacher), y, chunk=chunk)[1]
        hs = decoder_hidden_states(student, ids)[:, :-1]
        _, s_ce, kl, agree = fused_linear_kd(
            hs, lm_head_weight(student), y, {"hidden": ht, "weight": lm_head_weight(teacher)}, chunk=chunk
        )
        sums += torch.stack([t_ce.double(), s_ce.double(), kl.double(), agree.double()]).cpu()
        tokens += int((y != -100).sum())
    if tokens == 0:
        raise BielikError("held-out comparison: no held-out tokens")
    t_ce, s_ce, kl, agree = (float(v) / tokens for v in sums)
    return {
        "teacher_ce": t_ce,
        "student_ce": s_ce,
        "teacher_ppl": math.exp(min(t_ce, 50)),
        "student_ppl": math.exp(min(s_ce, 50)),
        "ppl_recovery": math.exp(min(t_ce, 50)) / math.exp(min(s_ce, 50)),
        "kl": kl,
        "top1_agree": agree,
        "tokens": tokens,
    }


def eval_curve(out_dir: str | Path, key: str = "val_ce") -> list[tuple[int, float]]:
    """(step, value) of every held-out evaluation in ``metrics.jsonl``."""
    path = Path(out_dir) / "metrics.jsonl"
    rows = read_log_rows(path) if path.is_file() else []
    return [(r["step"], r[key]) for r in rows if r.get("kind") == "eval" and key in r]


def report_markdown(s: dict[str, Any]) -> str:
    c = s["heldout"]
    lines = [
        f"# Distillation: {s['student']} <- {s['teacher']}",
        "",
        f"objective: {s['objective']} (tau {s['tau']}, alpha {s['alpha']}, top_k {s['top_k']}), {s['steps']} steps, "
        f"{s['tokens']:,} tokens",
        "",
        "| model | parameters | held-out CE | perplexity |",
        "|---|---:|---:|---:|",
        f"| teacher | {s['parameters_teacher']:,} | {c['teacher_ce']:.4f} | {c['teacher_ppl']:.2f} |",
    ]
    if s.get("pruned_val_ce") is not None:
        lines.append(
            f"| pruned (step 0) | {s['parameters_student']:,} | {s['pruned_val_ce']:.4f} | "
            f"{math.exp(min(s['pruned_val_ce'], 50)):.2f} |"
        )
    lines += [
        f"| distilled | {s['parameters_student']:,} | {c['student_ce']:.4f} | {c['student_ppl']:.2f} |",
        "",
        (
            f"perplexity recovery (teacher ppl / student ppl): {100 * c['ppl_recovery']:.1f}%; "
            f"top-1 agreement with the teacher: {100 * c['top1_agree']:.1f}%; "
            f"KL(teacher ‖ student): {c['kl']:.4f} nats/token"
        ),
        "",
        "![recovery](recovery.png)",
        "",
    ]
    return "\n".join(lines)


def _load_pair(cfg: DistillConfig, data_vocab: int):
    from bielik.model.loading import load_hf_model

    e = cfg.train  # the teacher is loaded in the dtype the engine will cast it to (an 11B teacher in fp32 is 44 GB)
    frozen = (
        e.prepare.frozen_dtype
        if e.prepare.frozen_dtype != "auto"
        else ("float32" if e.precision == "fp32" else "bfloat16")
    )
    student, teacher = load_hf_model(cfg.student), load_hf_model(cfg.teacher, dtype=frozen)
    vs, vt = student.config.vocab_size, teacher.config.vocab_size
    if vs != vt:
        raise BielikError(
            f"student {cfg.student} has vocab_size {vs} but teacher {cfg.teacher} has {vt}: "
            "logit distillation needs one vocabulary"
        )
    if vs < data_vocab:
        raise BielikError(
            f"data {cfg.data} was packed with a {data_vocab}-token tokenizer but the models have vocab_size {vs}"
        )
    return student, teacher


def distill(cfg: DistillConfig) -> dict[str, Any]:
    """Distil ``cfg.teacher`` into ``cfg.student`` on ``cfg.data``; return the summary also written to
    ``metrics.json``."""
    from bielik.data.pack import TokenShards
    from bielik.train.batches import PackedRowBatches, eval_batches
    from bielik.train.distributed import init_distributed
    from bielik.train.engine import Engine
    from bielik.train.objectives.kd import LogitDistillation

    train_rows, val_rows = TokenShards(cfg.data, "train"), TokenShards(cfg.data, "val")
    student, teacher = _load_pair(cfg, train_rows.vocab_size)
    e = cfg.train
    d = init_distributed(e.device, e.distributed)
    objective = LogitDistillation(teacher, cfg.tau, cfg.alpha, cfg.top_k, chunk=e.lm_head_chunk)
    source = PackedRowBatches(train_rows, e.micro_batch_size, e.grad_accum, d.rank, d.world_size, e.seed)
    # None (not a function returning None) without held-out rows: the engine then skips evaluation
    evals = (
        (lambda: eval_batches(val_rows, e.micro_batch_size, e.eval.batches, d.rank, d.world_size))
        if len(val_rows)
        else None
    )
    engine = Engine(
        e, student, objective, source, cfg.output, d, seq_len=train_rows.seq_len, eval_batches=evals, run_config=cfg
    )
    if d.is_main:
        log.info(
            "distilling %s -> %s (%s): %d steps x %d tokens",
            cfg.teacher,
            cfg.student,
            objective.name,
            e.steps,
            source.tokens_per_step,
        )
    summary = engine.fit()
    if e.checkpoint.save_final:
        engine.export(Path(cfg.output) / "final", extra_dirs=[cfg.student])
    if not d.is_main:
        return summary
    summary.update(
        objective=objective.name,
        tau=cfg.tau,
        alpha=cfg.alpha,
        top_k=cfg.top_k,
        teacher=cfg.teacher,
        student=cfg.student,
    )
    _report(cfg, summary, engine, teacher, val_rows, sharded=d.enabled and e.distributed.strategy == "fsdp2")
    write_stage_record(
        cfg.output,
        "compress.distill",
        cfg,
        inputs={"teacher": cfg.teacher, "student": cfg.student, "data": cfg.data},
        metrics=summary,
    )
    return summary


def _report(cfg: DistillConfig, summary: dict[str, Any], engine, teacher, val_rows, sharded: bool) -> None:
    """Rank 0: parameter counts, the held-out comparison, ``recovery.png`` and ``report.md`` into
    ``summary``/``output``.

    Sharded (FSDP2) models cannot run on one rank, so then the exported ``final/`` and a fresh copy of
    the teacher are compared (nothing is compared without ``final/``).
    """
    from bielik.compress.plots import plot_recovery
    from bielik.model.factory import ParamCount
    from bielik.model.loading import load_hf_model
    from bielik.train.batches import eval_batches

    summary.update(
        parameters_teacher=ParamCount.of(teacher).total, parameters_student=ParamCount.of(engine.hf_model).total
    )
    curve = eval_curve(cfg.output)
    summary["pruned_val_ce"] = curve[0][1] if curve and curve[0][0] == 0 else None
    final = Path(cfg.output) / "final"
    if not len(val_rows) or (sharded and not final.is_dir()):
        return
    if sharded:
        student, teacher = load_hf_model(final).to(engine.device), load_hf_model(cfg.teacher).to(engine.device)
    else:
        student = engine.hf_model
        teacher.to(engine.device)
    e = cfg.train
    h = summary["heldout"] = compare_heldout(
        student, teacher, eval_batches(val_rows, e.micro_batch_size, e.eval.batches), e.lm_head_chunk or 1024
    )
    plot_recovery({"student": curve}, {"teacher": h["teacher_ce"]}, Path(cfg.output) / "recovery.png")
    atomic_write_text(Path(cfg.output) / "report.md", report_markdown(summary))
    log.info(
        "held-out: teacher CE %.4f, distilled CE %.4f (ppl recovery %.1f%%, top-1 agreement %.1f%%)",
        h["teacher_ce"],
        h["student_ce"],
        100 * h["ppl_recovery"],
        100 * h["top1_agree"],
    )
