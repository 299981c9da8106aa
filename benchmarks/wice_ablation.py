"""Does Weighted Instruction CE (and the adaptive LR) help when low-quality answers really are worse?

Data: real high-quality dialogues of the shipped SFT mix (every ``quality: high`` dialogue of
``shipped:pl`` and a seeded share of ``shipped:en``'s). A clean held-out set is drawn first and never
trained on. Per seed, ``--corrupt`` (40%) of the training dialogues get every assistant answer
corrupted — one of, chosen at random per dialogue: truncated to a random 30–60% of its words, its
words shuffled, or swapped for the answer of another corrupted dialogue — and are labelled
``quality: low``; the rest stay ``high``. So "low" is genuinely worse, unlike in the shipped mix.

Model: tiny-llama (h 256, 4 layers) with a ``--vocab`` bielik tokenizer, *briefly pretrained* on the
shipped corpus once (``--pretrain-steps``, cached in the work dir); every arm and seed starts from
that same checkpoint. Each arm is the real stage, :func:`bielik.train.sft.sft`, with the SFT
defaults (weights high 1.0 / low 0.5, ``normalize=tokens``, adaptive LR on with BS = 2,048 tokens)
except the switch under test, the learning rate (``--lr``: the tiny model needs more than the
default 3e-4 to move in a few hundred steps) and bf16 autocast. Arms (equal steps, same data order
per seed):

* ``wice``          — the default: WICE on, ALR on;
* ``uniform``       — ``weighting=false`` (every dialogue weight 1), ALR on;
* ``wice-noalr``    — WICE on, ``train.optim.alr.enabled=false``;
* ``wice-weights``  — WICE with ``normalize=weights`` (a weighted mean: weights only redistribute);
* ``wice-alrcal``   — ALR on with BS = the mean loss tokens per step of that seed's ``wice`` run, so
  the ALR scale averages ~1 and only its per-step variation is tested (the default BS of 2,048
  tokens against ~900 loss tokens per step here also lowers the mean LR by a third);
* ``drop-low``      — the low dialogues removed (filtering instead of weighting), ALR on.

Metric: assistant-token cross-entropy (unweighted, fp32) on the clean held-out dialogues after
training; mean ± sd over seeds and the per-seed paired difference against ``wice``. Also logged:
the mean ALR scale √(T_t/BS) actually applied. Per-arm JSON goes to ``--results``.

    flock /tmp/bielik-heavy.lock env OMP_NUM_THREADS=2 .venv/bin/python benchmarks/wice_ablation.py \\
        [--seeds 0,1,2] [--steps 120] [--arms wice,uniform,...] [--work DIR] [--results DIR] [--reuse]

Measured (2026-12-02, defaults, seeds 0-2, ~11 min; JSON in ``benchmarks/results/wice_ablation``):
held-out CE 6.400 before SFT; ``wice`` 5.4998 ± 0.0087, ``uniform`` +0.0028 worse (+0.0009/+0.0025/
+0.0048: same sign every seed, but < 0.1% of the loss), ``wice-weights`` 0.0026 better than
``wice``, ``drop-low`` 0.033 better, ``wice-noalr`` 0.046 better and ``wice-alrcal`` the same as
``wice-noalr`` (±0.001): ALR's effect here is its mean scale (0.66 with BS 2,048), not its per-step
variation. At 360 steps (~2 epochs, seeds 0-1) ``uniform`` is still 0.004 worse than ``wice``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bielik.runtime import set_threads  # noqa: E402

ARMS = {
    "wice": {},
    "uniform": {"weighting": False},
    "wice-noalr": {"alr": False},
    "wice-weights": {"normalize": "weights"},
    "wice-alrcal": {"alr_calibrated": True},
    "drop-low": {"drop_low": True},
}


# --- data -----------------------------------------------------------------------------------------
def high_dialogues(n_en: int, seed: int) -> list[dict]:
    from bielik.data.chat import read_dialogues

    pl = [d.to_record() for d in read_dialogues(["shipped:sft_pl"]) if d.quality == "high"]
    en = [d.to_record() for d in read_dialogues(["shipped:sft_en"]) if d.quality == "high"]
    random.Random(seed).shuffle(en)
    return pl + en[:n_en]


def _words_truncate(text: str, rng: random.Random) -> str:
    words = text.split()
    keep = max(1, round(len(words) * rng.uniform(0.3, 0.6)))
    return " ".join(words[:keep])


def _words_shuffle(text: str, rng: random.Random) -> str:
    words = text.split()
    for _ in range(5):  # a permutation that differs from the original, when there is one
        rng.shuffle(words)
        if " ".join(words) != " ".join(text.split()) or len(set(words)) < 2:
            break
    return " ".join(words)


def corrupt(dialogues: list[dict], share: float, seed: int) -> tuple[list[dict], dict[str, int]]:
    """Copies of ``dialogues``: a seeded ``share`` corrupted and labelled low, the rest labelled high."""
    rng = random.Random(1000 + seed)
    out = [json.loads(json.dumps(d)) for d in dialogues]
    bad = rng.sample(range(len(out)), round(share * len(out)))
    kinds = {i: rng.choice(("truncate", "shuffle", "swap")) for i in bad}
    swap_pool = [m["content"] for i in bad for m in dialogues[i]["messages"] if m["role"] == "assistant"]
    counts = {"truncate": 0, "shuffle": 0, "swap": 0}
    for d in out:
        d["quality"] = "high"
    for i in bad:
        d = out[i]
        d["quality"] = "low"
        counts[kinds[i]] += 1
        for m in d["messages"]:
            if m["role"] != "assistant":
                continue
            if kinds[i] == "truncate":
                m["content"] = _words_truncate(m["content"], rng)
            elif kinds[i] == "shuffle":
                m["content"] = _words_shuffle(m["content"], rng)
            else:
                while True:
                    other = rng.choice(swap_pool)
                    if other != m["content"] or len(set(swap_pool)) < 2:
                        break
                m["content"] = other
    return out, counts


def write_jsonl(path: Path, records: list[dict]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


# --- the pretrained base --------------------------------------------------------------------------
def prepare_base(work: Path, args) -> Path:
    from bielik.data.pack import PackConfig, pack
    from bielik.model.factory import ModelInitConfig, init_model
    from bielik.tokenizer.train import TokenizerTrainConfig, train_tokenizer
    from bielik.train.pretrain import PretrainConfig, pretrain

    base = work / "base" / "final"
    if (base / "config.json").is_file():
        return base
    tok = work / "tok"
    if not (tok / "tokenizer.json").is_file():
        train_tokenizer(TokenizerTrainConfig(output=str(tok), vocab_size=args.vocab, max_chars=3_000_000))
    if not (work / "init" / "config.json").is_file():
        init_model(ModelInitConfig(preset="tiny-llama", tokenizer=str(tok), output=str(work / "init")))
    if not (work / "corpus").is_dir():
        pack(
            PackConfig(
                tokenizer=str(tok),
                output=str(work / "corpus"),
                seq_len=args.seq_len,
                max_tokens=2_000_000,
                mix={"pl": 0.75, "en": 0.25},
            )
        )
    t = time.perf_counter()
    pretrain(
        PretrainConfig(
            model=str(work / "init"),
            data=str(work / "corpus"),
            output=str(work / "base"),
            train={
                "steps": args.pretrain_steps,
                "micro_batch_size": 16,
                "precision": "bf16-autocast",
                "optim": {"lr": 2e-3, "min_lr": 2e-4, "warmup_steps": 20},
                "eval": {"every": 0, "at_start": False},
                "logging": {"every": 50},
                "checkpoint": {"every": 0, "save_final": True},
            },
        )
    )
    print(f"pretrained the base for {args.pretrain_steps} steps in {time.perf_counter() - t:.0f} s", flush=True)
    return base


# --- one arm ---------------------------------------------------------------------------------------
def heldout_loss(model_dir: Path, heldout: Path, seq_len: int) -> tuple[float, int]:
    """Σ CE / Σ tokens over the assistant tokens of the held-out dialogues (fp32, unweighted)."""
    import torch

    from bielik.data.chat_rows import build_sft_data
    from bielik.model.loading import load_hf_model
    from bielik.tokenizer.chat import ensure_chat_template
    from bielik.tokenizer.formats import load_hf_tokenizer
    from bielik.train.batches import ChatRowBatches
    from bielik.train.objectives import CausalLM

    tok = ensure_chat_template(load_hf_tokenizer(model_dir))
    rows = build_sft_data(tok, [str(heldout)], seq_len, val_fraction=0.0, weighting=False).train
    model = load_hf_model(model_dir).eval()
    obj = CausalLM(chunk=2048)
    total, units = 0.0, 0.0
    with torch.no_grad():
        for batch in ChatRowBatches(rows, 16, 1, for_training=False).eval_batches(10**9):
            total += float(obj(model, batch).loss_sum)
            units += obj.loss_units(batch)
    return total / units, int(units)


def run_arm(arm: str, seed: int, base: Path, train_file: Path, heldout: Path, out: Path, args, bs: int = 2048) -> dict:
    from bielik.train.sft import SFTConfig, sft

    spec = ARMS[arm]
    optim = {
        "lr": args.lr,
        "min_lr": args.lr / 10,
        "warmup_steps": 10,
        "alr": {"enabled": spec.get("alr", True), "baseline_tokens": bs},
    }
    cfg = SFTConfig(
        model=str(base),
        data=[str(train_file)],
        output=str(out),
        seq_len=args.seq_len,
        val_fraction=0.0,
        seed=seed,
        weighting=spec.get("weighting", True),
        normalize=spec.get("normalize", "tokens"),
        train={
            "steps": args.steps,
            "micro_batch_size": args.batch,
            "precision": "bf16-autocast",
            "seed": seed,
            "optim": optim,
            "eval": {"every": 0, "at_start": False},
            "logging": {"every": 1},
            "checkpoint": {"every": 0, "save_final": True, "resume": "never"},
        },
    )
    shutil.rmtree(out, ignore_errors=True)  # metrics.jsonl is append-only: start clean
    t = time.perf_counter()
    summary = sft(cfg)
    train_s = time.perf_counter() - t
    loss, n = heldout_loss(out / "final", heldout, args.seq_len)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    # logging.every=1: the logged lr and lr_schedule are the same step's (with a longer window the
    # engine logs the last step's lr but the window's mean lr_schedule)
    scale = [r["lr"] / r["lr_schedule"] for r in train if r.get("lr_schedule")]
    return {
        "arm": arm,
        "seed": seed,
        "heldout_ce": loss,
        "heldout_tokens": n,
        "final_train_loss": summary["final_train_loss"],
        "train_ce_last10": statistics.mean(r["ce"] for r in train[-10:]),
        "mean_alr_scale": statistics.mean(scale) if scale else 1.0,
        "mean_loss_tokens_per_step": statistics.mean(r["loss_tokens"] for r in train),
        "mean_weight": statistics.mean(r["mean_weight"] for r in train) if "mean_weight" in train[0] else 1.0,
        "train_dialogues": summary["data"]["train_dialogues"],
        "weights": summary["data"]["weights"],
        "steps": summary["steps"],
        "train_seconds": round(train_s, 1),
        "config": {
            "lr": args.lr,
            "seq_len": args.seq_len,
            "batch": args.batch,
            "steps": args.steps,
            "corrupt": args.corrupt,
            "alr_baseline_tokens": bs,
            **spec,
        },
    }


# --- driver ---------------------------------------------------------------------------------------
def table(results: list[dict], arms: list[str], seeds: list[int], base_loss: float) -> str:
    by = {(r["arm"], r["seed"]): r for r in results}
    lines = [
        f"held-out CE of the pretrained base before SFT: {base_loss:.4f}\n",
        "| arm | held-out CE, mean ± sd | per seed | Δ vs wice per seed (mean) | mean ALR scale | loss tokens/step |",
        "|---|---:|---|---|---:|---:|",
    ]
    for arm in arms:
        vals = [by[(arm, s)]["heldout_ce"] for s in seeds]
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        deltas = [by[(arm, s)]["heldout_ce"] - by[("wice", s)]["heldout_ce"] for s in seeds] if "wice" in arms else []
        delta = (
            "—"
            if arm == "wice" or not deltas
            else f"{', '.join(f'{d:+.4f}' for d in deltas)} ({statistics.mean(deltas):+.4f})"
        )
        lines.append(
            f"| {arm} | {statistics.mean(vals):.4f} ± {sd:.4f} | {', '.join(f'{v:.4f}' for v in vals)} | {delta} | "
            f"{statistics.mean(by[(arm, s)]['mean_alr_scale'] for s in seeds):.2f} | "
            f"{statistics.mean(by[(arm, s)]['mean_loss_tokens_per_step'] for s in seeds):,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--arms", default="wice,uniform,wice-noalr,wice-weights,wice-alrcal,drop-low")
    p.add_argument("--steps", type=int, default=120, help="SFT optimizer steps per arm")
    p.add_argument("--batch", type=int, default=8, help="packed rows per step")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3, help="peak SFT LR (min = lr/10)")
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--pretrain-steps", type=int, default=200)
    p.add_argument("--corrupt", type=float, default=0.4, help="share of training dialogues corrupted and labelled low")
    p.add_argument("--en", type=int, default=800, help="shipped:en high dialogues added to shipped:pl's")
    p.add_argument("--heldout", type=int, default=250, help="clean high dialogues held out")
    p.add_argument("--work", type=Path, default=None)
    p.add_argument("--results", type=Path, default=None, help="per-arm JSON (default: <work>/results)")
    p.add_argument("--reuse", action="store_true", help="keep arms whose JSON in --results has the same settings")
    args = p.parse_args()
    os.environ.setdefault("BIELIK_NO_BAR", "1")

    set_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    work = args.work or Path(tempfile.mkdtemp(prefix="bielik-wice-"))
    work.mkdir(parents=True, exist_ok=True)
    results_dir = args.results or work / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    arms = args.arms.split(",")
    if "wice-alrcal" in arms and ("wice" not in arms or arms.index("wice") > arms.index("wice-alrcal")):
        sys.exit("wice-alrcal needs the wice arm earlier in --arms (it sets BS from wice's loss tokens per step)")
    t0 = time.perf_counter()

    base = prepare_base(work, args)
    pool = high_dialogues(args.en, seed=0)
    random.Random(0).shuffle(pool)
    heldout = write_jsonl(work / "heldout.jsonl.gz", pool[: args.heldout])
    train_pool = pool[args.heldout :]
    base_loss, n_heldout = heldout_loss(base, heldout, args.seq_len)
    print(
        f"{len(train_pool)} training dialogues, {args.heldout} held out ({n_heldout:,} assistant tokens); "
        f"base held-out CE {base_loss:.4f}",
        flush=True,
    )

    results = []
    for seed in seeds:
        data, counts = corrupt(train_pool, args.corrupt, seed)
        full = write_jsonl(work / f"train-s{seed}.jsonl.gz", data)
        clean = write_jsonl(work / f"train-s{seed}-high.jsonl.gz", [d for d in data if d["quality"] == "high"])
        print(f"seed {seed}: corrupted {sum(counts.values())} dialogues {counts}", flush=True)
        done: dict[str, dict] = {}
        for arm in arms:
            path = results_dir / f"{arm}-s{seed}.json"
            old = json.loads(path.read_text()) if path.is_file() else None
            bs = round(done["wice"]["mean_loss_tokens_per_step"]) if ARMS[arm].get("alr_calibrated") else 2048
            want = {
                "lr": args.lr,
                "seq_len": args.seq_len,
                "batch": args.batch,
                "steps": args.steps,
                "corrupt": args.corrupt,
                "alr_baseline_tokens": bs,
                **ARMS[arm],
            }
            if args.reuse and old and old.get("config") == want:
                r = old
            else:
                r = run_arm(
                    arm,
                    seed,
                    base,
                    clean if ARMS[arm].get("drop_low") else full,
                    heldout,
                    work / f"run-{arm}-s{seed}",
                    args,
                    bs,
                )
                r["corruptions"] = counts
                path.write_text(json.dumps(r, indent=1))
            done[arm] = r
            results.append(r)
            print(
                f"seed {seed} {arm:13s} held-out CE {r['heldout_ce']:.4f}  "
                f"train CE (last 10 steps) {r['train_ce_last10']:.3f}  "
                f"ALR scale {r['mean_alr_scale']:.2f}  {r['train_seconds']:.0f} s",
                flush=True,
            )

    print(
        f"\nsettings: tiny-llama (h 256, 4 layers, vocab {args.vocab}) pretrained {args.pretrain_steps} steps x 16 x "
        f"{args.seq_len} tokens on the shipped corpus; SFT {args.steps} steps x {args.batch} packed rows of "
        f"{args.seq_len}, lr {args.lr:g} -> {args.lr / 10:g}, bf16 autocast; "
        f"{len(train_pool)} training dialogues ({args.corrupt:.0%} corrupted -> low), "
        f"{args.heldout} clean held-out; seeds {seeds}; total {time.perf_counter() - t0:.0f} s\n"
    )
    text = table(results, arms, seeds, base_loss)
    print(text)
    (results_dir / "summary.md").write_text(text + "\n")
    (results_dir / "summary.json").write_text(json.dumps({"base_heldout_ce": base_loss, "runs": results}, indent=1))


if __name__ == "__main__":
    from bielik.runtime import configure_process

    configure_process()  # logging (the entry point's job, not an import's)
    main()
