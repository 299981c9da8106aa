"""Training checkpoints: atomic, resumable, and readable by transformers.

Layout of ``<output>/checkpoints``::

    step-00000020/
        config.json, model.safetensors   the model, an HF directory (from_pretrained opens it)
        optimizer.pt                     full optimizer state (tensors only: loads with weights_only=True)
        rng.safetensors                  torch RNG states of every rank (CPU and accelerator)
        state.json                       step, data cursor, counters, python RNG, config digest
    latest                               name of the newest complete checkpoint, written last

A checkpoint is written to ``.step-N.tmp-*``, flushed, then renamed; ``latest`` is replaced
atomically only after that, and older checkpoints beyond ``keep_last`` are removed last. A crash at
any point leaves the previous checkpoint and ``latest`` intact. State is gathered as *full*
(unsharded) state dicts with ``torch.distributed.checkpoint.state_dict``, so a run can resume on a
different number of processes or switch between DDP and FSDP2.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from bielik.artifacts import _fsync_dir, atomic_write_text, read_json, write_json
from bielik.errors import BielikError
from bielik.log import get_logger
from bielik.train.distributed import Dist, barrier

log = get_logger(__name__)

_STEP_RE = re.compile(r"^step-(\d+)$")
LATEST = "latest"


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def list_checkpoints(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _STEP_RE.match(p.name)]
    return sorted(found, key=lambda p: int(_STEP_RE.match(p.name).group(1)))


def latest_checkpoint(root: Path) -> Path | None:
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    return path if (path / "state.json").is_file() else None


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _strip(sd: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in sd.items()}


def save_checkpoint(
    root: Path,
    step: int,
    module: nn.Module,
    hf_model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    d: Dist,
    keep_last: int,
    prefix: str = "model.",
) -> Path:
    """Collective: every rank calls it; rank 0 writes. ``module`` is the (possibly wrapped) root."""
    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_sd = get_model_state_dict(module, options=opts)
    optim_sd = get_optimizer_state_dict(module, optimizer, options=opts)
    rng = _rng_state(d.device)
    if d.enabled:
        gathered: list[Any] = [None] * d.world_size
        torch.distributed.all_gather_object(gathered, rng)
    else:
        gathered = [rng]
    final = root / checkpoint_name(step)
    if d.is_main:
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{final.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir()
            sd = {k: v.contiguous() for k, v in _strip(model_sd, prefix).items()}
            hf_model.save_pretrained(tmp, state_dict=sd, safe_serialization=True)
            torch.save(optim_sd, tmp / "optimizer.pt")
            save_file({f"rank{r}.{k}": v.contiguous() for r, s in enumerate(gathered) for k, v in s.items()}, tmp / "rng.safetensors")
            write_json(tmp / "state.json", {**state, "step": step, "world_size": d.world_size, "python_rng": random.getstate()})
            for f in tmp.iterdir():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            _fsync_dir(root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        atomic_write_text(root / LATEST, final.name + "\n")
        keep = {p.name for p in list_checkpoints(root)[-keep_last:]} | {final.name}
        for p in list_checkpoints(root):
            if p.name not in keep:
                shutil.rmtree(p, ignore_errors=True)
        log.info("saved checkpoint %s", final)
    barrier(d)
    return final


def load_checkpoint(path: Path, module: nn.Module, optimizer: torch.optim.Optimizer, d: Dist, prefix: str = "model.") -> dict[str, Any]:
    """Restore model, optimizer and RNG states in place; return the saved trainer state."""
    if not (path / "state.json").is_file():
        raise BielikError(f"{path} is not a complete bielik checkpoint (no state.json)")
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise BielikError(f"{path} has no model.safetensors")
    model_sd = {prefix + k: v for k, v in load_file(weights).items()}
    expected = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True)).keys()
    for key in expected:  # tied weights are stored once by save_pretrained
        if key not in model_sd and key.endswith("lm_head.weight"):
            model_sd[key] = model_sd[key.replace("lm_head.weight", "model.embed_tokens.weight")]
    opts = StateDictOptions(full_state_dict=True, strict=True)
    set_model_state_dict(module, model_sd, options=opts)
    optim_sd = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    set_optimizer_state_dict(module, optimizer, optim_sd, options=StateDictOptions(full_state_dict=True))
    state = read_json(path / "state.json")
    rng = load_file(path / "rng.safetensors")
    r = d.rank if d.world_size == state.get("world_size", 1) else 0
    if f"rank{r}.cpu" in rng:
        torch.set_rng_state(rng[f"rank{r}.cpu"])
    if d.device.type == "cuda" and f"rank{r}.cuda" in rng:
        torch.cuda.set_rng_state(rng[f"rank{r}.cuda"], d.device)
    py = state.pop("python_rng", None)
    if py is not None:
        random.setstate((py[0], tuple(py[1]), py[2]))
    log.info("resumed from %s (step %d)", path, state["step"])
    return state
