"""Run by tests/train/test_dcp.py, under torchrun (2 processes) or as a plain process (1).

Modes (``out`` is a run directory; its checkpoints are in ``out/checkpoints``):

* ``both``    — in ``out/full``: train ``STEPS`` steps without interruption (checkpoint at ``STEPS``);
  in ``out/part``: train ``STOP`` of ``STEPS`` steps, save a checkpoint, stop (the "interrupted" run);
* ``resume``  — resume ``out``'s latest checkpoint and finish the ``STEPS`` steps;
* ``hang``    — like ``full`` with a checkpoint every ``STOP`` steps, but the second save stops after
  the shards are written and before DCP's ``.metadata`` (the test kills it there with SIGKILL).

The global batch is the same on any world size (:class:`RankRows`), so runs on 1 and 2 processes
train the same rows in the same order.
"""

import sys
import time
from pathlib import Path

import torch

from bielik.train.distributed import init_distributed, shutdown
from bielik.train.engine import Engine
from bielik.train.objectives import CausalLM
from tests.conftest import engine_config
from tests.train.test_contract import Rows, micro_llama

STEPS, STOP = 6, 3


class RankRows(Rows):
    """The global batch of :class:`Rows` (two micro-batches), rank r taking micro-batches r, r + world, ..."""

    def __init__(self, rank, world):
        super().__init__()
        self.rank, self.world = rank, world

    def next_step(self):
        return super().next_step()[self.rank :: self.world]


def make_engine(out: Path, strategy: str, async_save: bool, d=None, every: int = 0) -> Engine:
    cfg = engine_config(
        steps=STEPS,
        lm_head_chunk=8,
        precision="fp32",
        logging={"every": 1},
        optim={"lr": 1e-2, "min_lr": 1e-3, "warmup_steps": 1},
        distributed={"strategy": strategy, "backend": "gloo"},
        checkpoint={"every": every or STEPS, "keep_last": 5, "async_save": async_save, "save_final": False},
    )
    if d is None:
        d = init_distributed("cpu", cfg.distributed)
    return Engine(cfg, micro_llama(0), CausalLM(chunk=8), RankRows(d.rank, d.world_size), out, d, seq_len=12)


def _hang_on_second_metadata_write() -> None:
    """Block the coordinator's second ``.metadata`` write (the shards are already on disk), after a marker."""
    from torch.distributed.checkpoint.filesystem import FileSystemWriter

    real = FileSystemWriter.finish
    calls = []

    def finish(self, metadata, results):
        calls.append(1)
        if len(calls) == 2:
            (Path(self.path).parents[1] / "SAVING").touch()
            time.sleep(600)
        return real(self, metadata, results)

    FileSystemWriter.finish = finish


def main(out: Path, mode: str, strategy: str, async_save: bool) -> None:
    torch.set_num_threads(1)
    if mode == "hang":
        _hang_on_second_metadata_write()
    if mode == "both":
        full = make_engine(out / "full", strategy, async_save)
        full.fit()
        part = make_engine(out / "part", strategy, async_save, d=full.dist)
        for _ in range(STOP):
            part.train_step()
        part.save_checkpoint()
        part.wait_for_checkpoint()
        shutdown(full.dist)
        return
    eng = make_engine(out, strategy, async_save, every=STOP if mode == "hang" else 0)
    eng.fit()
    shutdown(eng.dist)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "async")
