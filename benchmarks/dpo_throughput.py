"""DPO throughput and memory: ``bielik train dpo`` (DPO-P at λ = 0) against TRL's ``DPOTrainer`` (sigmoid loss).

Both sides get the same tiny model (tiny-llama preset, the same initial weights, a bielik tokenizer of
``--vocab`` tokens), the same pairs (a seeded sample of the shipped preference pairs, only pairs whose
prompt + chosen + rejected fit in ``--seq-len`` tokens, so neither side truncates), the same chat
template (bielik's ChatML; TRL gets the pairs in its conversational format: ``prompt`` = the context
messages, ``chosen`` / ``rejected`` = one assistant message each), β = 0.1, the same global batch in
pairs, fused AdamW and a warm-up + cosine schedule, and **reference log-probs precomputed on both
sides** before the timed steps (bielik: ``train.prepare.cache=auto precompute=true``, the stage's
default; TRL: ``precompute_ref_log_probs=True``). bielik runs its stage's own pieces (``build_pairs``,
``PairBatches`` with shared-prompt packed rows of ``--seq-len``, ``DPOPositive(lam=0)``, the engine).
TRL runs its concatenated [chosen; rejected] batch padded to the longest sequence (its
``padding_free`` is disabled in 1.16), its fused LM head, ``gradient_checkpointing=False``,
``use_cpu=True``.

Metric: preference pairs per second over the timed optimizer steps (after ``--warmup`` untimed
ones; data preparation, model loading and the reference precompute excluded). Each run is a fresh
subprocess; "train RSS" is its peak resident memory during the training steps (the high-water mark
is reset just before the first step), "process RSS" the peak of the whole process. Runs are
interleaved (bielik, trl, bielik, ...) because this machine's speed drifts; the ratio is the median
of the per-round ratios.

    flock /tmp/bielik-heavy.lock env OMP_NUM_THREADS=2 .venv/bin/python benchmarks/dpo_throughput.py \\
        [--pairs 3] [--steps 12] [--warmup 3] [--batch 8] [--precision fp32] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _child import peak_rss_mib, reset_peak_rss, run_child  # noqa: E402

from bielik.runtime import set_threads  # noqa: E402

SIDES = ("bielik", "trl")
LR, MIN_LR, BETA = 5e-5, 5e-6, 0.1


# --- preparation (once per work dir) -----------------------------------------------------------
def prepare(work: Path, vocab: int, n_pairs: int, seq_len: int, seed: int = 0) -> None:
    from bielik.data.preferences import encode_pair, read_preferences
    from bielik.model.factory import ModelInitConfig, init_model
    from bielik.tokenizer.chat import ensure_chat_template
    from bielik.tokenizer.formats import load_hf_tokenizer
    from bielik.tokenizer.train import TokenizerTrainConfig, train_tokenizer

    if not (work / "init" / "config.json").is_file():
        tok = work / "tok"
        train_tokenizer(TokenizerTrainConfig(output=str(tok), vocab_size=vocab, max_chars=3_000_000))
        init_model(ModelInitConfig(preset="tiny-llama", tokenizer=str(tok), output=str(work / "init")))
    if not (work / "pairs.jsonl").is_file():
        tok = ensure_chat_template(load_hf_tokenizer(work / "init"))
        pairs = [p for p in read_preferences(["shipped"]) if p.chosen != p.rejected]
        random.Random(seed).shuffle(pairs)
        keep = []
        for p in pairs:
            e = encode_pair(tok, p)
            if len(e.prompt) + len(e.chosen) + len(e.rejected) <= seq_len:
                keep.append(p)
            if len(keep) == n_pairs:
                break
        with open(work / "pairs.jsonl", "w", encoding="utf-8") as f:
            for p in keep:
                f.write(
                    json.dumps(
                        {"id": p.id, "messages": list(p.messages), "chosen": p.chosen, "rejected": p.rejected},
                        ensure_ascii=False,
                    )
                    + "\n"
                )


# --- one side, in its own process ---------------------------------------------------------------
def measure_bielik(work: Path, args) -> dict:
    from bielik.model.loading import load_hf_model
    from bielik.tokenizer.chat import ensure_chat_template
    from bielik.tokenizer.formats import load_hf_tokenizer
    from bielik.train.distributed import Dist
    from bielik.train.dpo import DPOConfig, PairBatches, build_pairs
    from bielik.train.engine import Engine
    from bielik.train.objectives.dpo import DPOPositive

    model_dir = work / "init"
    out = Path(tempfile.mkdtemp(prefix="bielik-dpo-", dir=work))
    cfg = DPOConfig(
        model=str(model_dir),
        data=[str(work / "pairs.jsonl")],
        output=str(out),
        beta=BETA,
        lam=0.0,
        seq_len=args.seq_len,
        val_fraction=0.0,
        train={
            "steps": args.warmup + args.steps,
            "micro_batch_size": args.batch,
            "precision": args.precision,
            "lm_head_chunk": args.chunk,
            "eval": {"every": 0, "at_start": False},
            "logging": {"every": 10_000},
            "checkpoint": {"every": 0, "save_final": False},
            "optim": {"lr": LR, "min_lr": MIN_LR, "warmup_steps": 2, "weight_decay": 0.0},
        },
    )
    tok = ensure_chat_template(load_hf_tokenizer(model_dir))
    train, _, stats = build_pairs(tok, cfg)
    e = cfg.train
    src = PairBatches(
        train, e.micro_batch_size, e.grad_accum, tok.pad_token_id, cfg.seq_len, cfg.share_prompt, cfg.pack, seed=e.seed
    )
    eng = Engine(
        e,
        load_hf_model(model_dir),
        DPOPositive(load_hf_model(model_dir), BETA, 0.0, chunk=e.lm_head_chunk),
        src,
        out,
        Dist(),
        seq_len=cfg.seq_len,
    )
    eng.precompute(src.iter_dataset())
    prep_rss = reset_peak_rss()
    recs, times = [], []
    for _ in range(args.warmup + args.steps):
        recs.append(eng.train_step())
        times.append(time.perf_counter())
    dt = times[-1] - times[args.warmup - 1]
    timed = recs[args.warmup :]
    return {
        "pairs_per_s": sum(r["units"] for r in timed) / dt,
        "tokens_per_step": statistics.mean(r["real_tokens"] for r in timed),
        "loss": [round(r["loss"], 4) for r in recs],
        "n_pairs": stats["train_pairs"],
        "train_rss_mib": peak_rss_mib(),
        "process_rss_mib": max(prep_rss, peak_rss_mib()),
    }


def measure_trl(work: Path, args) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from bielik.model.loading import load_hf_model
    from bielik.tokenizer.chat import ensure_chat_template
    from bielik.tokenizer.formats import load_hf_tokenizer

    model_dir = work / "init"
    with open(work / "pairs.jsonl", encoding="utf-8") as fh:  # by line, not splitlines(): U+2028 in text
        rows = [json.loads(x) for x in fh if x.strip()]
    ds = Dataset.from_list(
        [
            {
                "prompt": r["messages"],
                "chosen": [{"role": "assistant", "content": r["chosen"]}],
                "rejected": [{"role": "assistant", "content": r["rejected"]}],
            }
            for r in rows
        ]
    )
    tok = ensure_chat_template(load_hf_tokenizer(model_dir))
    targs = DPOConfig(
        output_dir=str(work / "out-trl"),
        max_steps=args.warmup + args.steps,
        per_device_train_batch_size=args.batch,
        learning_rate=LR,
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr": MIN_LR},
        warmup_steps=2,
        weight_decay=0.0,
        adam_beta2=0.95,
        max_grad_norm=1.0,
        optim="adamw_torch_fused",
        use_cpu=True,
        bf16=args.precision != "fp32",
        gradient_checkpointing=False,
        beta=BETA,
        loss_type=["sigmoid"],
        max_length=None,
        precompute_ref_log_probs=True,
        precompute_ref_batch_size=args.batch,
        report_to=[],
        save_strategy="no",
        logging_strategy="steps",
        logging_steps=1,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    marks: list[tuple[float, int]] = []
    losses: list[float] = []

    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **kw):
            Clock.prep_rss = reset_peak_rss()

        def on_step_end(self, a, state, control, **kw):
            marks.append((time.perf_counter(), trainer._total_train_tokens))

        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(round(float(logs["loss"]), 4))

    trainer = DPOTrainer(
        model=load_hf_model(model_dir),
        ref_model=load_hf_model(model_dir),
        args=targs,
        train_dataset=ds,
        processing_class=tok,
        callbacks=[Clock()],
    )
    trainer.train()
    (t0, n0), (t1, n1) = marks[args.warmup - 1], marks[-1]
    return {
        "pairs_per_s": args.batch * args.steps / (t1 - t0),
        "tokens_per_step": (n1 - n0) / args.steps,
        "loss": losses,
        "n_pairs": len(ds),
        "train_rss_mib": peak_rss_mib(),
        "process_rss_mib": max(Clock.prep_rss, peak_rss_mib()),
    }


def measure(side: str, args) -> dict:

    set_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    res = measure_bielik(Path(args.work), args) if side == "bielik" else measure_trl(Path(args.work), args)
    return {"side": side, "precision": args.precision, **res}


# --- driver -------------------------------------------------------------------------------------
def run(side: str, precision: str, args) -> dict:
    argv = [
        "--measure",
        side,
        "--precision-one",
        precision,
        "--work",
        str(args.work),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--batch",
        str(args.batch),
        "--seq-len",
        str(args.seq_len),
        "--chunk",
        str(args.chunk),
    ]
    return run_child(__file__, argv, f"{side} {precision}")


def report(results: dict[str, dict[str, list[dict]]], args) -> None:
    print(
        f"\nsettings: tiny-llama (h 256, 4 layers, vocab {args.vocab}), "
        f"{results[next(iter(results))]['bielik'][0]['n_pairs']} shipped pairs of ≤ {args.seq_len} tokens, "
        f"batch {args.batch} pairs, β {BETA}, reference log-probs precomputed on both sides, "
        f"{args.warmup} warm-up + {args.steps} timed steps, {os.environ.get('OMP_NUM_THREADS', '2')} threads, "
        f"median over {args.pairs} interleaved rounds\n"
    )
    print(
        "| side | precision | pairs/s | train RSS MiB | process RSS MiB | tokens/step | loss first → last "
        "| ratio bielik/TRL (median) |"
    )
    print("|---|---|---:|---:|---:|---:|---|---:|")
    for prec, by_side in results.items():
        ratio = statistics.median(
            b["pairs_per_s"] / t["pairs_per_s"] for b, t in zip(by_side["bielik"], by_side["trl"])
        )
        mem = statistics.median(
            t["train_rss_mib"] / b["train_rss_mib"] for b, t in zip(by_side["bielik"], by_side["trl"])
        )
        for side in SIDES:
            runs = by_side[side]
            print(
                f"| {side} | {prec} | {statistics.median(r['pairs_per_s'] for r in runs):.2f} | "
                f"{max(r['train_rss_mib'] for r in runs):,.0f} | {max(r['process_rss_mib'] for r in runs):,.0f} | "
                f"{statistics.mean(r['tokens_per_step'] for r in runs):,.0f} | "
                f"{runs[0]['loss'][0]:.4f} → {runs[0]['loss'][-1]:.4f} | "
                f"{'—' if side == 'bielik' else f'**{ratio:.2f}**'} |"
            )
        print(f"| TRL / bielik train RSS | {prec} | | {mem:.2f} | | | | |")
    print("\ntarget: bielik >= 1.5x TRL pairs/s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=3, help="interleaved rounds per precision")
    p.add_argument("--steps", type=int, default=12, help="timed optimizer steps per run")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per run")
    p.add_argument("--batch", type=int, default=8, help="global batch in preference pairs")
    p.add_argument("--seq-len", type=int, default=1024, help="bielik's row length; pairs longer than this are not used")
    p.add_argument("--chunk", type=int, default=2048, help="bielik lm_head_chunk")
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--n-pairs", type=int, default=400, help="seeded sample of the shipped pairs")
    p.add_argument("--precision", default="fp32", help="comma-separated: fp32, bf16-autocast")
    p.add_argument("--work", type=Path, default=None, help="work dir (tokenizer, model and pairs are reused)")
    p.add_argument("--json", type=Path, default=None, help="also write every run's record here")
    p.add_argument("--measure", choices=SIDES, help=argparse.SUPPRESS)
    p.add_argument("--precision-one", default="fp32", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        args.precision = args.precision_one
        print(json.dumps(measure(args.measure, args)))
        return
    args.work = args.work or Path(tempfile.mkdtemp(prefix="bielik-dpo-bench-"))
    args.work.mkdir(parents=True, exist_ok=True)
    prepare(args.work, args.vocab, args.n_pairs, args.seq_len)
    results: dict[str, dict[str, list[dict]]] = {}
    for prec in args.precision.split(","):
        results[prec] = {s: [] for s in SIDES}
        for i in range(args.pairs):
            for side in SIDES:
                r = run(side, prec, args)
                results[prec][side].append(r)
                print(
                    f"{prec} round {i + 1}: {side:6s} {r['pairs_per_s']:6.2f} pairs/s  "
                    f"train RSS {r['train_rss_mib']:6,.0f} MiB  "
                    f"tokens/step {r['tokens_per_step']:7,.0f}  loss {r['loss'][0]:.4f} → {r['loss'][-1]:.4f}",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    report(results, args)


if __name__ == "__main__":
    from bielik.runtime import configure_process

    configure_process()  # logging (the entry point's job, not an import's)
    main()
