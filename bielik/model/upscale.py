"""``bielik model upscale``: depth up-scaling (DUS) of a decoder-only model (RECIPE §3).

SOLAR's depth up-scaling (Kim et al., "SOLAR 10.7B: Scaling Large Language Models with Simple yet
Effective Depth Up-Scaling", arXiv 2312.15166, §2.1): take a base with ``n`` layers, make two
copies, drop the last ``m`` layers of the first and the first ``m`` layers of the second, and stack
them, giving ``s = 2(n - m)`` layers::

    layer_map = [0, 1, ..., n-m-1] + [m, m+1, ..., n-1]

Bielik 11B v2 is Mistral-7B-v0.2 (n = 32) with m = 7 (50 layers, 11.17B parameters); Bielik v3
4.5B is a Qwen2.5 base with n = 36, m = 8 (56 layers). Any explicit ``layer_map`` (a list of source
layer indices, or ``"a:b"`` half-open ranges) is accepted too.

Output layer ``j`` receives a *copy* of every tensor of source layer ``layer_map[j]`` (nothing is
aliased: the copies train independently afterwards); embeddings, final norm and LM head are copied
unchanged. The config gets the new ``num_hidden_layers`` and every per-layer list (``layer_types``
of Qwen2/Mistral-style configs, any other list with one entry per layer) re-indexed by the same map,
so sliding-window and full-attention layers keep their kind. Works for any architecture whose
decoder layers are named ``<prefix>layers.<i>.`` (Llama, Mistral, Qwen2, ...), streaming tensors
shard by shard.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from bielik.artifacts import staged_dir, write_stage_record
from bielik.config import StageConfig
from bielik.errors import BielikError, ConfigError
from bielik.log import get_logger
from bielik.progress import progress

log = get_logger(__name__)

_LAYER = re.compile(r"^(.*?layers\.)(\d+)\.")


class UpscaleConfig(StageConfig):
    model: str = Field(
        "runs/pretrain/final", description="HF model directory, or a preset name (with dry_run: counts only)"
    )
    output: str = "runs/upscaled"
    m: int | None = Field(
        None, ge=0, description="DUS: drop the last m layers of copy 1 and the first m of copy 2 (s = 2(n-m))"
    )
    layer_map: list[int | str] | None = Field(
        None, description="explicit source layer per output layer; 'a:b' = layers a..b-1"
    )
    dry_run: bool = Field(False, description="only plan and count parameters (on the meta device); write nothing")
    max_shard_gb: float = Field(4.0, gt=0)
    overwrite: bool = False

    @model_validator(mode="after")
    def _one_of(self) -> UpscaleConfig:
        if (self.m is None) == (self.layer_map is None):
            raise ValueError("give exactly one of 'm' (depth up-scaling) or 'layer_map'")
        return self


def dus_layer_map(n: int, m: int) -> list[int]:
    """SOLAR DUS map: the first n-m layers, then layers m..n-1 (s = 2(n - m))."""
    if not 0 <= m < n:
        raise ConfigError(f"m must satisfy 0 <= m < n = {n} (got m = {m})")
    return list(range(n - m)) + list(range(m, n))


def parse_layer_map(spec: list[int | str], n: int) -> list[int]:
    """Expand ``[0, "2:5", 7]`` into source indices and check each is in ``[0, n)``."""
    out: list[int] = []
    for item in spec:
        if isinstance(item, int):
            out.append(item)
            continue
        a, sep, b = str(item).partition(":")
        try:
            out.extend(range(int(a), int(b)) if sep else [int(a)])
        except ValueError:
            raise ConfigError(f"layer_map entry {item!r} is neither an index nor an 'a:b' range") from None
    bad = [i for i in out if not 0 <= i < n]
    if bad:
        raise ConfigError(f"layer_map names layers {bad} but the source model has {n} layers (0..{n - 1})")
    if not out:
        raise ConfigError("layer_map is empty")
    return out


def upscaled_config_dict(config: dict[str, Any], layer_map: list[int]) -> dict[str, Any]:
    """The source ``config.json`` dict with the layer count and per-layer lists re-indexed."""
    n = config["num_hidden_layers"]
    new = dict(config)
    new["num_hidden_layers"] = len(layer_map)
    remapped = []
    for key, value in config.items():
        if isinstance(value, list) and len(value) == n and key not in ("architectures",):
            new[key] = [value[i] for i in layer_map]
            remapped.append(key)
    types = new.get("layer_types")
    if "max_window_layers" in config and isinstance(types, list) and "sliding_attention" in types:
        # Qwen2 semantics: layers >= max_window_layers use the sliding window. Keep it true when the
        # re-indexed types are still a full-then-sliding split; otherwise layer_types rules alone.
        first = types.index("sliding_attention")
        if all(t == "sliding_attention" for t in types[first:]):
            new["max_window_layers"] = first
    if remapped:
        log.info("re-indexed per-layer config fields: %s", ", ".join(remapped))
    return new


def _hf_config(d: dict[str, Any]):
    from transformers import AutoConfig

    d = {k: v for k, v in d.items() if k not in ("transformers_version",)}
    return AutoConfig.for_model(d.pop("model_type"), **d)


def _count(config) -> int:
    from bielik.model.factory import ParamCount, build_model

    return ParamCount.of(build_model(config, device="meta", seed=None)).total


def upscale(cfg: UpscaleConfig) -> dict[str, Any]:
    """Depth-up-scale ``cfg.model`` into ``cfg.output``; return (and record) the plan and counts."""
    from bielik.model.factory import build_config, human
    from bielik.model.presets import PRESETS

    path = Path(cfg.model)
    reader = None
    if path.is_dir():
        from transformers import AutoConfig

        from bielik.model.tensors import CheckpointReader

        reader = CheckpointReader(path)
        # the config object, not the raw JSON: derived per-layer fields (Qwen2's layer_types from
        # max_window_layers in older files) are made explicit before they are re-indexed
        src = AutoConfig.from_pretrained(path).to_dict()
    elif cfg.model in PRESETS:
        if not cfg.dry_run:
            raise ConfigError(
                f"'{cfg.model}' is a preset (a shape without weights): "
                "pass dry_run=true to count, or an HF model directory"
            )
        src = build_config(cfg.model).to_dict()
    else:
        raise BielikError(f"model {cfg.model} is neither an HF model directory nor a preset name")
    if "num_hidden_layers" not in src:
        raise BielikError(f"{cfg.model}: config has no num_hidden_layers (not a decoder-only LM?)")
    n = int(src["num_hidden_layers"])
    layer_map = dus_layer_map(n, cfg.m) if cfg.m is not None else parse_layer_map(cfg.layer_map or [], n)
    new_config = _hf_config(upscaled_config_dict(src, layer_map))
    params_in, params_out = _count(_hf_config(dict(src))), _count(new_config)
    summary = {
        "source": cfg.model,
        "source_layers": n,
        "output_layers": len(layer_map),
        "m": cfg.m,
        "layer_map": layer_map,
        "parameters_source": params_in,
        "parameters_output": params_out,
        "parameters_source_human": human(params_in),
        "parameters_output_human": human(params_out),
    }
    log.info(
        "upscale %s: %d -> %d layers, %s -> %s parameters",
        cfg.model,
        n,
        len(layer_map),
        human(params_in),
        human(params_out),
    )
    if cfg.dry_run:
        return summary

    assert reader is not None
    layered: dict[int, list[tuple[str, str]]] = {}
    prefix = None
    for name in reader.keys():
        match = _LAYER.match(name)
        if match:
            prefix = prefix or match.group(1)
            if match.group(1) != prefix:
                raise BielikError(
                    f"{cfg.model}: tensor {name} belongs to a second layer stack ({match.group(1)}); "
                    "not a plain decoder"
                )
            layered.setdefault(int(match.group(2)), []).append((name, name[match.end() :]))
    if sorted(layered) != list(range(n)):
        raise BielikError(f"{cfg.model}: weights hold layers {sorted(layered)[:5]}... but config.json says {n} layers")

    from bielik.model.tensors import ShardWriter, copy_side_files

    with staged_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
        writer = ShardWriter(tmp, int(cfg.max_shard_gb * 2**30))
        for name in reader.keys():
            if not _LAYER.match(name):
                writer.add(name, reader.get(name))
        with progress("upscale", total=len(layer_map), unit="layers") as bar:
            for j, i in enumerate(layer_map):
                for full, rest in layered[i]:
                    writer.add(f"{prefix}{j}.{rest}", reader.get(full))
                bar.advance()
        files = writer.close()
        new_config.save_pretrained(tmp)
        copy_side_files(path, tmp)
        summary["files"] = files
        summary["output"] = cfg.output
        write_stage_record(tmp, "model.upscale", cfg, inputs={"model": cfg.model}, metrics=summary)
    log.info("wrote %d-layer model to %s", len(layer_map), cfg.output)
    return summary


def layer_ranges(layer_map: list[int]) -> str:
    """Compact form of a layer map: ``[0, 1, 2, 1, 2, 3]`` -> ``"0:3,1:4"`` (half-open runs)."""
    runs: list[list[int]] = []
    for i in layer_map:
        if runs and i == runs[-1][1]:
            runs[-1][1] += 1
        else:
            runs.append([i, i + 1])
    return ",".join(f"{a}:{b}" if b - a > 1 else str(a) for a, b in runs)


def format_summary(s: dict[str, Any]) -> str:
    return (
        f"{s['source']}: {s['source_layers']} -> {s['output_layers']} layers (map {layer_ranges(s['layer_map'])}), "
        f"parameters {s['parameters_source_human']} -> {s['parameters_output_human']} "
        f"({s['parameters_source']:,} -> {s['parameters_output']:,})"
        + (f"; written to {s['output']}" if s.get("output") else "")
    )
