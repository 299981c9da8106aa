"""What the A/B benchmarks share: each measurement runs in a fresh child process (no allocator or
thread-pool state carried between sides), which reports its peak RSS and prints one JSON line."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys


def peak_rss_mib() -> float:
    """This process's peak resident set (MiB): ``VmHWM`` from ``/proc/self/status``, else ``ru_maxrss``."""
    with contextlib.suppress(OSError), open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> float:
    """Return the peak RSS so far (MiB) and reset the high-water mark (Linux >= 4.0; else it stays)."""
    before = peak_rss_mib()
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return before


def run_child(script: str, argv: list[str], what: str) -> dict:
    """Run ``python script *argv`` quietly (2 threads unless OMP_NUM_THREADS says otherwise, no progress
    bars) and return the JSON object it printed on its last stdout line; exit naming ``what`` on failure."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
        "BIELIK_NO_BAR": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    }
    out = subprocess.run([sys.executable, script, *argv], check=False, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{what} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
