"""Training checkpoints: sharded (torch.distributed.checkpoint), atomic, resumable on another world size.

Layout of ``<output>/checkpoints``::

    step-00000020/
        dcp/.metadata, dcp/__<rank>_0.distcp   model + AdamW state, written by *every* rank (its own shard)
        config.json, model.safetensors          optional HF export of the weights (``checkpoint.hf_export``)
        rng.safetensors                         torch RNG states of every rank (CPU and accelerator), a few KB
        state.json                              step, data cursor, counters, python RNG, world size, format
    latest                                      name of the newest complete checkpoint, written last

**Sharded state.** ``dcp.save`` gets the *sharded* state dicts of
:func:`torch.distributed.checkpoint.state_dict.get_model_state_dict` / ``get_optimizer_state_dict``
(``full_state_dict=False``): under FSDP2 each rank writes only its DTensor shards of the weights and
the Adam moments, so no rank ever holds the full model or optimizer (for an 11B model that is
~130 GB of fp32 weights and moments that the old layout gathered onto rank 0). Under DDP and on one
process the tensors are replicated and DCP's planner writes each once. Keys are parameter names, so
``dcp.load`` reshards onto any world size and either strategy (FSDP2 <-> DDP <-> one process).

**Asynchronous save** (``checkpoint.async_save``, off by default): ``dcp.async_save`` copies the
state to CPU memory synchronously (a consistent snapshot; training may then change the weights) and
writes the files in a background thread over a dedicated gloo process group, so its collectives never
interleave with the training's. The checkpoint is finalised (renamed, ``latest`` moved) only once the
write has finished on every rank: at the next save, or when :meth:`Checkpointer.wait` is called (the
engine calls it at the end of ``fit``). On CPU the background write competes with training for the
same cores, hence the default.

**HF export.** A checkpoint's ``model.safetensors`` is a *full* copy of the weights gathered on rank 0
(``full_state_dict=True, cpu_offload=True``: the whole model in rank 0's CPU memory, and one
all-gather of every parameter). It makes every checkpoint loadable with ``from_pretrained`` and costs
that gather; for large models switch it off (``checkpoint.hf_export=false``) and export only the final
model (``<output>/final``, always a separate step) or convert a checkpoint later.

**Atomicity.** Everything is written to ``.step-N.tmp``; rank 0 renames it to ``step-N`` only after all
ranks' shards and DCP's ``.metadata`` (written last by DCP's coordinator) exist, then replaces
``latest`` atomically and removes checkpoints beyond ``keep_last``. A crash (or ``kill -9``) at any
point leaves the previous checkpoint and ``latest`` intact; stale ``.step-*.tmp*`` directories are
removed by the next save.

**RNG on resume.** Same world size: every rank gets back its own RNG state (exact resume). Another
world size: rank r < saved world size takes saved rank r's state, and ranks beyond those saved are
seeded deterministically from saved rank 0's state and their rank (distinct per rank, reproducible).
The data cursor is global (:mod:`bielik.train.batches`), so with the same global batch
(``micro_batch_size x grad_accum x world``) the same rows are trained in the same order.

**Back-compatibility.** Checkpoints written before the sharded layout (``model.safetensors`` +
``optimizer.pt``, full state dicts, including ``tests/train/fixtures/legacy_checkpoint``) still load.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import re
import shutil
import warnings
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import torch
import torch.distributed as tdist
import torch.distributed.checkpoint as dcp
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributed.checkpoint.api import CheckpointException
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


@contextlib.contextmanager
def _one_process_ok():
    """DCP warns on every single-process save/load that it assumes one process: that is the intent here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


_STEP_RE = re.compile(r"^step-(\d+)$")
LATEST = "latest"
DCP_DIR = "dcp"
FORMAT = "dcp-1"


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
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in sd.items()}


def full_model_state(module: nn.Module, prefix: str = "model.") -> dict[str, torch.Tensor]:
    """The full (unsharded) weights on CPU, names without ``prefix`` (collective; rank 0 gets the tensors).

    Under FSDP2 this all-gathers every parameter and holds the whole model in rank 0's CPU memory:
    the cost of an HF export, paid only where one is asked for.
    """
    sd = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.contiguous() for k, v in _strip(sd, prefix).items()}


def _sharded_state(module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """This rank's shards of the model and optimizer state (DTensors under FSDP2), keyed by parameter name."""
    return {"model": get_model_state_dict(module), "optim": get_optimizer_state_dict(module, optimizer)}


def _reraise(e: CheckpointException, rank: int) -> BaseException:
    """DCP wraps every rank's error in one CheckpointException; surface this rank's own (else the first)."""
    failures = e.failures
    exc = failures.get(rank, next(iter(failures.values()), (None, None)))[0] if failures else None
    return exc if isinstance(exc, BaseException) else e


def _fsync_tree(path: Path) -> None:
    for f in path.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    for sub in [path, *(p for p in path.rglob("*") if p.is_dir())]:
        _fsync_dir(sub)


class Checkpointer:
    """Writes and finalises checkpoints under ``root``; holds the one save that may still be in flight.

    Collective: every rank calls :meth:`save` and :meth:`wait` at the same points.
    """

    def __init__(self, root: Path, d: Dist, keep_last: int, hf_export: bool = True, async_save: bool = False):
        self.root, self.d, self.keep_last = Path(root), d, keep_last
        self.hf_export, self.async_save = hf_export, async_save
        self._pending: tuple[Future, Path, Path] | None = None
        # async writes run collectives from a background thread: they get their own (gloo) group
        self._group = tdist.new_group(backend="gloo") if async_save and d.enabled else None

    # --- saving --------------------------------------------------------------------------------
    def save(
        self,
        step: int,
        module: nn.Module,
        hf_model: nn.Module,
        optimizer: torch.optim.Optimizer,
        state: dict[str, Any],
        prefix: str = "model.",
    ) -> Path:
        """Write checkpoint ``step`` (collective); returns its final path (complete once :meth:`wait` returns)."""
        self.wait()
        d = self.d
        final = self.root / checkpoint_name(step)
        tmp = self.root / f".{final.name}.tmp"
        if d.is_main:
            self.root.mkdir(parents=True, exist_ok=True)
            for stale in self.root.glob(".step-*.tmp*"):  # left by a crash or kill -9
                shutil.rmtree(stale, ignore_errors=True)
            tmp.mkdir()
        barrier(d)
        try:
            hf_sd = full_model_state(module, prefix) if self.hf_export else None
            rng = _rng_state(d.device)
            gathered: list[Any] = [None] * d.world_size
            if d.enabled:
                tdist.all_gather_object(gathered, rng)
            else:
                gathered = [rng]
            if d.is_main:
                if hf_sd is not None:
                    hf_model.save_pretrained(tmp, state_dict=hf_sd, safe_serialization=True)
                rng_flat = {f"rank{r}.{k}": v.contiguous() for r, s in enumerate(gathered) for k, v in s.items()}
                save_file(rng_flat, tmp / "rng.safetensors")
                write_json(
                    tmp / "state.json",
                    {
                        **state,
                        "step": step,
                        "world_size": d.world_size,
                        "format": FORMAT,
                        "python_rng": random.getstate(),
                    },
                )
            del hf_sd
            sharded = _sharded_state(module, optimizer)
            if self.async_save:
                fut = dcp.async_save(
                    sharded, checkpoint_id=tmp / DCP_DIR, process_group=self._group, no_dist=not d.enabled
                )
                self._pending = (fut, tmp, final)
                log.info("checkpoint %s: writing in the background", final.name)
                return final
            with _one_process_ok():
                dcp.save(sharded, checkpoint_id=tmp / DCP_DIR, no_dist=not d.enabled)
        except CheckpointException as e:
            if d.is_main:
                shutil.rmtree(tmp, ignore_errors=True)
            raise _reraise(e, d.rank) from e
        except BaseException:
            if d.is_main:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._finalise(tmp, final)
        return final

    def wait(self) -> Path | None:
        """Finish the save in flight, if any (collective), and move ``latest`` to it."""
        if self._pending is None:
            return None
        fut, tmp, final = self._pending
        self._pending = None
        try:
            fut.result()  # DCP's coordinator writes .metadata only after every rank's shards are written
        except BaseException as e:
            if self.d.is_main:
                shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(e, CheckpointException):
                raise _reraise(e, self.d.rank) from e
            raise
        self._finalise(tmp, final)
        return final

    def _finalise(self, tmp: Path, final: Path) -> None:
        """Rank 0: rename the complete temporary directory, then move ``latest``, then prune."""
        if self.d.is_main:
            try:
                if not (tmp / DCP_DIR / ".metadata").is_file():
                    raise BielikError(f"{tmp}: torch.distributed.checkpoint wrote no .metadata (incomplete save)")
                _fsync_tree(tmp)
                if final.exists():
                    shutil.rmtree(final)
                os.replace(tmp, final)
                _fsync_dir(self.root)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            atomic_write_text(self.root / LATEST, final.name + "\n")
            keep = {p.name for p in list_checkpoints(self.root)[-self.keep_last :]} | {final.name}
            for p in list_checkpoints(self.root):
                if p.name not in keep:
                    shutil.rmtree(p, ignore_errors=True)
            log.info("saved checkpoint %s", final)
        barrier(self.d)


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
    hf_export: bool = True,
) -> Path:
    """One synchronous save (collective): :meth:`Checkpointer.save` without a save in flight."""
    return Checkpointer(root, d, keep_last, hf_export=hf_export).save(step, module, hf_model, optimizer, state, prefix)


# --- loading ------------------------------------------------------------------------------------
def load_checkpoint(
    path: Path, module: nn.Module, optimizer: torch.optim.Optimizer, d: Dist, prefix: str = "model."
) -> dict[str, Any]:
    """Restore model, optimizer and RNG states in place (collective); return the saved trainer state.

    Reads the sharded layout (``dcp/``) onto the current world size, or a checkpoint written before it
    (``model.safetensors`` + ``optimizer.pt``, full state dicts).
    """
    path = Path(path)
    if not (path / "state.json").is_file():
        raise BielikError(f"{path} is not a complete bielik checkpoint (no state.json)")
    if (path / DCP_DIR / ".metadata").is_file():
        _load_sharded(path, module, optimizer, d)
    elif (path / "model.safetensors").is_file() and (path / "optimizer.pt").is_file():
        _load_full(path, module, optimizer, prefix)
    else:
        raise BielikError(
            f"{path}: expected {DCP_DIR}/.metadata (sharded checkpoint) or model.safetensors + "
            "optimizer.pt (full-state checkpoint); found neither"
        )
    state = read_json(path / "state.json")
    _restore_rng(path, d, int(state.get("world_size", 1)), int(state["step"]))
    py = state.pop("python_rng", None)
    if py is not None:
        random.setstate((py[0], tuple(py[1]), py[2]))
    log.info("resumed from %s (step %d)", path, state["step"])
    return state


def read_full_state(path: Path) -> dict[str, Any]:
    """A sharded checkpoint's whole state as plain CPU tensors, ``{"model": ..., "optim": ...}`` (one process).

    For inspection and conversion (e.g. comparing two runs' Adam moments); holds everything in memory.
    """
    import tempfile

    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    src = Path(path) / DCP_DIR
    if not (src / ".metadata").is_file():
        raise BielikError(f"{path}: no {DCP_DIR}/.metadata (not a sharded bielik checkpoint)")
    with tempfile.TemporaryDirectory() as tmp:
        with _one_process_ok():
            dcp_to_torch_save(src, Path(tmp) / "state.pt")
        return torch.load(Path(tmp) / "state.pt", map_location="cpu", weights_only=True)


def _load_sharded(path: Path, module: nn.Module, optimizer: torch.optim.Optimizer, d: Dist) -> None:
    """``dcp.load`` into this world size's sharded state dicts (DCP reshards), then set them."""
    sd = _sharded_state(module, optimizer)
    try:
        with _one_process_ok():
            dcp.load(sd, checkpoint_id=path / DCP_DIR, no_dist=not d.enabled)
    except (Exception, CheckpointException) as e:  # CheckpointException lists every rank's error
        raise BielikError(
            f"{path / DCP_DIR}: cannot load the sharded checkpoint into this model/optimizer "
            f"(a different architecture or a partial checkpoint?): {e}"
        ) from e
    set_model_state_dict(module, sd["model"], options=StateDictOptions(strict=True))
    set_optimizer_state_dict(module, optimizer, sd["optim"])


def _load_full(path: Path, module: nn.Module, optimizer: torch.optim.Optimizer, prefix: str) -> None:
    """The layout before sharded checkpoints: the full weights (HF names) and ``torch.save``'d optimizer."""
    model_sd = {prefix + k: v for k, v in load_file(path / "model.safetensors").items()}
    expected = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True)).keys()
    for key in expected:  # tied weights are stored once by save_pretrained
        if key not in model_sd and key.endswith("lm_head.weight"):
            model_sd[key] = model_sd[key.replace("lm_head.weight", "model.embed_tokens.weight")]
    set_model_state_dict(module, model_sd, options=StateDictOptions(full_state_dict=True, strict=True))
    optim_sd = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    set_optimizer_state_dict(module, optimizer, optim_sd, options=StateDictOptions(full_state_dict=True))


def _derived_seed(state: torch.Tensor, rank: int, step: int) -> int:
    h = hashlib.sha256(state.numpy().tobytes() + f"/rank{rank}/step{step}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def _restore_rng(path: Path, d: Dist, saved_world: int, step: int) -> None:
    """Same world size: each rank's own state. Otherwise saved rank r for r < saved world, a derived seed beyond."""
    rng = load_file(path / "rng.safetensors")
    r = d.rank
    if r < saved_world and f"rank{r}.cpu" in rng:
        torch.set_rng_state(rng[f"rank{r}.cpu"])
        if d.device.type == "cuda" and f"rank{r}.cuda" in rng:
            torch.cuda.set_rng_state(rng[f"rank{r}.cuda"], d.device)
        return
    seed = _derived_seed(rng["rank0.cpu"], r, step)
    torch.manual_seed(seed)  # seeds the accelerators' generators too
    log.info(
        "rank %d: not in the checkpoint's %d ranks; RNG seeded from rank 0's state (seed %d)", r, saved_world, seed
    )
