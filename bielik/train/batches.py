"""Batch sources: deterministic, resumable, sharded by rank.

A batch source hands the engine, for each optimizer step, this rank's list of micro-batches. Its
whole position is a small dict (``state_dict``) saved in every checkpoint, so a resumed run sees
exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from typing import Iterator, Protocol

import numpy as np
import torch

from bielik.data.pack import TokenShards


class BatchSource(Protocol):
    def next_step(self) -> list[dict[str, torch.Tensor]]: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


class PackedRowBatches:
    """Rows of packed token shards, reshuffled every epoch with ``seed + epoch``.

    Each optimizer step takes the next ``micro_batch_size * grad_accum * world_size`` rows of the
    epoch's permutation; rank ``r`` gets micro-batches ``r, r + world, ...`` of that global batch,
    so the global batch (and, with the engine's global normalisation, the update) does not depend on
    how it is split over processes and accumulation steps. An epoch's incomplete tail is skipped.
    """

    def __init__(self, shards: TokenShards, micro_batch_size: int, grad_accum: int, rank: int = 0, world_size: int = 1, seed: int = 0):
        self.shards = shards
        self.micro = micro_batch_size
        self.accum = grad_accum
        self.rank, self.world = rank, world_size
        self.seed = seed
        self.global_rows = micro_batch_size * grad_accum * world_size
        if len(shards) < self.global_rows:
            from bielik.errors import DataError

            raise DataError(
                f"{shards.root}: {len(shards)} training rows, fewer than one global batch of {self.global_rows} "
                f"(micro_batch_size x grad_accum x world_size); pack more data or lower the batch"
            )
        self.epoch, self.cursor = 0, 0
        self._perm = self._permutation(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.shards))

    def next_step(self) -> list[dict[str, torch.Tensor]]:
        if self.cursor + self.global_rows > len(self._perm):
            self.epoch += 1
            self.cursor = 0
            self._perm = self._permutation(self.epoch)
        idx = self._perm[self.cursor : self.cursor + self.global_rows].reshape(self.accum * self.world, self.micro)
        self.cursor += self.global_rows
        mine = idx[self.rank :: self.world]
        return [{"input_ids": torch.from_numpy(self.shards.rows(m))} for m in mine]

    @property
    def tokens_per_step(self) -> int:
        return self.global_rows * self.shards.seq_len

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self._perm = self._permutation(self.epoch)


def eval_batches(shards: TokenShards, micro_batch_size: int, n_batches: int, rank: int = 0, world_size: int = 1) -> Iterator[dict[str, torch.Tensor]]:
    """The first ``n_batches * micro_batch_size`` held-out rows (a fixed set), split over ranks.

    Every rank gets the same number of rows (a sharded model needs every rank in every forward).
    """
    total = min(len(shards), n_batches * micro_batch_size) // world_size * world_size
    rows = np.arange(total)[rank::world_size]
    for s in range(0, len(rows), micro_batch_size):
        yield {"input_ids": torch.from_numpy(shards.rows(rows[s : s + micro_batch_size]))}
