"""The shared sampler's KV-cache choices against transformers' defaults (``bielik/model/kv_cache.py``).

Same model as ``eval_speed.py`` (the ``tiny-llama`` preset: hidden 256, 4 layers, 8k vocabulary,
untrained, fp32), real prompts of the leaderboard's generation tasks (0-shot):

* **decode**: time per decode step of :func:`bielik.model.generation.sample` (greedy, 50 new tokens,
  no stops) with transformers' ``DynamicLayer`` (a forward function without ``new_cache``) against
  :class:`~bielik.model.kv_cache.PreallocatedLayer`, on 8TAGS prompts (98-189 tokens), 32 and 128 rows;
* **prefill**: one left-padded forward of a PolEmo-in batch (32 prompts of 149-659 tokens) against
  the length groups of :func:`~bielik.model.kv_cache.prefill`.

A and B alternate ``--pairs`` times; the median of the per-pair ratios is printed.

    flock /tmp/bielik-heavy.lock env OMP_NUM_THREADS=2 .venv/bin/python benchmarks/kv_cache.py [--pairs 5] [--threads 2]

Measured here (fp32, 2 threads, 3 pairs, the CPU shared with other jobs):

* decode, 32 rows x 99-152 tokens: DynamicLayer 8.16 ms/step, PreallocatedLayer 6.74 ms/step (1.22x);
* decode, 128 rows x 97-189 tokens: 30.39 vs 19.52 ms/step (1.57x): the copy grows with rows x length;
* prefill, 32 PolEmo prompts of 384-659 tokens: one forward 1.46 s, length groups 0.81 s (1.79x).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_speed import build_model, prepared  # noqa: E402

from bielik.eval.lm import EvalLM  # noqa: E402
from bielik.model.generation import DecodeTimings, HFForward, SamplingParams, sample  # noqa: E402
from bielik.model.kv_cache import prefill  # noqa: E402
from bielik.runtime import set_threads  # noqa: E402


def ab(pairs: int, a, b) -> tuple[float, float, float]:
    """Median time of a, of b, and median of the per-pair ratios a / b (after one warm-up each)."""
    a(), b()
    ta, tb = [], []
    for _ in range(pairs):
        ta.append(a())
        tb.append(b())
    return statistics.median(ta), statistics.median(tb), statistics.median(x / y for x, y in zip(ta, tb))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    set_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        lm = EvalLM.from_pretrained(build_model(Path(tmp)), device="cpu")
        opts = argparse.Namespace(shots=0, docs=128)
        tags, polemo = prepared(opts, ["polish_8tags_regex", "polemo2_in"])
        tagged = [lm.encode(c) for c in tags.contexts]
        reviews = sorted((lm.encode(c) for c in polemo.contexts), key=len, reverse=True)[:32]
        fast, plain = HFForward(lm.model), HFForward(lm.model)

        def step(forward, rows):
            def run():
                t = DecodeTimings()
                sample(forward, tagged[:rows], SamplingParams(max_new_tokens=50), lm.tok, pad_id=lm.pad_id, timings=t)
                return t.per_token

            return run

        for rows in (32, 128):
            a, b, r = ab(args.pairs, step(lambda *x: plain(*x), rows), step(fast, rows))
            print(
                f"decode, {rows} rows x {min(map(len, tagged[:rows]))}-{max(map(len, tagged[:rows]))} tokens: "
                f"DynamicLayer {1e3 * a:.2f} ms/step | PreallocatedLayer {1e3 * b:.2f} ms/step | ratio {r:.2f}",
                flush=True,
            )

        def fill(grouped):
            def run():
                t0 = time.perf_counter()
                with torch.no_grad():
                    prefill(fast, reviews, lm.pad_id, "cpu", len(reviews[0]) + 49, grouped=grouped)
                return time.perf_counter() - t0

            return run

        a, b, r = ab(args.pairs, fill(False), fill(True))
        print(
            f"prefill, {len(reviews)} rows x {len(reviews[-1])}-{len(reviews[0])} tokens: one forward {a:.2f} s | "
            f"length groups {b:.2f} s | ratio {r:.2f}"
        )


if __name__ == "__main__":
    from bielik.runtime import configure_process

    configure_process()  # logging (the entry point's job, not an import's)
    main()
