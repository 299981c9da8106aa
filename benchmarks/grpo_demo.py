"""GRPO with verifiable rewards on a CPU: a tiny Llama SFT'd on synthetic arithmetic, then GRPO, three seeds.

The task: "Ile to jest 7 + 8 - 6?" / "What is 3 + 5 + 9?" (a + b ± c with one-digit operands,
1,550 expressions, in Polish and English wordings); the reference solution works it out in two steps
and ends with "Odpowiedź: 9" or "The answer is 17.". The held-out questions use ``--eval``
expressions that no SFT dialogue and no GRPO task contains. Steps (all through bielik's own stages, the Python API):

1. a 2,048-token bielik tokenizer trained on the shipped corpus; a ``tiny-llama`` (h 256, 4 layers,
   ≈3.7M parameters) initialised from it;
2. ``train.sft`` on ``--sft-dialogues`` synthetic dialogues for ``--sft-steps`` steps (deliberately
   short: the model learns the format and part of the arithmetic);
3. ``train.grpo`` from that SFT model for each seed: G = 8 completions per question, 16 questions
   per rollout, μ = 1, rewards ``accuracy`` (1.0) + ``format`` (0.1), β = 0.04 (k3 KL), on
   ``--tasks`` training questions; before and after, ``--eval`` held-out questions are answered
   greedily (``initial_*`` / ``final_*`` in the stage's ``metrics.json``).

Output: per seed the held-out accuracy and reward before → after, their mean over seeds, and the
training reward curve (mean sampled reward per block of steps), also written to ``<out>/summary.json``.

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

TEMPLATES = {
    "pl": ["Ile to jest {e}?", "Oblicz: {e}.", "Policz, ile wynosi {e}.", "Podaj wynik działania {e}."],
    "en": ["What is {e}?", "Compute {e}.", "Work out {e}.", "What does {e} equal?"],
}


def expressions(top: int) -> list[tuple[int, int, str, int]]:
    """Every a + b ± c with operands 0..top whose value is not negative."""
    r = range(top + 1)
    return [(a, b, op, c) for a in r for b in r for op in "+-" for c in r if op == "+" or c <= a + b]


def make_task(expr: tuple[int, int, str, int], rng: random.Random) -> dict:
    """A question about ``expr`` in a random language and wording; the reference solves it in two steps."""
    a, b, op, c = expr
    lang = rng.choice(["pl", "en"])
    x = a + b
    y = x + c if op == "+" else x - c
    text = f"{a} + {b} {op} {c}"
    solution = f"{a} + {b} = {x}, {x} {op} {c} = {y}. " + (f"Odpowiedź: {y}" if lang == "pl" else f"The answer is {y}.")
    return {"question": rng.choice(TEMPLATES[lang]).format(e=text), "answer": str(y), "solution": solution, "lang": lang}


def write_data(work: Path, n_sft: int, n_tasks: int, n_eval: int, top: int, seed: int = 0) -> None:
    """SFT dialogues and GRPO tasks on one set of expressions; two held-out sets of ``n_eval`` questions:
    ``heldout`` on other expressions (composition of learnt steps), ``fresh`` new questions on the training
    expressions (no question text of the SFT or GRPO data)."""
    rng = random.Random(seed)
    exprs = expressions(top)
    rng.shuffle(exprs)
    held, pool = exprs[:n_eval], exprs[n_eval:]
    sft = [make_task(rng.choice(pool), rng) for _ in range(n_sft)]
    tasks = [make_task(rng.choice(pool), rng) for _ in range(n_tasks)]
    heldout = [make_task(e, rng) for e in held]
    seen = {t["question"] for t in sft + tasks}
    fresh: list[dict] = []
    while len(fresh) < n_eval:
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
                f.write(json.dumps({"id": f"{name[:4]}-{i}", "question": t["question"], "answer": t["answer"], "lang": t["lang"]},
                                   ensure_ascii=False) + "\n")


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
        write_data(work, args.sft_dialogues, args.tasks, args.eval, args.top)
    if not (work / "sft" / "final" / "config.json").is_file():
        t = time.perf_counter()
        sft(SFTConfig(model=str(work / "init"), data=[str(work / "sft.jsonl")], output=str(work / "sft"), seq_len=256, val_fraction=0.02,
                      train={"steps": args.sft_steps, "micro_batch_size": 16, "lm_head_chunk": 1024, "logging": {"every": 50},
                             "eval": {"every": 0, "batches": 4}, "checkpoint": {"every": 0},
                             "optim": {"lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 20, "alr": {"enabled": False}}}))
        print(f"SFT: {args.sft_steps} steps in {time.perf_counter() - t:.0f} s", flush=True)
    return work / "sft" / "final"


def greedy_eval(model_dir: Path, tasks: Path) -> dict[str, float]:
    """Greedy answers of the model in ``model_dir`` to the questions of ``tasks``: accuracy, reward (accuracy + 0.1·format)."""
    import torch

    from bielik.model.generation import SamplingParams, end_of_turn_ids
    from bielik.model.loading import load_hf_model
    from bielik.tokenizer.chat import ensure_chat_template
    from bielik.tokenizer.formats import load_hf_tokenizer
    from bielik.train.grpo import GRPOConfig, RolloutMaker, build_prompts, evaluate_prompts

    tok = ensure_chat_template(load_hf_tokenizer(model_dir))
    _, prompts, _ = build_prompts(tok, GRPOConfig(model=str(model_dir), data=[str(tasks)], eval_data=[str(tasks)], prompts_per_rollout=1,
                                                   eval_tasks=10_000))
    model = load_hf_model(model_dir).eval()
    params = SamplingParams(max_new_tokens=32, stop_token_ids=frozenset(end_of_turn_ids(tok)))
    maker = RolloutMaker(tok, {"accuracy": 1.0, "format": 0.1}, params, 1, 1, tok.pad_token_id)
    with torch.no_grad():
        return evaluate_prompts(lambda fn: fn(model), prompts, maker, params)


def run_grpo(work: Path, model: Path, seed: int, args) -> dict:
    from bielik.train.grpo import GRPOConfig, grpo

    out = work / f"grpo-seed{seed}"
    t = time.perf_counter()
    summary = grpo(GRPOConfig(
        model=str(model), data=[str(work / "tasks.jsonl")], eval_data=[str(work / "heldout.jsonl")], output=str(out),
        group_size=8, prompts_per_rollout=args.prompts, reuse=1, max_new_tokens=32, temperature=1.0, beta=args.beta, seed=seed,
        rewards={"accuracy": 1.0, "format": 0.1}, eval_tasks=args.eval,
        train={"steps": args.grpo_steps, "micro_batch_size": 8, "lm_head_chunk": 1024, "seed": seed, "logging": {"every": 1},
               "checkpoint": {"every": 0}, "optim": {"lr": args.lr, "min_lr": args.lr, "warmup_steps": 0}},
    ))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    curve = [r["reward"] for r in rows if r["kind"] == "train"]
    acc = [r["reward_accuracy"] for r in rows if r["kind"] == "train"]
    fresh = greedy_eval(out / "final", work / "fresh.jsonl")
    return {"seed": seed, "seconds": time.perf_counter() - t, "curve": curve, "train_accuracy": acc,
            "final_fresh_accuracy": fresh["accuracy"], "final_fresh_reward": fresh["reward"],
            **{k: summary[k] for k in summary if k.startswith(("initial_", "final_"))}}


def report(runs: list[dict], block: int, fresh0: dict) -> dict:
    print("\n| seed | held-out expressions: accuracy | reward | fresh questions: accuracy | reward | sampled reward, first → last block | s |")
    print("|---:|---|---|---|---|---|---:|")
    for r in runs:
        c = r["curve"]
        print(f"| {r['seed']} | {r['initial_accuracy']:.3f} → {r['final_accuracy']:.3f} | {r['initial_reward']:.3f} → {r['final_reward']:.3f} | "
              f"{fresh0['accuracy']:.3f} → {r['final_fresh_accuracy']:.3f} | {fresh0['reward']:.3f} → {r['final_fresh_reward']:.3f} | "
              f"{statistics.mean(c[:block]):.3f} → {statistics.mean(c[-block:]):.3f} | {r['seconds']:.0f} |")
    keys = ("initial_accuracy", "final_accuracy", "initial_reward", "final_reward", "final_fresh_accuracy", "final_fresh_reward")
    mean = {k: statistics.mean(r[k] for r in runs) for k in keys}
    sd = {k: statistics.pstdev(r[k] for r in runs) for k in keys}
    print(f"| mean (sd) | {mean['initial_accuracy']:.3f} → {mean['final_accuracy']:.3f} ({sd['final_accuracy']:.3f}) | "
          f"{mean['initial_reward']:.3f} → {mean['final_reward']:.3f} ({sd['final_reward']:.3f}) | "
          f"{fresh0['accuracy']:.3f} → {mean['final_fresh_accuracy']:.3f} ({sd['final_fresh_accuracy']:.3f}) | "
          f"{fresh0['reward']:.3f} → {mean['final_fresh_reward']:.3f} ({sd['final_fresh_reward']:.3f}) | | |")
    n = len(runs[0]["curve"])
    print(f"\nreward curve (mean sampled reward per block of {block} steps, mean over seeds):")
    blocks = []
    for s in range(0, n, block):
        blocks.append(statistics.mean(statistics.mean(r["curve"][s : s + block]) for r in runs))
        print(f"  steps {s + 1:3d}-{min(n, s + block):3d}: {blocks[-1]:.3f}  " + "#" * int(40 * blocks[-1] / 1.1))
    return {"mean": mean, "sd": sd, "fresh_before": fresh0, "curve_blocks": blocks}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/grpo-demo"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--top", type=int, default=5, help="operands are 0..top")
    p.add_argument("--sft-dialogues", type=int, default=4000)
    p.add_argument("--sft-steps", type=int, default=150)
    p.add_argument("--tasks", type=int, default=2000)
    p.add_argument("--eval", type=int, default=80, help="held-out expressions (questions)")
    p.add_argument("--grpo-steps", type=int, default=60)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--beta", type=float, default=0.04)
    p.add_argument("--prompts", type=int, default=16, help="questions per rollout")
    p.add_argument("--block", type=int, default=10)
    args = p.parse_args()
    import torch

    from bielik.log import setup_logging

    setup_logging()
    torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "2")))
    model = prepare(args.out, args)
    fresh0 = greedy_eval(model, args.out / "fresh.jsonl")
    runs = [run_grpo(args.out, model, s, args) for s in args.seeds]
    summary = report(runs, args.block, fresh0)
    (args.out / "summary.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs, **summary}, indent=1))


if __name__ == "__main__":
    main()
