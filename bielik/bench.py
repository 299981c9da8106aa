"""``bielik bench peak``: measured matmul peak (FLOP/s) per dtype, the denominator of MFU.

Square matmuls of size n, timed after a warm-up; the best of ``repeats`` is kept (the machine's
speed drifts, the peak is what the hardware can do). Results are cached in
``~/.cache/bielik/peak_flops.json`` keyed ``<device type>:<dtype>``; training reads them.
"""

from __future__ import annotations

import json
import time

import torch
from pydantic import Field

from bielik.artifacts import atomic_write_text
from bielik.config import StageConfig


class PeakConfig(StageConfig):
    device: str = "auto"
    dtypes: list[str] = Field(default_factory=lambda: ["float32", "bfloat16"])
    size: int = Field(0, ge=0, description="matrix size n (0: 2048 on CPU, 8192 on GPUs)")
    repeats: int = Field(5, ge=1)
    save: bool = True


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_peak(cfg: PeakConfig) -> dict[str, float]:
    from bielik.train.distributed import pick_device
    from bielik.train.metrics import peak_cache_path

    device = pick_device(cfg.device)
    n = cfg.size or (2048 if device.type == "cpu" else 8192)
    results: dict[str, float] = {}
    for name in cfg.dtypes:
        dtype = getattr(torch, name)
        probe = torch.randn(512, 512, device=device).to(dtype)
        probe @ probe
        _sync(device)
        t = time.perf_counter()
        probe @ probe  # a first estimate of the rate picks a size that takes ~0.1 s (slow emulated dtypes)
        _sync(device)
        rate = 2 * 512**3 / max(time.perf_counter() - t, 1e-9)
        k = int(min(n, max(256, (0.1 * rate / 2) ** (1 / 3))) // 256 * 256)
        a = torch.randn(k, k, device=device).to(dtype)
        b = torch.randn(k, k, device=device).to(dtype)
        a @ b
        m = a.shape[0]
        best = 0.0
        for _ in range(cfg.repeats):
            inner = 0
            t = time.perf_counter()
            while True:
                a @ b
                inner += 1
                _sync(device)
                if time.perf_counter() - t > 0.25:
                    break
            best = max(best, inner * 2 * m**3 / (time.perf_counter() - t))
        results[f"{device.type}:{name}"] = best
    if cfg.save:
        path = peak_cache_path()
        table = json.loads(path.read_text()) if path.is_file() else {}
        table.update(results)
        atomic_write_text(path, json.dumps(table, indent=2) + "\n")
    return results
