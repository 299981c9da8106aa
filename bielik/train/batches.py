"""Batch sources: deterministic, resumable, sharded by rank.

A batch source hands the engine, for each optimizer step, this rank's list of micro-batches. Its
whole position is a small dict (``state_dict``) saved in every checkpoint, so a resumed run sees
exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch

from bielik.data.pack import TokenShards


class BatchSource(Protocol):
    def next_step(self) -> list[dict[str, torch.Tensor]]: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


class RowBatches:
    """Rows of a fixed table (packed token shards, packed SFT rows), reshuffled every epoch with ``seed + epoch``.

    Each optimizer step takes the next ``micro_batch_size * grad_accum * world_size`` rows of the
    epoch's permutation; rank ``r`` gets micro-batches ``r, r + world, ...`` of that global batch,
    so the global batch (and, with the engine's global normalisation, the update) does not depend on
    how it is split over processes and accumulation steps. An epoch's incomplete tail is skipped.
    Every micro-batch carries ``example_ids`` (the row numbers), the key of the engine's
    preparation cache. Subclasses say how rows become tensors (:meth:`_tensors`).
    """

    what = "rows"

    def __init__(
        self,
        n_rows: int,
        seq_len: int,
        micro_batch_size: int,
        grad_accum: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        where: str = "",
        for_training: bool = True,
    ):
        self.n_rows, self.seq_len = n_rows, seq_len
        self.micro = micro_batch_size
        self.accum = grad_accum
        self.rank, self.world = rank, world_size
        self.seed = seed
        self.global_rows = micro_batch_size * grad_accum * world_size
        if for_training and n_rows < self.global_rows:
            from bielik.errors import DataError

            raise DataError(
                f"{where}: {n_rows} {self.what}, fewer than one global batch of {self.global_rows} "
                f"(micro_batch_size x grad_accum x world_size); add data, shorten seq_len or lower the batch"
            )
        self.epoch, self.cursor = 0, 0
        self._perm = self._permutation(0)

    def _tensors(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        return {**self._tensors(idx), "example_ids": torch.from_numpy(np.asarray(idx, dtype=np.int64))}

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n_rows)

    def next_step(self) -> list[dict[str, torch.Tensor]]:
        if self.cursor + self.global_rows > len(self._perm):
            self.epoch += 1
            self.cursor = 0
            self._perm = self._permutation(self.epoch)
        idx = self._perm[self.cursor : self.cursor + self.global_rows].reshape(self.accum * self.world, self.micro)
        self.cursor += self.global_rows
        return [self.batch(m) for m in idx[self.rank :: self.world]]

    def iter_dataset(self) -> Iterator[dict[str, torch.Tensor]]:
        """Every row once, this rank's share, in micro-batches (the engine's precompute pass)."""
        per_rank = -(-self.n_rows // self.world)
        mine = np.arange(self.n_rows)[self.rank :: self.world]
        for s in range(0, per_rank, self.micro):  # every rank yields the same number of batches
            chunk = mine[s : s + self.micro]
            yield self.batch(chunk if len(chunk) else mine[-1:])

    @property
    def tokens_per_step(self) -> int:
        return self.global_rows * self.seq_len

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self._perm = self._permutation(self.epoch)

    def eval_batches(self, n_batches: int) -> Iterator[dict[str, torch.Tensor]]:
        """The first ``n_batches * micro_batch_size`` rows (a fixed set), split over ranks; every
        rank gets the same number of rows (a sharded model needs every rank in every forward)."""
        total = min(self.n_rows, n_batches * self.micro) // self.world * self.world
        rows = np.arange(total)[self.rank :: self.world]
        for s in range(0, len(rows), self.micro):
            yield self.batch(rows[s : s + self.micro])


class PackedRowBatches(RowBatches):
    """Packed pretraining token shards (:class:`bielik.data.pack.TokenShards`): ``{"input_ids"}``."""

    what = "training rows"

    def __init__(
        self,
        shards: TokenShards,
        micro_batch_size: int,
        grad_accum: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        for_training: bool = True,
    ):
        self.shards = shards
        super().__init__(
            len(shards),
            shards.seq_len,
            micro_batch_size,
            grad_accum,
            rank,
            world_size,
            seed,
            str(shards.root),
            for_training,
        )

    def _tensors(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.from_numpy(self.shards.rows(idx))}


class ChatRowBatches(RowBatches):
    """Packed SFT rows (:class:`bielik.data.chat_rows.ChatRows`).

    A micro-batch is ``{"input_ids": int64, "labels": int64 (-100 = not trained, unshifted),
    "position_ids": int64, "loss_weights": float32, "token_mask": bool}``, each (B, T).
    """

    what = "packed SFT rows"

    def __init__(
        self,
        rows,
        micro_batch_size: int,
        grad_accum: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        for_training: bool = True,
    ):
        self.data = rows
        super().__init__(
            len(rows), rows.seq_len, micro_batch_size, grad_accum, rank, world_size, seed, "SFT data", for_training
        )

    def _tensors(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v) for k, v in self.data.rows(idx).items()}


def eval_batches(
    shards: TokenShards, micro_batch_size: int, n_batches: int, rank: int = 0, world_size: int = 1
) -> Iterator[dict[str, torch.Tensor]]:
    """The held-out packed rows of :meth:`RowBatches.eval_batches`."""
    return PackedRowBatches(shards, micro_batch_size, 1, rank, world_size, for_training=False).eval_batches(n_batches)


def eval_chat_batches(
    rows, micro_batch_size: int, n_batches: int, rank: int = 0, world_size: int = 1
) -> Iterator[dict[str, torch.Tensor]]:
    """The held-out SFT rows of :meth:`RowBatches.eval_batches`."""
    return ChatRowBatches(rows, micro_batch_size, 1, rank, world_size, for_training=False).eval_batches(n_batches)
