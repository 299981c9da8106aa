"""Opening HF causal-LM directories: the one loader every stage uses (training, eval, quant, generation).

It lives in ``bielik.model`` (below ``train``, ``eval`` and ``quant``) so that no package has to
import a training stage to open a model. Weights are read from safetensors only and remote code is
never trusted.

:func:`check_hf_dir` is a cheap integrity check (a few header reads, no tensor data): a truncated
download or a hand-edited ``config.json`` fails in well under a second with the file's name (and line
or tensor), instead of minutes into a stage with a library's traceback that names neither.
:func:`check_config_dirs` runs it on every HF directory a stage config names; the registry calls it
before a stage starts.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from bielik.errors import BielikError

_HF_MARKERS = ("config.json", "tokenizer.json", "model.safetensors", "model.safetensors.index.json")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BielikError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from None
    except UnicodeDecodeError as exc:
        raise BielikError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def check_safetensors(path: str | Path) -> None:
    """Check one safetensors file without reading its tensors: header readable, every tensor inside the file.

    Format (https://github.com/huggingface/safetensors): 8-byte little-endian header length ``n``,
    ``n`` bytes of JSON ``{name: {dtype, shape, data_offsets: [begin, end]}}``, then the data, whose
    offsets are relative to byte ``8 + n``. Hand-written rather than ``safetensors.safe_open`` because
    safe_open's error ("incomplete metadata, file not fully covered") names neither the file nor
    the tensors that were cut off.
    """
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise BielikError(f"{path}: truncated safetensors file ({size} bytes, not even a header)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise BielikError(f"{path}: truncated or not a safetensors file (header of {n:,} bytes, file of {size:,})")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BielikError(f"{path}: damaged safetensors header (not JSON)") from None
    if not isinstance(header, dict):
        raise BielikError(f"{path}: damaged safetensors header (not a JSON object)")
    data = size - 8 - n
    cut = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2):
            raise BielikError(f"{path}: damaged safetensors header (tensor '{name}' has no data_offsets)")
        if offsets[1] > data:
            cut.append((offsets[0], name))
    if cut:
        first = min(cut)[1]
        what = f"tensor '{first}' is cut off" if len(cut) == 1 else f"{len(cut)} tensors are cut off, from '{first}'"
        raise BielikError(f"{path}: truncated safetensors file ({size:,} bytes): {what}")


def check_hf_dir(path: str | Path) -> None:
    """Check the HF files present in ``path``: ``config.json`` and ``tokenizer.json`` parse, every
    safetensors shard (from the index, or ``model.safetensors``) exists and is complete.

    Raises :class:`BielikError` naming the file and the line (JSON) or tensor (safetensors).
    """
    path = Path(path)
    config = path / "config.json"
    if config.is_file() and not isinstance(_read_json(config), dict):
        raise BielikError(f"{config}: expected a JSON object of model settings")
    index = path / "model.safetensors.index.json"
    shards: list[Path] = []
    if index.is_file():
        data = _read_json(index)
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict):
            raise BielikError(f"{index}: expected a JSON object with a 'weight_map'")
        for name in sorted(set(weight_map.values())):
            shard = path / name
            if not shard.is_file():
                tensor = next(t for t, f in weight_map.items() if f == name)
                raise BielikError(f"{shard}: missing (listed in {index.name} for tensor '{tensor}')")
            shards.append(shard)
    elif (path / "model.safetensors").is_file():
        shards.append(path / "model.safetensors")
    for shard in shards:
        check_safetensors(shard)
    tokenizer = path / "tokenizer.json"
    if tokenizer.is_file():
        _read_json(tokenizer)
        from tokenizers import Tokenizer

        try:
            Tokenizer.from_file(str(tokenizer))
        except Exception as exc:  # tokenizers raises a bare Exception for a schema mismatch
            raise BielikError(f"{tokenizer}: not a valid tokenizer ({str(exc).splitlines()[0]})") from None


def check_config_dirs(values: Any, skip: tuple[str, ...] = ("output",)) -> None:
    """:func:`check_hf_dir` on every existing HF directory named in a (dumped) stage config
    (:func:`bielik.config.config_paths`; the top-level keys in ``skip``, the stage's own output which it
    may overwrite, are not checked). A directory counts as HF when it holds one of ``config.json``,
    ``tokenizer.json``, ``model.safetensors`` or its index.
    """
    from bielik.config import config_paths

    for value in config_paths(values, skip):
        path = Path(value)
        if path.is_dir() and any((path / m).is_file() for m in _HF_MARKERS):
            check_hf_dir(path)


def load_hf_model(path: str | Path, dtype: str = "float32"):
    """An ``AutoModelForCausalLM`` from a local HF directory, SDPA attention, ``dtype`` weights.

    Raises :class:`BielikError` naming the file (and line or tensor) when the directory is not an HF
    model directory or a file in it cannot be read.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise BielikError(f"{path}: not an HF model directory (no config.json)")
    check_hf_dir(path)
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, attn_implementation="sdpa", use_safetensors=True, trust_remote_code=False
        )
    except (OSError, ValueError, KeyError, SafetensorError) as exc:  # no weights, unknown architecture, bad dtype
        raise BielikError(f"{path}: cannot load the model ({str(exc).strip().splitlines()[0]})") from None
