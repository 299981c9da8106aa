"""A disk cache for the objective's no-grad preparation pass (reference log-probs, teacher logits).

Values are stored **per example** (the batch's ``example_ids``), not per batch, so they stay valid
when the batch source reshuffles every epoch, when the micro-batch size changes, and when a run
resumes on a different number of processes. Layout of the cache directory::

    meta.json                     what the values were computed with (objective, frozen models)
    part-r0-00000.safetensors     "<example_id>/<key>" -> that example's tensor, one file per flush
    part-r1-00000.safetensors     ... (each rank writes its own parts; every rank reads them all,
                                  at start and after the precompute pass: a shared filesystem
                                  across nodes, else a rank recomputes what it does not see)

A part is written to a temporary name and renamed, so a crash leaves only whole parts. A cache
whose ``meta.json`` does not match the current objective and frozen models is an error (delete it
or point ``train.prepare.cache`` elsewhere) rather than silently wrong reference values.

Per-token outputs (``Objective.prepare_token_keys``) are stored trimmed to the example's real
tokens (rows are right-padded) and padded back with zeros to the batch's length on reuse.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from bielik.artifacts import read_json, write_json
from bielik.errors import BielikError
from bielik.log import get_logger

log = get_logger(__name__)


def _row_length(batch: dict[str, torch.Tensor], i: int) -> int:
    for key in ("token_mask", "attention_mask"):
        if key in batch:
            return int(batch[key][i].sum())
    return int(batch["input_ids"].shape[1])


class PreparedCache:
    def __init__(
        self,
        root: str | Path,
        fingerprint: dict[str, Any],
        rank: int = 0,
        token_keys: frozenset[str] = frozenset(),
        flush_every: int = 4096,
    ):
        self.root = Path(root)
        self.rank = rank
        self.token_keys = token_keys
        self.flush_every = flush_every
        self.values: dict[int, dict[str, torch.Tensor]] = {}
        self._pending: dict[str, torch.Tensor] = {}
        self.hits = self.misses = 0
        meta = self.root / "meta.json"
        if meta.is_file():
            saved = read_json(meta)
            if saved != fingerprint:
                raise BielikError(
                    f"prepare cache {self.root} was computed for {saved}, not for {fingerprint}; "
                    "delete it or set train.prepare.cache to another directory"
                )
        elif rank == 0:
            self.root.mkdir(parents=True, exist_ok=True)
            write_json(meta, fingerprint)
        self._parts = 0
        self._loaded: set[str] = set()
        self.reload()
        self._parts = sum(1 for p in self._loaded if p.startswith(f"part-r{rank}-"))

    def reload(self) -> None:
        """Read the parts on disk not read yet (those other ranks wrote since; needs a shared filesystem)."""
        new = 0
        for part in sorted(self.root.glob("part-*.safetensors")) if self.root.is_dir() else []:
            if part.name in self._loaded:
                continue
            for name, t in load_file(part).items():
                ex, key = name.split("/", 1)
                self.values.setdefault(int(ex), {})[key] = t
            self._loaded.add(part.name)
            new += 1
        if new:
            log.info("prepare cache %s: %d examples after reading %d part(s)", self.root, len(self.values), new)

    @staticmethod
    def _ids(batch: dict[str, torch.Tensor]) -> list[int]:
        if "example_ids" not in batch:
            raise BielikError(
                "train.prepare.cache needs batches that carry 'example_ids' (this batch source gives none)"
            )
        return [int(i) for i in batch["example_ids"].reshape(-1).tolist()]

    def lookup(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        """The batch's prepared values stacked in batch order, or None if any example is missing."""
        ids = self._ids(batch)
        rows = [self.values.get(i) for i in ids]
        if any(r is None for r in rows):
            self.misses += 1
            return None
        self.hits += 1
        length = batch["input_ids"].shape[1]
        out = {}
        for key in rows[0]:
            vals = [r[key] for r in rows]
            if key in self.token_keys:
                vals = [
                    torch.nn.functional.pad(v, (0, 0) * (v.ndim - 1) + (0, length - v.shape[0]))
                    if v.shape[0] < length
                    else v[:length]
                    for v in vals
                ]
            out[key] = torch.stack(vals).to(batch["input_ids"].device)
        return out

    def store(self, batch: dict[str, torch.Tensor], prepared: dict[str, torch.Tensor]) -> None:
        for i, ex in enumerate(self._ids(batch)):
            if ex in self.values:
                continue
            n = _row_length(batch, i) if self.token_keys else 0  # only per-token outputs are trimmed
            row = {
                k: (v[i, :n] if k in self.token_keys else v[i]).detach().to("cpu").contiguous().clone()
                for k, v in prepared.items()
            }
            self.values[ex] = row
            self._pending.update({f"{ex}/{k}": v for k, v in row.items()})
        if len(self._pending) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Write the values computed since the last flush as one new part (atomically)."""
        if not self._pending:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / f"part-r{self.rank}-{self._parts:05d}.safetensors"
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        save_file(self._pending, tmp)
        os.replace(tmp, final)
        self._loaded.add(final.name)
        self._parts += 1
        self._pending = {}
