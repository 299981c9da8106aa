"""Process-wide settings (torch thread count, denormal flushing, logging) and the one place that sets them.

A library call must not change the process it runs in behind its caller's back: a Python user who
runs a stage and then their own code should find the thread count, the CPU's floating-point mode and
the logging handlers as they left them. So:

* the command-line entry point (:func:`bielik.cli.main`) calls :func:`configure_process` once:
  logging (:func:`bielik.log.setup_logging`) and, under torchrun on the CPU, the per-rank thread count;
* a stage run through the registry (CLI, recipes, ``bielik.stages.get(kind).run``) enters
  :func:`stage_context`, which enables flush-to-zero of denormals for the duration of the stage and
  restores the previous mode afterwards;
* code that needs another thread count for a while (``bench.speed threads=N``) uses :func:`threads`,
  which restores the previous count.

Why flush denormals: Adam moments of never-updated rows (unseen tokens) decay geometrically into
denormal floats, which are ~100x slower on x86; flushing them to zero changes nothing that matters.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


def flush_denormal_enabled() -> bool:
    """Whether the CPU currently flushes denormals to zero (torch offers a setter but no getter).

    Probe: with flush-to-zero on, the float64 denormal 1e-323 reads back as 0.
    """
    import torch

    return torch.tensor([1e-323], dtype=torch.float64).item() == 0.0


@contextlib.contextmanager
def flush_denormal(enabled: bool = True) -> Iterator[None]:
    """Set flush-to-zero of denormals for the block, then restore the previous mode."""
    import numpy as np
    import torch

    # numpy computes (and caches) its float limits on first use and warns "the smallest subnormal ... is
    # zero" when that first use happens with flushing on: compute them now, while denormals still exist.
    for t in (np.float16, np.float32, np.float64, np.longdouble):
        np.finfo(t)
    before = flush_denormal_enabled()
    torch.set_flush_denormal(enabled)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def set_threads(n: int) -> None:
    """Set torch's intra-op thread count: the only ``torch.set_num_threads`` call in bielik."""
    import torch

    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    torch.set_num_threads(n)


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Use ``n`` torch threads for the block (``None``/0: leave the count alone), then restore it."""
    if not n:
        yield
        return
    import torch

    before = torch.get_num_threads()
    set_threads(n)
    try:
        yield
    finally:
        set_threads(before)


def rank_threads() -> int | None:
    """Threads per process under torchrun on a CPU machine: the cores divided among the local ranks.

    ``None`` outside torchrun (one process keeps torch's default, which honours ``OMP_NUM_THREADS``).
    Sharing the cores avoids oversubscription, which costs several-fold on a shared machine.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    return max(1, (os.cpu_count() or 1) // max(1, local_world))


def apply_rank_threads() -> None:
    """Set :func:`rank_threads` when launched by torchrun (called by the entry point and by the torchrun path
    of :func:`bielik.train.distributed.init_distributed`; idempotent)."""
    n = rank_threads()
    if n is not None:
        set_threads(n)


def configure_process(log_level: str | int | None = None) -> None:
    """What the command-line entry point sets for the whole process: logging, and per-rank threads under torchrun."""
    from bielik.log import setup_logging

    setup_logging(log_level or os.environ.get("BIELIK_LOG_LEVEL", "INFO"))
    apply_rank_threads()  # imports torch only under torchrun


@contextlib.contextmanager
def stage_context() -> Iterator[None]:
    """The settings a stage runs under, restored on exit: flush-to-zero of denormals on the CPU.

    torch is touched only when the stage's module already imported it (a data stage does not pay the
    torch import for a setting it cannot use).
    """
    if "torch" not in sys.modules:
        yield
        return
    with flush_denormal(True):
        yield
