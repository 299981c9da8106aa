"""GRPO throughput on CPU: ``bielik train grpo`` against TRL's ``GRPOTrainer``, completions per second.

Both sides get the same tiny model (tiny-llama preset, the same initial weights, a bielik tokenizer of
``--vocab`` tokens), the same questions (a seeded sample of the shipped math tasks, rendered with the
same ChatML template), G = ``--group`` completions per question, ``--prompts`` questions per step,
``--new-tokens`` sampled tokens per completion (the untrained model practically never stops early,
so every completion has that length on both sides: the mean lengths are reported), temperature 1,
the same reward function (the share of the letter "e" in the completion: the untrained model never
answers right, and a reward that varies within a group keeps the backward non-trivial), β = 0.04 (a frozen
reference on both sides), clip ε = 0.2, the paper's per-sequence loss (TRL ``loss_type="grpo"``),
one optimizer step per rollout (μ = 1: TRL ``steps_per_generation=1, num_iterations=1``), fused AdamW
at a constant LR. bielik runs its stage's pieces (``RolloutMaker`` with the shared KV-cache sampler,
``RolloutSource``, the ``GRPO`` objective on shared-prompt rows, the engine); TRL samples with
transformers' ``generate`` (no vLLM on CPU), ``use_cpu=True``, ``gradient_checkpointing=False``; its
reference is reloaded from the model directory (NOTES.md).

Metric: completions per second over the timed steps (after ``--warmup`` untimed ones); a step is
sampling + rewards + reference and policy forwards + backward + optimizer. Each run is a fresh
subprocess; runs are interleaved (bielik, trl, bielik, ...) and the ratio is the median of the
per-round ratios, because this machine's speed drifts.

    flock /tmp/bielik-heavy.lock env OMP_NUM_THREADS=2 .venv/bin/python benchmarks/grpo_throughput.py \\
        [--pairs 3] [--steps 4] [--warmup 1] [--group 8] [--prompts 4] [--new-tokens 64] [--work DIR]
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

from _child import run_child  # noqa: E402

from bielik.runtime import set_threads  # noqa: E402

SIDES = ("bielik", "trl")
LR, BETA, EPS = 1e-5, 0.04, 0.2


def prepare(work: Path, vocab: int, n_tasks: int, seed: int = 0) -> None:
    from bielik.data.preferences import read_math_tasks
    from bielik.model.factory import ModelInitConfig, init_model
    from bielik.tokenizer.train import TokenizerTrainConfig, train_tokenizer

    if not (work / "init" / "config.json").is_file():
        train_tokenizer(TokenizerTrainConfig(output=str(work / "tok"), vocab_size=vocab, max_chars=3_000_000))
        init_model(ModelInitConfig(preset="tiny-llama", tokenizer=str(work / "tok"), output=str(work / "init")))
    if not (work / "tasks.jsonl").is_file():
        tasks = list(read_math_tasks(["shipped"]))
        random.Random(seed).shuffle(tasks)
        with open(work / "tasks.jsonl", "w", encoding="utf-8") as f:
            for t in tasks[:n_tasks]:
                f.write(json.dumps({"question": t.question, "answer": t.answer}, ensure_ascii=False) + "\n")


def _letter_e(text: str) -> float:
    """The benchmark's reward: the share of 'e' in the completion (the untrained model never answers right, and a
    reward that varies within a group keeps the advantages, and so the backward, non-trivial on both sides)."""
    return text.count("e") / max(1, len(text))


def measure_bielik(work: Path, args) -> dict:
    from bielik.model.generation import SamplingParams, end_of_turn_ids
    from bielik.model.loading import load_hf_model
    from bielik.tokenizer.chat import ensure_chat_template
    from bielik.tokenizer.formats import load_hf_tokenizer
    from bielik.train.distributed import Dist
    from bielik.train.engine import Engine
    from bielik.train.grpo import GRPOConfig, RolloutMaker, build_prompts
    from bielik.train.objectives.grpo import GRPO
    from bielik.train.rewards import REWARDS, reward
    from bielik.train.rollout import RolloutSource

    if "bench_letter_e" not in REWARDS:
        reward("bench_letter_e")(lambda s: _letter_e(s.text))

    model_dir = work / "init"
    cfg = GRPOConfig(
        model=str(model_dir),
        data=[str(work / "tasks.jsonl")],
        output=tempfile.mkdtemp(prefix="bielik-grpo-", dir=work),
        group_size=args.group,
        prompts_per_rollout=args.prompts,
        max_new_tokens=args.new_tokens,
        beta=BETA,
        clip_eps=EPS,
        rewards={"bench_letter_e": 1.0},
        val_fraction=0.0,
        eval_tasks=0,
        train={
            "steps": args.warmup + args.steps,
            "micro_batch_size": args.prompts,
            "precision": args.precision,
            "lm_head_chunk": 2048,
            "logging": {"every": 10_000},
            "checkpoint": {"every": 0, "save_final": False},
            "optim": {"lr": LR, "min_lr": LR, "warmup_steps": 0, "weight_decay": 0.0},
        },
    )
    tok = ensure_chat_template(load_hf_tokenizer(model_dir))
    train, _, _ = build_prompts(tok, cfg)
    e = cfg.train
    params = SamplingParams(
        max_new_tokens=cfg.max_new_tokens, temperature=1.0, stop_token_ids=frozenset(end_of_turn_ids(tok))
    )
    maker = RolloutMaker(tok, cfg.rewards, params, cfg.group_size, e.micro_batch_size, tok.pad_token_id)
    src = RolloutSource(train, maker, cfg.prompts_per_rollout, 1, seed=0)
    eng = Engine(
        e,
        load_hf_model(model_dir),
        GRPO(load_hf_model(model_dir), BETA, EPS, chunk=2048),
        src,
        cfg.output,
        Dist(),
        seq_len=max(len(p.ids) for p in train) + cfg.max_new_tokens,
    )
    src.bind_policy(eng.policy_call)
    recs, times = [], []
    for _ in range(args.warmup + args.steps):
        recs.append(eng.train_step())
        times.append(time.perf_counter())
    timed = recs[args.warmup :]
    dt = times[-1] - times[args.warmup - 1]
    return {
        "completions_per_s": args.group * args.prompts * args.steps / dt,
        "completion_length": statistics.mean(r["completion_length"] for r in timed),
    }


def measure_trl(work: Path, args) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from bielik.tokenizer.chat import ensure_chat_template
    from bielik.tokenizer.formats import load_hf_tokenizer

    model_dir = work / "init"
    with open(work / "tasks.jsonl", encoding="utf-8") as fh:  # by line, not splitlines(): U+2028 in text
        rows = [json.loads(x) for x in fh if x.strip()]
    ds = Dataset.from_list(
        [{"prompt": [{"role": "user", "content": r["question"]}], "answer": r["answer"]} for r in rows]
    )
    tok = ensure_chat_template(load_hf_tokenizer(model_dir))
    lengths: list[float] = []

    def letter_e(completions, **kw):
        return [_letter_e(c[-1]["content"] if isinstance(c, list) else c) for c in completions]

    targs = GRPOConfig(
        output_dir=str(work / "out-trl"),
        max_steps=args.warmup + args.steps,
        per_device_train_batch_size=args.group * args.prompts,
        gradient_accumulation_steps=1,
        steps_per_generation=1,
        num_iterations=1,
        num_generations=args.group,
        max_completion_length=args.new_tokens,
        temperature=1.0,
        beta=BETA,
        epsilon=EPS,
        loss_type="grpo",
        learning_rate=LR,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        adam_beta2=0.95,
        max_grad_norm=1.0,
        optim="adamw_torch_fused",
        use_cpu=True,
        bf16=args.precision != "fp32",
        gradient_checkpointing=False,
        report_to=[],
        save_strategy="no",
        logging_strategy="steps",
        logging_steps=1,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    marks: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            marks.append(time.perf_counter())

        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs:
                lengths.append(float(logs["completions/mean_length"]))

    trainer = GRPOTrainer(
        model=str(model_dir),
        reward_funcs=[letter_e],
        args=targs,
        train_dataset=ds,
        processing_class=tok,
        callbacks=[Clock()],
    )
    trainer.train()
    n = args.group * args.prompts
    return {
        "completions_per_s": n * args.steps / (marks[-1] - marks[args.warmup - 1]),
        "completion_length": statistics.mean(lengths[args.warmup :]) if lengths else float("nan"),
    }


def measure(side: str, args) -> dict:

    set_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    res = measure_bielik(Path(args.work), args) if side == "bielik" else measure_trl(Path(args.work), args)
    return {"side": side, "precision": args.precision, **res}


def run(side: str, args) -> dict:
    argv = [
        "--measure",
        side,
        "--work",
        str(args.work),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--group",
        str(args.group),
        "--prompts",
        str(args.prompts),
        "--new-tokens",
        str(args.new_tokens),
        "--precision",
        args.precision,
    ]
    return run_child(__file__, argv, side)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=3, help="interleaved rounds")
    p.add_argument("--steps", type=int, default=4, help="timed optimizer steps (= rollouts) per run")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--group", type=int, default=8, help="G: completions per question")
    p.add_argument("--prompts", type=int, default=4, help="questions per step")
    p.add_argument("--new-tokens", type=int, default=64, help="tokens sampled per completion")
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--work", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--measure", choices=SIDES, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args)))
        return
    args.work = args.work or Path(tempfile.mkdtemp(prefix="bielik-grpo-bench-"))
    args.work.mkdir(parents=True, exist_ok=True)
    prepare(args.work, args.vocab, 200)
    results = {s: [] for s in SIDES}
    for i in range(args.pairs):
        for side in SIDES:
            r = run(side, args)
            results[side].append(r)
            print(
                f"round {i + 1}: {side:6s} {r['completions_per_s']:6.2f} completions/s  "
                f"mean completion length {r['completion_length']:.1f}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    ratio = statistics.median(
        b["completions_per_s"] / t["completions_per_s"] for b, t in zip(results["bielik"], results["trl"])
    )
    print(
        f"\nsettings: tiny-llama (h 256, 4 layers, vocab {args.vocab}), G {args.group}, "
        f"{args.prompts} questions per step, {args.new_tokens} new tokens, β {BETA}, μ 1, "
        f"{args.warmup} warm-up + {args.steps} timed steps, {args.precision}, "
        f"{os.environ.get('OMP_NUM_THREADS', '2')} threads, median over {args.pairs} interleaved rounds\n"
    )
    print("| side | completions/s | mean completion length | ratio bielik/TRL (median) |")
    print("|---|---:|---:|---:|")
    for side in SIDES:
        runs = results[side]
        print(
            f"| {side} | {statistics.median(r['completions_per_s'] for r in runs):.2f} | "
            f"{statistics.mean(r['completion_length'] for r in runs):.1f} | "
            f"{'—' if side == 'bielik' else f'**{ratio:.2f}**'} |"
        )
    print("\ntarget: bielik >= 2x TRL completions/s")


if __name__ == "__main__":
    from bielik.runtime import configure_process

    configure_process()  # logging (the entry point's job, not an import's)
    main()
