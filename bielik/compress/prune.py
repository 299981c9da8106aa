"""``bielik compress prune``: slice an HF checkpoint to a smaller shape (Minitron structured pruning).

Given the importance file (``bielik compress importance``) and a target shape, every tensor is
sliced consistently and streamed from the source safetensors into the output (a 7B model is never
held twice in memory; :mod:`bielik.model.tensors`):

* **depth** — keep ``layers`` decoder layers: those with the highest Block Influence (``depth:
  block_influence``, the report's criterion) or the first ones (``depth: last`` drops the last
  layers: the baseline it is compared with), or drop an explicit ``drop_layers`` list. Kept layers
  are renumbered in order; per-layer config lists (``layer_types``) follow them.
* **hidden** — one set of channels for the whole residual stream (its importance summed over every
  norm): columns of the embedding, the LM head (tied or not) and every q/k/v/gate/up projection;
  rows of o_proj and down_proj; entries of every RMSNorm. The RMS is then taken over the kept
  channels only — the unavoidable change that distillation repairs.
* **FFN** — per layer, the top ``intermediate_size`` neurons: rows of gate/up, columns of down.
* **heads** — per layer. With grouped-query attention a KV head and the query heads that read it
  form a group: ``num_key_value_heads`` keeps the groups with the largest summed head importance
  (query heads go with their group), then ``num_attention_heads`` keeps the same number of query
  heads in every kept group (the most important ones), so q/k/v/o shapes stay valid for HF's
  ``repeat_kv``. q/k/v biases (Qwen2, Llama ``attention_bias``) are sliced with their rows.

Kept indices are always in their original order, so keeping 100% of every axis copies every tensor
unchanged and reproduces the original logits exactly (tests/compress/test_prune.py). The head
dimension never changes and is written explicitly to ``config.json`` (it no longer equals
hidden/heads). The output is an HF directory transformers opens, with the source's tokenizer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from bielik.artifacts import staged_dir, write_stage_record
from bielik.compress.shape import Shape, check_target, count_params
from bielik.config import StageConfig
from bielik.errors import BielikError, ConfigError
from bielik.log import get_logger
from bielik.progress import progress

log = get_logger(__name__)
_LAYER = re.compile(r"^(.*?layers\.)(\d+)\.(.+)$")


class PruneConfig(StageConfig):
    model: str = Field("runs/pretrain/final", description="HF model directory to prune")
    importance: str | None = Field(
        None, description="importance dir/file from `bielik compress importance` (needed unless only depth=last)"
    )
    output: str = "runs/compress/pruned"
    layers: int | None = Field(None, ge=1, description="decoder layers to keep (null: all)")
    depth: Literal["block_influence", "last"] = Field(
        "block_influence", description="which layers go: lowest BI, or the last ones"
    )
    drop_layers: list[int] | None = Field(None, description="explicit source layers to drop (instead of `layers`)")
    hidden_size: int | None = Field(None, ge=1, description="hidden channels to keep (null: all)")
    intermediate_size: int | None = Field(None, ge=1, description="FFN neurons per layer to keep (null: all)")
    num_attention_heads: int | None = Field(
        None, ge=1, description="query heads to keep (null: all, or group size x kv heads)"
    )
    num_key_value_heads: int | None = Field(None, ge=1, description="KV heads (GQA groups) to keep (null: all)")
    max_shard_gb: float = Field(4.0, gt=0)
    overwrite: bool = False


@dataclass
class Selection:
    """What survives: kept source layers, and per axis the kept indices (``None`` = all, unchanged)."""

    layers: list[int]
    hidden: torch.Tensor | None
    ffn: dict[int, torch.Tensor | None]
    q_heads: dict[int, list[int] | None]
    kv_heads: dict[int, list[int] | None]


def top_indices(scores: torch.Tensor, k: int) -> torch.Tensor | None:
    """The ``k`` highest-scoring positions in ascending order; ``None`` when all are kept."""
    if k >= len(scores):
        return None
    return scores.double().topk(k).indices.sort().values


def select_layers(bi: torch.Tensor | None, n: int, keep: int, method: str) -> list[int]:
    if keep >= n:
        return list(range(n))
    if method == "last":
        return list(range(keep))
    if bi is None:
        raise ConfigError("depth=block_influence needs an importance file (set importance=DIR or depth=last)")
    return sorted(bi.double().topk(keep).indices.tolist())


def select_heads(
    scores: torch.Tensor, n_kv: int, keep_kv: int, keep_q: int
) -> tuple[list[int] | None, list[int] | None]:
    """GQA-consistent head selection from per-query-head ``scores`` (n_heads,).

    Returns (query heads, KV heads) to keep, both ascending and grouped: the kept query heads of
    kept group j come together, ``keep_q // keep_kv`` per group. ``(None, None)`` keeps everything.
    """
    n_q = len(scores)
    g = n_q // n_kv
    if keep_kv == n_kv and keep_q == n_q:
        return None, None
    groups = scores.double().view(n_kv, g)
    kv = sorted(groups.sum(1).topk(keep_kv).indices.tolist())
    per = keep_q // keep_kv
    q = [j * g + h for j in kv for h in sorted(groups[j].topk(per).indices.tolist())]
    return q, kv


def target_shape(src: Shape, cfg: PruneConfig) -> Shape:
    heads, kv = cfg.num_attention_heads, cfg.num_key_value_heads
    if heads is not None and kv is None:
        kv = heads if src.kv_heads == src.heads else src.kv_heads  # MHA stays MHA; GQA keeps its groups
    elif kv is not None and heads is None:
        heads = kv * (src.heads // src.kv_heads)
    layers = cfg.layers
    if cfg.drop_layers is not None:
        if cfg.layers is not None:
            raise ConfigError("give either layers (how many to keep) or drop_layers (which to drop), not both")
        bad = [i for i in cfg.drop_layers if not 0 <= i < src.layers]
        if bad or len(set(cfg.drop_layers)) >= src.layers:
            raise ConfigError(
                f"drop_layers={cfg.drop_layers}: indices must be distinct, in 0..{src.layers - 1}, and leave a layer"
            )
        layers = src.layers - len(set(cfg.drop_layers))
    dst = src.with_(layers=layers, hidden=cfg.hidden_size, ffn=cfg.intermediate_size, heads=heads, kv_heads=kv)
    check_target(src, dst)
    return dst


def make_selection(src: Shape, dst: Shape, imp, depth: str, drop_layers: list[int] | None) -> Selection:
    """Indices to keep on every axis, from the importance scores (``imp`` may be None if no width axis shrinks)."""
    need = [a for a in ("hidden", "ffn", "heads", "kv_heads") if getattr(dst, a) < getattr(src, a)]
    if need and imp is None:
        raise ConfigError(f"pruning {', '.join(need)} needs an importance file (importance=DIR)")
    if imp is not None and (len(imp.block_influence), len(imp.hidden), len(imp.ffn[0]), len(imp.heads[0])) != (
        src.layers,
        src.hidden,
        src.ffn,
        src.heads,
    ):
        raise BielikError(
            f"importance file ({imp.meta.get('model', '?')}) was computed for another shape than this model's"
        )
    if drop_layers is not None:
        layers = [i for i in range(src.layers) if i not in set(drop_layers)]
    else:
        layers = select_layers(imp.block_influence if imp is not None else None, src.layers, dst.layers, depth)
    sel = Selection(layers, top_indices(imp.hidden, dst.hidden) if imp is not None else None, {}, {}, {})
    for i in layers:
        sel.ffn[i] = top_indices(imp.ffn[i], dst.ffn) if imp is not None else None
        sel.q_heads[i], sel.kv_heads[i] = (
            select_heads(imp.heads[i], src.kv_heads, dst.kv_heads, dst.heads) if imp is not None else (None, None)
        )
    return sel


def _take(t: torch.Tensor, dim: int, idx: torch.Tensor | None) -> torch.Tensor:
    return t if idx is None else t.index_select(dim, idx)


def _head_rows(heads: list[int] | None, d: int) -> torch.Tensor | None:
    if heads is None:
        return None
    return (torch.tensor(heads)[:, None] * d + torch.arange(d)[None, :]).reshape(-1)


def slice_layer_tensor(rest: str, t: torch.Tensor, sel: Selection, i: int, d: int) -> torch.Tensor:
    """Slice tensor ``layers.<i>.<rest>`` of a kept source layer ``i``."""
    hid, ffn = sel.hidden, sel.ffn[i]
    q, kv = _head_rows(sel.q_heads[i], d), _head_rows(sel.kv_heads[i], d)
    m = re.fullmatch(
        r"(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj|input_layernorm|post_attention_layernorm)\.(weight|bias)",
        rest,
    )
    if m is None:
        raise BielikError(f"cannot prune tensor layers.{i}.{rest}: not a Llama/Mistral/Qwen2 decoder tensor")
    part, kind = m.groups()
    rows, cols = {
        "self_attn.q_proj": (q, hid),
        "self_attn.k_proj": (kv, hid),
        "self_attn.v_proj": (kv, hid),
        "self_attn.o_proj": (hid, q),
        "mlp.gate_proj": (ffn, hid),
        "mlp.up_proj": (ffn, hid),
        "mlp.down_proj": (hid, ffn),
        "input_layernorm": (hid, None),
        "post_attention_layernorm": (hid, None),
    }[part]
    t = _take(t, 0, rows)
    return _take(t, 1, cols) if kind == "weight" and t.dim() == 2 else t


def slice_global_tensor(name: str, t: torch.Tensor, sel: Selection) -> torch.Tensor:
    if name.endswith(("embed_tokens.weight", "lm_head.weight")):
        return _take(t, 1, sel.hidden)
    if name.endswith("norm.weight"):
        return _take(t, 0, sel.hidden)
    raise BielikError(f"cannot prune tensor {name}: not a Llama/Mistral/Qwen2 tensor")


def pruned_config(path: Path, dst: Shape, layers: list[int]):
    """The source config with the target shape and per-layer lists re-indexed by the kept layers."""
    from transformers import AutoConfig

    from bielik.model.upscale import upscaled_config_dict

    d = upscaled_config_dict(AutoConfig.from_pretrained(path).to_dict(), layers)
    d.update(dst.config_fields())
    d.pop("transformers_version", None)
    return AutoConfig.for_model(d.pop("model_type"), **d)


def write_pruned(src_dir: Path, out: Path, sel: Selection, shape: Shape, max_shard_bytes: int) -> tuple[list[str], int]:
    """Stream every tensor of ``src_dir`` through its slice into shards in ``out``; return (files, parameters written).

    A tied model's stored ``lm_head.weight`` (some writers keep it) is dropped: transformers ties it.
    """
    from bielik.model.tensors import CheckpointReader, ShardWriter

    reader = CheckpointReader(src_dir)
    writer = ShardWriter(out, max_shard_bytes)
    new_index = {old: new for new, old in enumerate(sel.layers)}
    written = 0
    with progress("prune", total=len(reader.keys()), unit="tensors") as bar:
        for name in reader.keys():
            m = _LAYER.match(name)
            if shape.tied and name.endswith("lm_head.weight"):
                bar.advance()
                continue
            if m is None:
                t = slice_global_tensor(name, reader.get(name), sel)
                new_name = name
            elif int(m.group(2)) in new_index:
                i = int(m.group(2))
                t = slice_layer_tensor(m.group(3), reader.get(name), sel, i, shape.head_dim)
                new_name = f"{m.group(1)}{new_index[i]}.{m.group(3)}"
            else:
                bar.advance()
                continue
            writer.add(new_name, t)
            written += t.numel()
            bar.advance()
    return writer.close(), written


def prune(cfg: PruneConfig) -> dict[str, Any]:
    """Prune ``cfg.model`` to the target shape; write an HF directory to ``cfg.output``; return the summary."""
    from transformers import AutoConfig

    from bielik.compress.importance import Importance
    from bielik.model.factory import human
    from bielik.model.tensors import CheckpointReader, copy_side_files

    path = Path(cfg.model)
    CheckpointReader(path)  # a clear error when it is not an HF safetensors directory
    src = Shape.of(AutoConfig.from_pretrained(path))
    dst = target_shape(src, cfg)
    imp = Importance.load(cfg.importance) if cfg.importance else None
    sel = make_selection(src, dst, imp, cfg.depth, cfg.drop_layers)
    config = pruned_config(path, dst, sel.layers)
    with staged_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
        files, written = write_pruned(path, tmp, sel, src, int(cfg.max_shard_gb * 2**30))
        config.save_pretrained(tmp)
        copy_side_files(path, tmp)
        n_src, n_dst = count_params(src), count_params(dst)
        if written != n_dst:
            raise BielikError(
                f"pruned checkpoint holds {written:,} parameters, the target shape {n_dst:,} "
                f"(unexpected tensors in {path}?)"
            )
        summary = {
            "source": str(path),
            "source_shape": src.as_dict(),
            "shape": dst.as_dict(),
            "kept_layers": sel.layers,
            "dropped_layers": [i for i in range(src.layers) if i not in sel.layers],
            "depth_criterion": "explicit" if cfg.drop_layers is not None else cfg.depth,
            "parameters_source": n_src,
            "parameters": n_dst,
            "parameters_human": human(n_dst),
            "parameter_ratio": n_dst / n_src,
            "files": files,
            "output": cfg.output,
        }
        write_stage_record(
            tmp,
            "compress.prune",
            cfg,
            inputs={"model": cfg.model, **({"importance": cfg.importance} if cfg.importance else {})},
            metrics=summary,
        )
    log.info(
        "pruned %s: %s -> %s parameters (%.1f%%), layers kept %s",
        path,
        human(n_src),
        human(n_dst),
        100 * n_dst / n_src,
        sel.layers,
    )
    return summary
