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

Reported per step: docs/s of wall time and docs per CPU-second of this process (on a machine other
processes keep busy, the CPU-time figure is the per-core throughput). Target: ≥ 200 docs/s/core for
the four steps together. Whatever comes out is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bielik.data.corpus import read_jsonl, shipped_corpus_dir  # noqa: E402
from bielik.data.curate.clean import Cleaner  # noqa: E402
from bielik.data.curate.config import DEFAULT_MAX_CHARS  # noqa: E402
from bielik.data.curate.morph import Analyzer  # noqa: E402
from bielik.data.curate.pii import anonymize  # noqa: E402
from bielik.data.curate.quality import QualityModel  # noqa: E402
from bielik.data.curate.stylometry import FeatureExtractor  # noqa: E402


def cut(text: str, n: int) -> str:
    if len(text) <= n:
        return text
    i = text.rfind("\n", 0, n)
    return text[:i] if i > n // 2 else text[:n]


def load_docs(max_chars: int) -> list[str]:
    return [
        cut(doc.text, max_chars) for f in sorted(shipped_corpus_dir().glob("pl_*.jsonl.gz")) for doc in read_jsonl(f)
    ]


def timed(fn, docs) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) to run ``fn`` on every document."""
    t, c = time.perf_counter(), time.process_time()
    for d in docs:
        fn(d)
    return time.perf_counter() - t, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS)
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

    def classify(_):
        for i in range(0, n, 64):
            model.proba_features(X[i : i + 64])

    times: dict[str, list[tuple[float, float]]] = {k: [] for k in ("clean", "anonymise", "features (warm)", "classify")}
    for _ in range(args.rounds):
        times["clean"].append(timed(lambda d: cleaner(d, {}), docs))
        times["anonymise"].append(timed(anonymize, docs))
        times["features (warm)"].append(timed(fx, docs))
        times["classify"].append(timed(classify, [None]))

    # wall-clock docs/s suffers when other processes share the cores; CPU-time docs/s (documents per
    # second of this process's CPU time) is the per-core figure on a busy machine
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}
    rows = [(k, n / w, n / c, 1000 * c / n) for k, (w, c) in med.items()]
    rows.insert(3, ("features (cold)", n / t_cold[0], n / t_cold[1], 1000 * t_cold[1] / n))
    print("\n| step | docs/s (wall) | docs/s per CPU-second | CPU ms/doc |\n|---|---:|---:|---:|")
    for k, rw, rc, ms in rows:
        print(f"| {k} | {rw:,.0f} | {rc:,.0f} | {ms:.2f} |")
    warm_w, warm_c = sum(w for w, _ in med.values()), sum(c for _, c in med.values())
    cold_w = warm_w - med["features (warm)"][0] + t_cold[0]
    cold_c = warm_c - med["features (warm)"][1] + t_cold[1]
    print(f"| **all four, warm caches** | {n / warm_w:,.0f} | **{n / warm_c:,.0f}** | {1000 * warm_c / n:.2f} |")
    print(f"| all four, cold caches | {n / cold_w:,.0f} | {n / cold_c:,.0f} | {1000 * cold_c / n:.2f} |")
    print(f"target: >= 200 docs/s/core (warm). load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    if args.pipeline:
        from bielik.data.curate.config import CurateConfig
        from bielik.data.curate.stages import curate

        with tempfile.TemporaryDirectory() as tmp:
            inp = Path(tmp) / "in"
            inp.mkdir()
            with open(inp / "docs.jsonl", "w", encoding="utf-8") as fh:
                for i, d in enumerate(docs):
                    fh.write(json.dumps({"id": str(i), "text": d}, ensure_ascii=False) + "\n")
            t, c = time.perf_counter(), time.process_time()
            m = curate(CurateConfig(inputs=[str(inp)], output=str(Path(tmp) / "out")))
            dt, dc = time.perf_counter() - t, time.process_time() - c
            print(
                f"\ndata.curate stage (datatrove, 1 worker in-process, cold caches, dedup included): "
                f"{n / dt:,.0f} docs/s wall, {n / dc:,.0f} docs per CPU-second "
                f"({dt:.1f} s; kept {m['kept']:,} of {m['input']:,})"
            )


if __name__ == "__main__":
    from bielik.runtime import configure_process

    configure_process()  # logging (the entry point's job, not an import's)
    main()
