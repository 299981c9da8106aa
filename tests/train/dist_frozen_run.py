"""Run by test_contract under torchrun: a frozen-reference objective on 1 or 2 processes (DDP / FSDP2)."""

import json
import sys
from pathlib import Path

import torch

from bielik.train.distributed import init_distributed, shutdown
from bielik.train.engine import Engine
from tests.conftest import engine_config
from tests.train.test_contract import MarginToReference, Rows, micro_llama


class RankRows(Rows):
    """The global batch of :class:`Rows` (two micro-batches), rank r taking micro-batches r, r + world, ..."""

    def __init__(self, rank, world):
        super().__init__()
        self.rank, self.world = rank, world

    def next_step(self):
        return super().next_step()[self.rank :: self.world]

    def iter_dataset(self):
        batches = list(super().iter_dataset())
        return iter(batches[self.rank :: self.world])


def main(out: Path, strategy: str, cache: bool) -> None:
    torch.set_num_threads(1)
    cfg = engine_config(
        steps=6,
        precision="fp32",
        optim={"lr": 1e-2, "min_lr": 1e-3, "warmup_steps": 1},
        logging={"every": 1},
        distributed={"strategy": strategy},
        checkpoint={"every": 6, "save_final": False},
        prepare={"cache": "auto", "precompute": True} if cache else {},
    )
    d = init_distributed("cpu", cfg.distributed)
    ref = micro_llama(1)
    eng = Engine(cfg, micro_llama(0), MarginToReference(ref), RankRows(d.rank, d.world_size), out, d, seq_len=12)
    eng.fit()
    if d.is_main:
        (out / "ref_is_sharded.json").write_text(
            json.dumps(any(type(p).__name__ == "DTensor" for p in ref.parameters()))
        )
    shutdown(d)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "cache")
