"""Curation throughput: documents/s per core for clean + anonymise + features + classify.

Documents: every Polish document of the shipped corpus, cut to ~5,000 characters (at the last line
break before 5,000). One process, one thread (``OMP_NUM_THREADS=1``, XGBoost ``nthread=1``), so
docs/s is docs/s per core. Each step is timed separately on the same documents, ``--rounds`` times
in interleaved order; the median is reported. Two regimes for the morphological features:

* **cold**: a fresh Morfeusz analyser and feature cache (the first documents a worker sees);
* **warm**: the per-form caches already filled by one pass (the steady state of a worker that has
  processed a few thousand documents: Polish word forms follow Zipf's law, so new forms get rare).

``--pipeline`` also runs the whole ``data.curate`` stage (datatrove LocalPipelineExecutor, one
worker, dedup included) on the same documents and reports its end-to-end docs/s.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/curation_throughput.py [--rounds 3] [--pipeline]

Target: ≥ 200 docs/s/core for the four steps together. Whatever comes out is reported.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bielik.data.corpus import shipped_corpus_dir  # noqa: E402
from bielik.data.curate.clean import Cleaner  # noqa: E402
from bielik.data.curate.morph import Analyzer  # noqa: E402
from bielik.data.curate.pii import anonymize  # noqa: E402
from bielik.data.curate.quality import QualityModel  # noqa: E402
from bielik.data.curate.stylometry import FeatureExtractor  # noqa: E402


def cut(text: str, n: int = 5000) -> str:
    if len(text) <= n:
        return text
    i = text.rfind("\n", 0, n)
    return text[:i] if i > n // 2 else text[:n]


def load_docs(max_chars: int) -> list[str]:
    docs = []
    for f in sorted(shipped_corpus_dir().glob("pl_*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            docs += [cut(json.loads(line)["text"], max_chars) for line in fh]
    return docs


def timed(fn, docs) -> float:
    t = time.perf_counter()
    for d in docs:
        fn(d)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-chars", type=int, default=5000)
    ap.add_argument("--pipeline", action="store_true", help="also time the whole data.curate stage")
    args = ap.parse_args()

    docs = load_docs(args.max_chars)
    n = len(docs)
    print(f"{n} Polish documents, mean {statistics.mean(map(len, docs)):,.0f} characters (cut at {args.max_chars:,})")
    cleaner = Cleaner()
    model = QualityModel(nthread=1)
    cleaner(docs[0], {})  # load the language model once

    # cold features: fresh analyser and caches
    fx_cold = FeatureExtractor(Analyzer())
    t_cold = timed(fx_cold, docs)
    fx = fx_cold  # now warm
    X = fx.many(docs)

    times: dict[str, list[float]] = {k: [] for k in ("clean", "anonymise", "features (warm)", "classify")}
    for _ in range(args.rounds):
        times["clean"].append(timed(lambda d: cleaner(d, {}), docs))
        times["anonymise"].append(timed(anonymize, docs))
        times["features (warm)"].append(timed(fx, docs))
        t = time.perf_counter()
        for i in range(0, n, 64):
            model.proba_features(X[i:i + 64])
        times["classify"].append(time.perf_counter() - t)

    med = {k: statistics.median(v) for k, v in times.items()}
    rows = [(k, n / v, 1000 * v / n) for k, v in med.items()]
    rows.insert(3, ("features (cold)", n / t_cold, 1000 * t_cold / n))
    print(f"\n| step | docs/s/core | ms/doc |\n|---|---:|---:|")
    for k, r, ms in rows:
        print(f"| {k} | {r:,.0f} | {ms:.2f} |")
    warm_total = sum(med.values())
    cold_total = warm_total - med["features (warm)"] + t_cold
    print(f"| **all four, warm caches** | **{n / warm_total:,.0f}** | {1000 * warm_total / n:.2f} |")
    print(f"| all four, cold caches | {n / cold_total:,.0f} | {1000 * cold_total / n:.2f} |")
    print("target: >= 200 docs/s/core (warm)")

    if args.pipeline:
        from bielik.data.curate.config import CurateConfig
        from bielik.data.curate.stages import curate

        with tempfile.TemporaryDirectory() as tmp:
            inp = Path(tmp) / "in"
            inp.mkdir()
            with open(inp / "docs.jsonl", "w", encoding="utf-8") as fh:
                for i, d in enumerate(docs):
                    fh.write(json.dumps({"id": str(i), "text": d}, ensure_ascii=False) + "\n")
            t = time.perf_counter()
            m = curate(CurateConfig(inputs=[str(inp)], output=str(Path(tmp) / "out")))
            dt = time.perf_counter() - t
            print(f"\ndata.curate stage (datatrove, 1 worker, dedup included): {n / dt:,.0f} docs/s "
                  f"({dt:.1f} s; kept {m['kept']:,} of {m['input']:,})")


if __name__ == "__main__":
    main()
