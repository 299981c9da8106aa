"""Peak memory of ``bielik data pack`` on one huge single-line document (issue 14, item 4).

Builds a JSONL file whose only line is one Polish document of ``--mb`` MB (UTF-8): the shipped
Polish corpus (``bielik/resources/corpus/pl_*.jsonl.gz``) joined with blank lines and repeated.
Then runs ``bielik data pack`` on it in a child process with the tokenizer setup of the tiny
recipe (byte-level BPE, vocab 8192, trained on 4M characters of the shipped corpus; or ``--tokenizer``)
and reads the child's peak resident set size (``getrusage(RUSAGE_CHILDREN).ru_maxrss`` of a wrapper
process that runs only that child, so the figure is that run's alone). Target: at most 1.5 GB peak
RSS for a 200 MB document.

``--baseline`` runs the same command with the whole-document tokenisation of the code before the
fix (the piece length and batch length patched to "unbounded", so each document goes to the
tokenizer in one call): the issue measured 10.3 GB peak / 100 s for a 52 MB document that way, so
keep ``--mb`` small for it.

Measured 2026-12-03 (``benchmarks/results/pack_memory.json``, command below with ``--baseline-mb 10``):
200 MB -> 1.36 GB peak RSS (50 s), 52 MB -> 0.57 GB (14 s); whole-document tokenisation: 10 MB ->
1.85 GB (the issue: 52 MB -> 10.3 GB, 100 s).

    flock /tmp/bielik-heavy.lock env OMP_NUM_THREADS=2 BIELIK_NO_BAR=1 \\
        .venv/bin/python benchmarks/pack_memory.py --mb 200 52 [--baseline-mb 10] \\
        [--out benchmarks/results/pack_memory.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_BYTES = 1.5e9
TARGET_MB = 200

# run in the child for --baseline: whole-document tokenisation, as before the fix
BASELINE = (
    "import sys, bielik.data.pack as p; p.PIECE_CHARS = 1 << 62; p.BATCH_CHARS = 1 << 62; "
    "from bielik.cli import main; sys.argv = ['bielik', *sys.argv[1:]]; main()"
)


def build_document(path: Path, mb: float) -> int:
    """Write one JSONL line holding a single Polish document of about ``mb`` MB; return its text's bytes."""
    texts = []
    for f in sorted((REPO / "bielik" / "resources" / "corpus").glob("pl_*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            texts.extend(json.loads(line)["text"] for line in fh if line.strip())
    block = "\n\n".join(texts) + "\n\n"
    escaped = json.dumps(block, ensure_ascii=False)[1:-1]  # JSON-escaped text, written repeatedly
    size_block = len(block.encode("utf-8"))
    want, written = int(mb * 1e6), 0
    with open(path, "w", encoding="utf-8") as out:
        out.write('{"id": "huge-0", "lang": "pl", "text": "')
        while written + size_block <= want:
            out.write(escaped)
            written += size_block
        tail = block.encode("utf-8")[: want - written].decode("utf-8", "ignore")
        out.write(json.dumps(tail, ensure_ascii=False)[1:-1])
        written += len(tail.encode("utf-8"))
        out.write('"}\n')
    return written


def measure(cmd: list[str]) -> dict:
    """Run ``cmd`` in a wrapper process whose only child it is; return its peak RSS and wall time."""
    code = (
        "import json, resource, subprocess, sys, time; t = time.perf_counter(); "
        "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
        "print(json.dumps({'rc': rc, 'seconds': time.perf_counter() - t, "
        "'peak_rss_bytes': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))"
    )
    res = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True, check=True)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    if out["rc"] != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with status {out['rc']}:\n{res.stderr[-3000:]}")
    return out


def train_tokenizer(out: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "bielik.cli",
        "tokenizer",
        "train",
        f"output={out}",
        "vocab_size=8192",
        "max_chars=4000000",
    ]  # the tiny recipe's tokenizer stage
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=REPO)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=float, nargs="+", default=[TARGET_MB, 52.0], help="document sizes (MB of UTF-8 text)")
    ap.add_argument(
        "--baseline-mb", type=float, nargs="*", default=[], help="sizes to run with whole-document tokenisation"
    )
    ap.add_argument("--tokenizer", help="HF tokenizer directory (default: train the tiny recipe's)")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="pack-mem-") as tmp:
        tmp = Path(tmp)
        tok = Path(args.tokenizer) if args.tokenizer else train_tokenizer(tmp / "tok")
        runs = [(mb, False) for mb in args.mb] + [(mb, True) for mb in args.baseline_mb]
        for mb, baseline in runs:
            src = tmp / f"doc-{mb:g}.jsonl"
            text_bytes = build_document(src, mb)
            head = [sys.executable, "-c", BASELINE] if baseline else [sys.executable, "-m", "bielik.cli"]
            cmd = [
                *head,
                "data",
                "pack",
                f"inputs=[{src}]",
                f"tokenizer={tok}",
                f"output={tmp / 'packed'}",
                "seq_len=512",
                "overwrite=true",
            ]
            res = measure(cmd)
            metrics = json.loads((tmp / "packed" / "metrics.json").read_text())
            src.unlink()
            row = {
                "document_mb": round(text_bytes / 1e6, 1),
                "mode": "whole-document (before)" if baseline else "pieces (now)",
                "peak_rss_gb": round(res["peak_rss_bytes"] / 1e9, 3),
                "seconds": round(res["seconds"], 1),
                "packed_tokens": metrics["train"]["tokens"] + metrics["val"]["tokens"],
                "meets_target": res["peak_rss_bytes"] <= TARGET_BYTES if (mb >= TARGET_MB and not baseline) else None,
            }
            rows.append(row)
            print(
                f"{row['mode']:>24}: {row['document_mb']:7.1f} MB document -> peak RSS {row['peak_rss_gb']:.2f} GB "
                f"(target {TARGET_BYTES / 1e9:.1f} GB at {TARGET_MB} MB), {row['seconds']:.0f} s, "
                f"{row['packed_tokens']:,} packed tokens",
                flush=True,
            )
    result = {
        "command": " ".join(sys.argv),
        "tokenizer": args.tokenizer or "tiny recipe (bytelevel 8192)",
        "target_peak_rss_gb": TARGET_BYTES / 1e9,
        "target_document_mb": TARGET_MB,
        "runs": rows,
        "cpu_threads": os.environ.get("OMP_NUM_THREADS"),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    from bielik.runtime import configure_process

    configure_process()  # logging (the entry point's job, not an import's)
    main()
