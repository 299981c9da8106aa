"""Tensor-level access to HF checkpoints: read single-file or sharded safetensors lazily, write shards.

Model surgery (depth up-scaling, merging) works tensor by tensor so that a 7B checkpoint never has
to be materialised twice in memory: :class:`CheckpointReader` opens ``model.safetensors`` or the
shards listed in ``model.safetensors.index.json`` with ``safetensors.safe_open`` (memory-mapped),
and :class:`ShardWriter` streams tensors into ``model-0000k-of-0000n.safetensors`` shards of at most
``max_shard_bytes`` plus the index file that ``from_pretrained`` follows. (``huggingface_hub``'s
``split_torch_state_dict_into_shards`` needs the whole state dict in memory; this does not.)
Pickled ``.bin`` checkpoints are refused: loading them would execute arbitrary code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from bielik.artifacts import write_json
from bielik.errors import BielikError

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
# Files of an HF model directory that are not weights and travel with it unchanged.
SIDE_FILES = (
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "chat_template.jinja",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
)


class CheckpointReader:
    """Lazy, read-only view of the tensors of an HF model directory (safetensors only)."""

    def __init__(self, path: str | Path):
        from safetensors import safe_open

        self.path = Path(path)
        if not (self.path / "config.json").is_file():
            raise BielikError(f"model {self.path} is not an HF model directory (no config.json)")
        index = self.path / SAFE_INDEX
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (json.JSONDecodeError, KeyError) as exc:
                raise BielikError(f"{index}: not a safetensors index ({exc})") from None
        elif (self.path / SAFE_WEIGHTS).is_file():
            weight_map = None
        else:
            pickles = sorted(p.name for p in self.path.glob("*.bin"))
            hint = f" (found {', '.join(pickles)}: convert them to safetensors first)" if pickles else ""
            raise BielikError(f"model {self.path} has no {SAFE_WEIGHTS} or {SAFE_INDEX}{hint}")
        self._handles = {}
        files = sorted(set(weight_map.values())) if weight_map else [SAFE_WEIGHTS]
        for f in files:
            if not (self.path / f).is_file():
                raise BielikError(f"{self.path / SAFE_INDEX} names shard {f}, which does not exist")
            self._handles[f] = safe_open(str(self.path / f), framework="pt")
        if weight_map is None:
            weight_map = dict.fromkeys(self._handles[SAFE_WEIGHTS].keys(), SAFE_WEIGHTS)
        self.weight_map: dict[str, str] = weight_map

    def keys(self) -> list[str]:
        return list(self.weight_map)

    def __contains__(self, name: str) -> bool:
        return name in self.weight_map

    def get(self, name: str) -> torch.Tensor:
        if name not in self.weight_map:
            raise BielikError(f"tensor {name} is not in model {self.path}")
        return self._handles[self.weight_map[name]].get_tensor(name)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._handles[self.weight_map[name]].get_slice(name).get_shape())

    def config(self) -> dict:
        return json.loads((self.path / "config.json").read_text(encoding="utf-8"))


class ShardWriter:
    """Write tensors into numbered safetensors shards (each tensor stored by value) and an index."""

    def __init__(self, out_dir: str | Path, max_shard_bytes: int = 4 << 30):
        self.out_dir = Path(out_dir)
        self.max_shard_bytes = max_shard_bytes
        self._pending: dict[str, torch.Tensor] = {}
        self._pending_bytes = 0
        self._shards: list[tuple[str, list[str]]] = []
        self.total_bytes = 0
        self.names: set[str] = set()

    def add(self, name: str, tensor: torch.Tensor) -> None:
        if name in self.names:
            raise BielikError(f"tensor {name} written twice")
        size = tensor.numel() * tensor.element_size()
        if self._pending and self._pending_bytes + size > self.max_shard_bytes:
            self._flush()
        # contiguous() alone may return the same storage; clone() guarantees an independent copy
        self._pending[name] = tensor.detach().to("cpu").contiguous().clone()
        self._pending_bytes += size
        self.total_bytes += size
        self.names.add(name)

    def _flush(self) -> None:
        from safetensors.torch import save_file

        tmp_name = f".shard-{len(self._shards):05d}.safetensors"
        save_file(self._pending, str(self.out_dir / tmp_name), metadata={"format": "pt"})
        self._shards.append((tmp_name, list(self._pending)))
        self._pending, self._pending_bytes = {}, 0

    def close(self) -> list[str]:
        """Flush, give shards their final names and write the index (if more than one shard)."""
        if self._pending or not self._shards:
            self._flush()
        n = len(self._shards)
        if n == 1:
            os.replace(self.out_dir / self._shards[0][0], self.out_dir / SAFE_WEIGHTS)
            return [SAFE_WEIGHTS]
        weight_map, files = {}, []
        for i, (tmp_name, names) in enumerate(self._shards, 1):
            final = f"model-{i:05d}-of-{n:05d}.safetensors"
            os.replace(self.out_dir / tmp_name, self.out_dir / final)
            files.append(final)
            weight_map.update(dict.fromkeys(names, final))
        write_json(
            self.out_dir / SAFE_INDEX,
            {"metadata": {"total_size": self.total_bytes}, "weight_map": dict(sorted(weight_map.items()))},
        )
        return files


def copy_side_files(src: str | Path, dst: str | Path, skip: tuple[str, ...] = ()) -> list[str]:
    """Copy tokenizer and generation files of an HF model directory (not weights, not config)."""
    import shutil

    copied = []
    for name in SIDE_FILES:
        if name in skip:
            continue
        f = Path(src) / name
        if f.is_file():
            shutil.copy2(f, Path(dst) / name)
            copied.append(name)
    return copied
