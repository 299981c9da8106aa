"""Minitron recovery on a tiny teacher: prune a third, then no training vs KD vs CE-only at one token budget.

A ~3M-parameter Llama teacher is pretrained on the shipped corpus, its importance computed on packed
training rows, and it is pruned by about a third (depth 6 → 4 layers by Block Influence, FFN 512 →
384). The student then gets (a) no training, (b) logit-only KD (the report's recipe: forward KL,
τ = 1, α = 0) and (c) CE only (α = 1) for the same steps and tokens; (d) the same pruning with the
*last* two layers dropped instead of the lowest-BI ones is trained with KD too. Reported on held-out
rows no stage trained on: CE, perplexity recovery (teacher ppl / student ppl), top-1 agreement with
the teacher, and the Open PL LLM Leaderboard multiple-choice tasks' normalised score (data from
../shared when present; a 3M model is near chance there, so read that column as noise).

    flock /tmp/bielik-heavy.lock .venv/bin/python benchmarks/minitron_recovery.py [--work DIR] [--steps 150]

Artifacts are cached in ``--work``; rerunning reuses the teacher. Results: ``<work>/results.json``,
``<work>/recovery.png``. Measured (docs/compression.md has the tables): with the default 400-step
teacher (ppl 298) KD recovers 99.7% of its perplexity (top-1 agreement 93%) but CE only ends at
107.5% — an under-trained teacher is beaten by more pretraining; with ``--teacher-steps 1500``
(ppl 119) KD 95.1% / 83.2% beats CE only 93.7% / 67.3%, and BI beats dropping the last layers
(no training 70.4% vs 39.1%; after KD 95.1% vs 91.6%).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from bielik.compress.distill import DistillConfig, compare_heldout, distill, eval_curve  # noqa: E402
from bielik.compress.importance import ImportanceConfig, importance  # noqa: E402
from bielik.compress.plots import plot_recovery  # noqa: E402
from bielik.compress.prune import PruneConfig, prune  # noqa: E402
from bielik.data.pack import PackConfig, TokenShards, pack  # noqa: E402
from bielik.model.factory import ModelInitConfig, ParamCount, init_model  # noqa: E402
from bielik.model.loading import load_hf_model  # noqa: E402
from bielik.runtime import set_threads  # noqa: E402
from bielik.tokenizer.train import TokenizerTrainConfig, train_tokenizer  # noqa: E402
from bielik.train.batches import eval_batches  # noqa: E402
from bielik.train.pretrain import PretrainConfig, pretrain  # noqa: E402

TEACHER = {
    "hidden_size": 192,
    "intermediate_size": 512,
    "num_hidden_layers": 6,
    "num_attention_heads": 6,
    "num_key_value_heads": 2,
    "tie_word_embeddings": True,
}
MC_TASKS = [
    "polemo2_in_multiple_choice",
    "polemo2_out_multiple_choice",
    "polish_dyk_multiple_choice",
    "polish_ppc_multiple_choice",
    "polish_klej_ner_multiple_choice",
]


def train_cfg(steps: int, batch: int, lr: float, eval_every: int) -> dict:
    return {
        "steps": steps,
        "micro_batch_size": batch,
        "lm_head_chunk": 1024,
        "eval": {"every": eval_every, "batches": 8},
        "logging": {"every": 25},
        "checkpoint": {"every": 0, "save_final": True},
        "optim": {"lr": lr, "min_lr": lr / 10, "warmup_steps": 10},
    }


def teacher(work: Path, args) -> tuple[Path, Path]:
    tok, data, init, pre = work / "tok", work / "data", work / "init", work / "teacher"
    if not tok.exists():
        train_tokenizer(TokenizerTrainConfig(output=str(tok), vocab_size=4096, max_chars=3_000_000))
    if not data.exists():
        pack(
            PackConfig(
                tokenizer=str(tok),
                output=str(data),
                seq_len=128,
                max_tokens=2_000_000,
                val_fraction=0.03,
                mix={"pl": 0.75, "en": 0.25},
            )
        )
    if not init.exists():
        init_model(ModelInitConfig(preset="tiny-llama", tokenizer=str(tok), output=str(init), overrides=TEACHER))
    if not (pre / "final").exists():
        pretrain(
            PretrainConfig(
                model=str(init), data=str(data), output=str(pre), train=train_cfg(args.teacher_steps, 16, 3e-3, 100)
            )
        )
    return pre / "final", data


def heldout(model_dir: Path, teacher_dir: Path, data: Path, batches: int) -> dict:
    rows = TokenShards(data, "val")
    return compare_heldout(load_hf_model(model_dir), load_hf_model(teacher_dir), eval_batches(rows, 16, batches), 1024)


def leaderboard(model_dir: Path, work: Path, limit: int) -> float | None:
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "eval"
    if not shared.is_dir() or limit == 0:
        return None
    from bielik.eval.leaderboard import LeaderboardConfig, run_leaderboard

    out = work / "lb" / (model_dir.parent.name if model_dir.name == "final" else model_dir.name)
    s = run_leaderboard(
        LeaderboardConfig(
            model=str(model_dir),
            output=str(out),
            tasks=MC_TASKS,
            num_fewshot=[0],
            data_dir=[str(shared)],
            limit=limit,
            bootstrap_iters=0,
            write_samples=False,
        )
    )
    return s["shots"]["0"]["average_normalised"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="runs/bench-minitron")
    ap.add_argument("--teacher-steps", type=int, default=400)
    ap.add_argument("--steps", type=int, default=150, help="student training steps (KD and CE alike)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-batches", type=int, default=16)
    ap.add_argument("--lb-limit", type=int, default=150, help="documents per leaderboard task (0: skip)")
    args = ap.parse_args()
    set_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    work = Path(args.work)
    t0 = time.perf_counter()
    t_dir, data = teacher(work, args)
    if not (work / "imp").exists():
        importance(ImportanceConfig(model=str(t_dir), output=str(work / "imp"), data=str(data), samples=64, ctx=128))
    target = {"layers": 4, "intermediate_size": 384}
    results: dict[str, Path] = {}
    for name, depth in (("bi", "block_influence"), ("last", "last")):
        p = work / f"pruned-{name}"
        if not p.exists():
            prune(PruneConfig(model=str(t_dir), importance=str(work / "imp"), output=str(p), depth=depth, **target))
        results[f"pruned ({name}), no training"] = p
    runs = {"KD (BI)": ("bi", 0.0), "CE only (BI)": ("bi", 1.0), "KD (last layers)": ("last", 0.0)}
    curves = {}
    for name, (which, alpha) in runs.items():
        out = work / ("run-" + name.lower().replace(" ", "-").replace("(", "").replace(")", ""))
        if not (out / "final").exists():
            distill(
                DistillConfig(
                    teacher=str(t_dir),
                    student=str(work / f"pruned-{which}"),
                    data=str(data),
                    output=str(out),
                    alpha=alpha,
                    train=train_cfg(args.steps, 16, args.lr, 25),
                )
            )
        curves[name] = eval_curve(out)
        results[name] = out / "final"
    rows = []
    for name, d in {"teacher": t_dir, **results}.items():
        n = ParamCount.of(load_hf_model(d)).total
        rows.append(
            {
                "model": name,
                "parameters": n,
                **heldout(d, t_dir, data, args.eval_batches),
                "leaderboard_mc_normalised": leaderboard(d, work, args.lb_limit),
            }
        )
    plot_recovery(curves, {"teacher": rows[0]["student_ce"]}, work / "recovery.png")
    (work / "results.json").write_text(json.dumps(rows, indent=2, default=str))
    print(
        f"\nheld-out: {rows[0]['tokens']:,} tokens; student budget {args.steps} steps x 16 x 128 tokens; "
        f"total {time.perf_counter() - t0:.0f} s\n"
    )
    print(
        "| model | parameters | held-out CE | ppl | ppl recovery | top-1 agreement | KL(t‖s) | leaderboard MC (norm.) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        lb = "n/a" if r["leaderboard_mc_normalised"] is None else f"{r['leaderboard_mc_normalised']:.1f}"
        print(
            f"| {r['model']} | {r['parameters']:,} | {r['student_ce']:.4f} | {r['student_ppl']:.1f} | "
            f"{100 * r['ppl_recovery']:.1f}% | {100 * r['top1_agree']:.1f}% | {r['kl']:.4f} | {lb} |"
        )


if __name__ == "__main__":
    from bielik.runtime import configure_process

    configure_process()  # logging (the entry point's job, not an import's)
    main()
