"""GRPO with verifiable rewards on a CPU: a tiny Llama SFT'd on synthetic arithmetic, then GRPO, three seeds.

The task: "Ile to jest 3 + 4 - 5?" / "What is 2 + 5 + 1?" (a + b ± c with operands 0..5, never
negative: 397 expressions, four Polish and four English wordings). A solution works it out in two
steps and states the result: "3 + 4 = 7, 7 - 5 = 2. Odpowiedź: 2" / "... The answer is 8.". The
SFT data carries a *systematic flaw*, as real SFT data carries its writers' habits: in ``--flaw``
(30%) of the solutions the final line states the intermediate value instead of the result. The SFT
model inherits it (and makes arithmetic slips of its own); the ``accuracy`` reward penalises both,
and GRPO has to find that out from sampled completions only.

Steps (all through bielik's own stages, the Python API):

1. a 2,048-token bielik tokenizer trained on the shipped corpus; ``tiny-llama`` (h 256, 4 layers,
   4.2M parameters with that vocabulary) initialised from it;
2. ``train.sft`` on 4,000 dialogues for 300 steps;
3. ``train.grpo`` from that SFT model for each seed: G = 8 completions per question, 16 questions
   per rollout, μ = 1, temperature 1, rewards ``accuracy`` (1.0) + ``format`` (0.1), β = 0.1 (k3
   KL), lr 1e-4 constant, 80 steps, on 2,000 training questions.

Evaluation on 200 held-out questions (new questions on the training expressions: their text is in
no SFT dialogue or GRPO task): greedy accuracy and reward before and after (the stage's own
``initial_*`` / ``final_*``) and the accuracy of 4 samples per question at temperature 1 (what the
training reward measures); and greedy accuracy on 80 *unseen expressions* (in no training data at
all: composition of learnt steps). Output: per seed before → after, the mean over seeds, and the
training reward curve (mean sampled reward per block of steps), also in ``<out>/summary.json``.

    flock /tmp/bielik-heavy.lock env OMP_NUM_THREADS=2 .venv/bin/python benchmarks/grpo_demo.py --out runs/grpo-demo
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bielik.runtime import set_threads  # noqa: E402

TEMPLATES = {
    "pl": ["Ile to jest {e}?", "Oblicz: {e}.", "Policz, ile wynosi {e}.", "Podaj wynik działania {e}."],
    "en": ["What is {e}?", "Compute {e}.", "Work out {e}.", "What does {e} equal?"],
}


def expressions(top: int) -> list[tuple[int, int, str, int]]:
    """Every a + b ± c with operands 0..top whose value is not negative."""
    r = range(top + 1)
    return [(a, b, op, c) for a in r for b in r for op in "+-" for c in r if op == "+" or c <= a + b]


def make_task(expr: tuple[int, int, str, int], rng: random.Random, flaw: float = 0.0) -> dict:
    """A question about ``expr`` in a random language and wording; the solution works it out in two steps and
    states the result — or, with probability ``flaw``, the intermediate value (the SFT data's systematic error)."""
    a, b, op, c = expr
    lang = rng.choice(["pl", "en"])
    x = a + b
    y = x + c if op == "+" else x - c
    text = f"{a} + {b} {op} {c}"
    said = x if rng.random() < flaw else y
    solution = f"{a} + {b} = {x}, {x} {op} {c} = {y}. " + (
        f"Odpowiedź: {said}" if lang == "pl" else f"The answer is {said}."
    )
    return {
        "question": rng.choice(TEMPLATES[lang]).format(e=text),
        "answer": str(y),
        "solution": solution,
        "lang": lang,
    }


def write_data(
    work: Path, n_sft: int, n_tasks: int, n_eval: int, n_fresh: int, top: int, flaw: float, seed: int = 0
) -> None:
    """SFT dialogues and GRPO tasks on one set of expressions; ``heldout``: one question on each of ``n_eval``
    other expressions; ``fresh``: ``n_fresh`` new questions on the training expressions (no question text
    of the SFT or GRPO data)."""
    rng = random.Random(seed)
    exprs = expressions(top)
    rng.shuffle(exprs)
    held, pool = exprs[:n_eval], exprs[n_eval:]
    sft = [make_task(rng.choice(pool), rng, flaw) for _ in range(n_sft)]
    tasks = [make_task(rng.choice(pool), rng) for _ in range(n_tasks)]
    heldout = [make_task(e, rng) for e in held]
    seen = {t["question"] for t in sft + tasks}
    fresh: list[dict] = []
    while len(fresh) < n_fresh:
        t = make_task(rng.choice(pool), rng)
        if t["question"] not in seen:
            seen.add(t["question"])
            fresh.append(t)
    with open(work / "sft.jsonl", "w", encoding="utf-8") as f:
        for i, t in enumerate(sft):
            msgs = [{"role": "user", "content": t["question"]}, {"role": "assistant", "content": t["solution"]}]
            f.write(json.dumps({"id": f"sft-{i}", "messages": msgs, "quality": "high"}, ensure_ascii=False) + "\n")
    for name, part in (("tasks.jsonl", tasks), ("heldout.jsonl", heldout), ("fresh.jsonl", fresh)):
        with open(work / name, "w", encoding="utf-8") as f:
            for i, t in enumerate(part):
                f.write(
                    json.dumps(
                        {"id": f"{name[:4]}-{i}", "question": t["question"], "answer": t["answer"], "lang": t["lang"]},
                        ensure_ascii=False,
                    )
                    + "\n"
                )


def prepare(work: Path, args) -> Path:
    """Tokenizer, initial model, data and the SFT model (reused when present)."""
    from bielik.model.factory import ModelInitConfig, init_model
    from bielik.tokenizer.train import TokenizerTrainConfig, train_tokenizer
    from bielik.train.sft import SFTConfig, sft

    work.mkdir(parents=True, exist_ok=True)
    if not (work / "init" / "config.json").is_file():
        train_tokenizer(TokenizerTrainConfig(output=str(work / "tok"), vocab_size=2048, max_chars=600_000))
        init_model(ModelInitConfig(preset="tiny-llama", tokenizer=str(work / "tok"), output=str(work / "init")))
    if not (work / "heldout.jsonl").is_file():
        write_data(work, args.sft_dialogues, args.tasks, args.eval, args.fresh, args.top, args.flaw)
    if not (work / "sft" / "final" / "config.json").is_file():
        t = time.perf_counter()
        sft(
            SFTConfig(
                model=str(work / "init"),
                data=[str(work / "sft.jsonl")],
                output=str(work / "sft"),
                seq_len=256,
                val_fraction=0.02,
                train={
                    "steps": args.sft_steps,
                    "micro_batch_size": 16,
                    "lm_head_chunk": 1024,
                    "logging": {"every": 50},
                    "eval": {"every": 0, "batches": 4},
                    "checkpoint": {"every": 0},
                    "optim": {"lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 20, "alr": {"enabled": False}},
                },
            )
        )
        print(f"SFT: {args.sft_steps} steps in {time.perf_counter() - t:.0f} s", flush=True)
    return work / "sft" / "final"


def evaluate(model_dir: Path, tasks: Path, samples: int = 0) -> dict[str, float]:
    """Answers of the model in ``model_dir`` to the questions of ``tasks``: greedy (accuracy, reward = accuracy
    + 0.1·format), and with ``samples`` > 0 also the mean over that many samples per question at temperature 1
    (``sampled_accuracy``: what GRPO's training reward measures)."""
    import dataclasses

    import torch

    from bielik.model.generation import SamplingParams, end_of_turn_ids
    from bielik.model.loading import load_hf_model
    from bielik.tokenizer.chat import ensure_chat_template
    from bielik.tokenizer.formats import load_hf_tokenizer
    from bielik.train.grpo import (
        GRPOConfig,
        RolloutMaker,
        build_prompts,
        evaluate_prompts,
    )

    tok = ensure_chat_template(load_hf_tokenizer(model_dir))
    _, prompts, _ = build_prompts(
        tok,
        GRPOConfig(
            model=str(model_dir), data=[str(tasks)], eval_data=[str(tasks)], prompts_per_rollout=1, eval_tasks=10_000
        ),
    )
    model = load_hf_model(model_dir).eval()
    params = SamplingParams(max_new_tokens=32, stop_token_ids=frozenset(end_of_turn_ids(tok)))
    maker = RolloutMaker(
        tok,
        {"accuracy": 1.0, "format": 0.1},
        dataclasses.replace(params, temperature=1.0),
        samples or 1,
        1,
        tok.pad_token_id,
    )
    with torch.no_grad():
        out = evaluate_prompts(lambda fn: fn(model), prompts, maker, params)
        if samples:
            g = torch.Generator().manual_seed(1234)
            comps = maker.sample(lambda fn: fn(model), [p.ids.tolist() for p in prompts for _ in range(samples)], g)
            out["sampled_accuracy"] = float(maker.score(prompts, comps)["reward_accuracy"].mean())
    return out


def run_grpo(work: Path, model: Path, seed: int, args) -> dict:
    from bielik.train.grpo import GRPOConfig, grpo

    out = work / f"grpo-seed{seed}"
    t = time.perf_counter()
    summary = grpo(
        GRPOConfig(
            model=str(model),
            data=[str(work / "tasks.jsonl")],
            eval_data=[str(work / "fresh.jsonl")],
            output=str(out),
            group_size=8,
            prompts_per_rollout=args.prompts,
            reuse=1,
            max_new_tokens=32,
            temperature=1.0,
            beta=args.beta,
            seed=seed,
            rewards={"accuracy": 1.0, "format": 0.1},
            eval_tasks=args.fresh,
            train={
                "steps": args.grpo_steps,
                "micro_batch_size": 8,
                "lm_head_chunk": 1024,
                "seed": seed,
                "logging": {"every": 1},
                "checkpoint": {"every": 0},
                "optim": {"lr": args.lr, "min_lr": args.lr, "warmup_steps": 0},
            },
        )
    )
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    curve = [r["reward"] for r in rows if r["kind"] == "train"]
    acc = [r["reward_accuracy"] for r in rows if r["kind"] == "train"]
    unseen = evaluate(out / "final", work / "heldout.jsonl")
    sampled = evaluate(out / "final", work / "fresh.jsonl", samples=4)["sampled_accuracy"]
    return {
        "seed": seed,
        "seconds": time.perf_counter() - t,
        "curve": curve,
        "train_accuracy": acc,
        "final_unseen_accuracy": unseen["accuracy"],
        "final_unseen_reward": unseen["reward"],
        "final_sampled_accuracy": sampled,
        **{k: summary[k] for k in summary if k.startswith(("initial_", "final_"))},
    }


def report(runs: list[dict], block: int, before: dict) -> dict:
    print(
        "\n| seed | held-out questions: greedy accuracy | greedy reward | sampled accuracy (T=1) "
        "| unseen expressions: greedy accuracy "
        "| training reward, first → last block | s |"
    )
    print("|---:|---|---|---|---|---|---:|")
    for r in runs:
        c = r["curve"]
        print(
            f"| {r['seed']} | {r['initial_accuracy']:.3f} → {r['final_accuracy']:.3f} | "
            f"{r['initial_reward']:.3f} → {r['final_reward']:.3f} | "
            f"{before['sampled_accuracy']:.3f} → {r['final_sampled_accuracy']:.3f} | {before['unseen_accuracy']:.3f} → "
            f"{r['final_unseen_accuracy']:.3f} | "
            f"{statistics.mean(c[:block]):.3f} → {statistics.mean(c[-block:]):.3f} | {r['seconds']:.0f} |"
        )
    keys = (
        "initial_accuracy",
        "final_accuracy",
        "initial_reward",
        "final_reward",
        "final_sampled_accuracy",
        "final_unseen_accuracy",
    )
    mean = {k: statistics.mean(r[k] for r in runs) for k in keys}
    sd = {k: statistics.pstdev(r[k] for r in runs) for k in keys}
    print(
        f"| mean (sd) | {mean['initial_accuracy']:.3f} → {mean['final_accuracy']:.3f} ({sd['final_accuracy']:.3f}) | "
        f"{mean['initial_reward']:.3f} → {mean['final_reward']:.3f} ({sd['final_reward']:.3f}) | "
        f"{before['sampled_accuracy']:.3f} → {mean['final_sampled_accuracy']:.3f} "
        f"({sd['final_sampled_accuracy']:.3f}) | "
        f"{before['unseen_accuracy']:.3f} → {mean['final_unseen_accuracy']:.3f} "
        f"({sd['final_unseen_accuracy']:.3f}) | | |"
    )
    n = len(runs[0]["curve"])
    print(f"\nreward curve (mean sampled reward per block of {block} steps, mean over seeds):")
    blocks = []
    for s in range(0, n, block):
        blocks.append(statistics.mean(statistics.mean(r["curve"][s : s + block]) for r in runs))
        print(f"  steps {s + 1:3d}-{min(n, s + block):3d}: {blocks[-1]:.3f}  " + "#" * int(40 * blocks[-1] / 1.1))
    return {"mean": mean, "sd": sd, "before": before, "curve_blocks": blocks}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/grpo-demo"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--top", type=int, default=5, help="operands are 0..top")
    p.add_argument("--flaw", type=float, default=0.3, help="share of SFT solutions that state the intermediate value")
    p.add_argument("--sft-dialogues", type=int, default=4000)
    p.add_argument("--sft-steps", type=int, default=300)
    p.add_argument("--tasks", type=int, default=2000)
    p.add_argument("--eval", type=int, default=80, help="held-out expressions")
    p.add_argument("--fresh", type=int, default=200, help="held-out questions on the training expressions")
    p.add_argument("--grpo-steps", type=int, default=80)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--prompts", type=int, default=16, help="questions per rollout")
    p.add_argument("--block", type=int, default=10)
    args = p.parse_args()

    from bielik.log import setup_logging

    setup_logging()
    set_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "2")))
    model = prepare(args.out, args)
    before = {
        "unseen_accuracy": evaluate(model, args.out / "heldout.jsonl")["accuracy"],
        "sampled_accuracy": evaluate(model, args.out / "fresh.jsonl", samples=4)["sampled_accuracy"],
    }
    runs = [run_grpo(args.out, model, s, args) for s in args.seeds]
    summary = report(runs, args.block, before)
    (args.out / "summary.json").write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs, **summary}, indent=1)
    )


if __name__ == "__main__":
    from bielik.runtime import configure_process

    configure_process()  # logging (the entry point's job, not an import's)
    main()
