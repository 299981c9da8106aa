"""KD throughput and memory: the distillation step against plain CE on the student alone.

Teacher: a random-init Llama (hidden 256, 6 layers, FFN 768, vocab 16,384, untied); student: the
same pruned to 4 layers and FFN 512 (weights do not matter for speed). Batches of 8 x 256 random
tokens, the bielik engine, fp32. Configurations, each timed in a fresh process (so its peak RSS is
its own), interleaved over ``--pairs`` rounds because this machine's speed drifts:

* ``ce``         — CausalLM on the student (fused chunked CE): the baseline;
* ``teacher``    — the teacher's no-grad forward alone (decoder + chunked log-softmax): KD's extra cost;
* ``kd``         — LogitDistillation, full-vocabulary KL, chunked (the default);
* ``kd_top64``   — top-64 teacher logits formed in the preparation pass every step (no cache);
* ``kd_dense``   — the same KL with full (B, T, V) logits of both models (``lm_head_chunk=0``).

The floor for ``kd`` is 1 / (1/ce + 1/teacher) tokens/s (student step plus one teacher forward).

    flock /tmp/bielik-heavy.lock .venv/bin/python benchmarks/kd_throughput.py [--pairs 3] [--steps 6]

Measured (3 rounds): CE 4,446 tok/s; teacher forward 6,112; chunked KD 2,259 (0.50x CE, 88% of the
2,574 floor, peak RSS 996 MiB); top-64 every step 2,182; full-logits KD 1,588 (peak RSS 1,879 MiB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bielik.runtime import set_threads  # noqa: E402

CONFIGS = ("ce", "teacher", "kd", "kd_top64", "kd_dense")
SHAPE = dict(
    hidden_size=256,
    intermediate_size=768,
    num_hidden_layers=6,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=16384,
    tie_word_embeddings=False,
)
B, T = 8, 256
CHUNK = 256  # tokens per LM-head chunk: (256, 16384) fp32 buffers of 16 MiB instead of (2048, 16384) ones


class RandomRows:
    def __init__(self, vocab: int):
        self.g = torch.Generator().manual_seed(0)
        self.vocab = vocab

    def next_step(self):
        return [{"input_ids": torch.randint(0, self.vocab, (B, T), generator=self.g)}]

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def models():
    from bielik.model.factory import build_config, build_model

    teacher = build_model(build_config("tiny-llama", **SHAPE), seed=0)
    student = build_model(
        build_config("tiny-llama", **{**SHAPE, "num_hidden_layers": 4, "intermediate_size": 512}), seed=1
    )
    return teacher, student


def measure(name: str, steps: int, warmup: int) -> dict:
    from bielik.train.config import EngineConfig
    from bielik.train.distributed import Dist
    from bielik.train.engine import Engine
    from bielik.train.objectives import CausalLM
    from bielik.train.objectives.kd import LogitDistillation

    set_threads(2)
    teacher, student = models()
    chunk = 0 if name == "kd_dense" else CHUNK
    src = RandomRows(SHAPE["vocab_size"])
    if name == "teacher":
        obj = LogitDistillation(teacher, chunk=chunk, top_k=64)
        run = lambda: obj.prepare(src.next_step()[0])  # noqa: E731
        with torch.no_grad():
            for _ in range(warmup):
                run()
            t = time.perf_counter()
            for _ in range(steps):
                run()
    else:
        obj = (
            CausalLM(chunk=chunk)
            if name == "ce"
            else LogitDistillation(teacher, top_k=64 if name == "kd_top64" else 0, chunk=chunk)
        )
        e = EngineConfig(
            steps=warmup + steps,
            micro_batch_size=B,
            lm_head_chunk=chunk,
            eval={"every": 0, "at_start": False},
            logging={"every": 1000},
            checkpoint={"every": 0, "save_final": False},
            optim={"warmup_steps": 1},
        )
        eng = Engine(e, student, obj, src, f"/tmp/kd-throughput-{name}", Dist(), seq_len=T)
        for _ in range(warmup):
            eng.train_step()
        t = time.perf_counter()
        for _ in range(steps):
            eng.train_step()
    dt = time.perf_counter() - t
    return {
        "config": name,
        "tokens_per_s": steps * B * T / dt,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--measure", choices=CONFIGS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.steps, args.warmup)))
        return
    res: dict[str, list[dict]] = {c: [] for c in CONFIGS}
    for p in range(args.pairs):
        for c in CONFIGS:
            out = subprocess.run(
                [sys.executable, __file__, "--measure", c, "--steps", str(args.steps), "--warmup", str(args.warmup)],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "OMP_NUM_THREADS": "2", "BIELIK_NO_BAR": "1"},
            )
            res[c].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(
                f"round {p + 1}: {c}: {res[c][-1]['tokens_per_s']:,.0f} tok/s, "
                f"peak RSS {res[c][-1]['peak_rss_mib']:,.0f} MiB",
                flush=True,
            )
    ratio = lambda c: statistics.median(
        r[c]["tokens_per_s"] / r["ce"]["tokens_per_s"]
        for r in [{k: res[k][i] for k in CONFIGS} for i in range(args.pairs)]  # noqa: E731
    )
    med = {c: statistics.median(x["tokens_per_s"] for x in res[c]) for c in CONFIGS}
    rss = {c: max(x["peak_rss_mib"] for x in res[c]) for c in CONFIGS}
    floor = 1 / (1 / med["ce"] + 1 / med["teacher"])
    print(
        f"\nbatch {B} x {T} tokens, vocab {SHAPE['vocab_size']}, fp32, 2 threads; "
        f"median over {args.pairs} interleaved rounds\n"
    )
    print("| config | tokens/s | vs CE (median of per-round ratios) | peak RSS MiB |")
    print("|---|---:|---:|---:|")
    for c in CONFIGS:
        print(f"| {c} | {med[c]:,.0f} | {ratio(c):.2f} | {rss[c]:,.0f} |")
    print(
        f"\nKD floor (student step + one teacher forward): {floor:,.0f} tok/s; "
        f"chunked KD reaches {med['kd'] / floor:.0%} of it"
    )


if __name__ == "__main__":
    from bielik.runtime import configure_process

    configure_process()  # logging (the entry point's job, not an import's)
    main()
