"""``bielik compress importance``: Minitron's activation-based importance from forward passes only.

From calibration text (default: the shipped Polish/English corpus, calibration side of the held-out
split) cut into ``ctx``-token windows, one no-grad pass records, through forward hooks
(:mod:`bielik.model.activations`):

* **hidden channels** — |RMSNorm output| of every norm (two per layer and the final one), one score
  per channel per norm, summed over the norms (the residual stream is shared, so one ranking);
* **FFN neurons** — |act(gate(x))·up(x)|, the input of ``down_proj``, per layer;
* **attention heads** — ‖head output‖₂ over the head dimension (the input of ``o_proj`` split into
  heads), per layer; KV-group consistency is the pruner's job (:mod:`bielik.compress.prune`);
* **Block Influence** per layer, BI_i = 1 − E_t[cos(x_in, x_out)] over all calibration tokens.

Width scores aggregate per-token magnitudes as the Minitron report chose (mean over the sequence,
then L2 over the samples); ``aggregation.seq`` / ``aggregation.batch`` select the alternatives it
compared. Departures from the report: scores are computed once on the full model (no iterative
re-estimation), and depth is ranked by BI alone (the report also tried validation-task search;
``bielik compress plan`` can rank candidates by a short distillation instead).

Output: ``importance.safetensors`` (``hidden``, ``block_influence``, ``layers.<i>.ffn``,
``layers.<i>.heads``), ``importance.json`` (BI per layer, the layer order, calibration size),
``importance.png`` and the stage record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from bielik.artifacts import staged_dir, write_json, write_stage_record
from bielik.config import StageConfig
from bielik.errors import BielikError
from bielik.log import get_logger
from bielik.model.activations import BatchReduce, BlockInfluence, ChannelImportance, Hooks, SeqReduce
from bielik.quant.calibration import TextConfig

log = get_logger(__name__)
FILE = "importance.safetensors"


class AggregationConfig(StageConfig):
    seq: SeqReduce = Field("mean", description="per-sample reduction over the sequence: mean | l2 | max")
    batch: BatchReduce = Field("l2", description="reduction over calibration samples: l2 | mean | max")


class ImportanceConfig(StageConfig):
    model: str = Field("runs/pretrain/final", description="HF model directory (Llama, Mistral, Qwen2)")
    output: str = "runs/compress/importance"
    text: TextConfig = Field(
        default_factory=lambda: TextConfig(chars=100_000), description="calibration text (default: shipped PL/EN)"
    )
    data: str | None = Field(None, description="packed dataset (bielik data pack) to take windows from instead of text")
    split: str = Field("train", description="split of `data` to use")
    ctx: int = Field(256, ge=8, description="tokens per calibration window")
    samples: int = Field(64, ge=1, description="calibration windows (at most)")
    batch_size: int = Field(8, ge=1)
    dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="weights for the pass (statistics accumulate in float64)"
    )
    aggregation: AggregationConfig = Field(default_factory=AggregationConfig)
    overwrite: bool = False


@dataclass
class Importance:
    hidden: torch.Tensor  # (H,)
    ffn: list[torch.Tensor]  # L x (F,)
    heads: list[torch.Tensor]  # L x (n_heads,)
    block_influence: torch.Tensor  # (L,)
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        tensors = {"hidden": self.hidden, "block_influence": self.block_influence}
        for i, (f, h) in enumerate(zip(self.ffn, self.heads)):
            tensors[f"layers.{i}.ffn"], tensors[f"layers.{i}.heads"] = f, h
        save_file(
            {k: v.double().contiguous() for k, v in tensors.items()},
            str(path),
            metadata={k: str(v) for k, v in self.meta.items()},
        )

    @staticmethod
    def load(path: str | Path) -> Importance:
        from safetensors import safe_open

        path = Path(path)
        if path.is_dir():
            path = path / FILE
        if not path.is_file():
            raise BielikError(f"importance file {path} does not exist (run `bielik compress importance` first)")
        with safe_open(str(path), framework="pt") as f:
            t = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
            meta = f.metadata() or {}
        n = len(t["block_influence"])
        missing = [k for i in range(n) for k in (f"layers.{i}.ffn", f"layers.{i}.heads") if k not in t]
        if missing or "hidden" not in t:
            raise BielikError(f"{path}: not an importance file (missing {missing[:3] or ['hidden']})")
        return Importance(
            t["hidden"],
            [t[f"layers.{i}.ffn"] for i in range(n)],
            [t[f"layers.{i}.heads"] for i in range(n)],
            t["block_influence"],
            meta,
        )


def decoder_layers(model) -> list:
    base = getattr(model, model.base_model_prefix, model)
    if not hasattr(base, "layers"):
        raise BielikError(f"{type(model).__name__}: no decoder layers (<base>.layers); not a Llama/Mistral/Qwen2 model")
    return list(base.layers)


@torch.no_grad()
def compute_importance(
    model, windows: torch.Tensor, batch_size: int = 8, seq: SeqReduce = "mean", batch: BatchReduce = "l2"
) -> Importance:
    """Importance of every prunable unit of ``model`` from one pass over ``windows`` (N, ctx)."""
    layers = decoder_layers(model)
    c = model.config
    d = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    norms = [m for layer in layers for m in (layer.input_layernorm, layer.post_attention_layernorm)]
    norms.append(getattr(model, model.base_model_prefix).norm)
    hid = [ChannelImportance(seq, batch) for _ in norms]
    ffn = [ChannelImportance(seq, batch) for _ in layers]
    heads = [ChannelImportance(seq, batch) for _ in layers]
    bi = [BlockInfluence() for _ in layers]
    model.eval()
    with Hooks() as hooks:
        for norm, stat in zip(norms, hid):
            hooks.output(norm, lambda y, s=stat: s.update(y.abs()))
        for i, layer in enumerate(layers):
            hooks.input(layer.mlp.down_proj, lambda x, s=ffn[i]: s.update(x.abs()))
            hooks.input(
                layer.self_attn.o_proj, lambda x, s=heads[i]: s.update(x.float().unflatten(-1, (-1, d)).norm(dim=-1))
            )
            hooks.block(layer, bi[i].update)
        device = next(model.parameters()).device
        for s in range(0, len(windows), batch_size):
            model(input_ids=windows[s : s + batch_size].to(device), use_cache=False)
    return Importance(
        hidden=torch.stack([h.result() for h in hid]).sum(0),
        ffn=[f.result() for f in ffn],
        heads=[h.result() for h in heads],
        block_influence=torch.tensor([b.result() for b in bi], dtype=torch.float64),
        meta={"windows": len(windows), "ctx": windows.shape[1], "tokens": windows.numel(), "seq": seq, "batch": batch},
    )


def calibration_windows(cfg: ImportanceConfig) -> tuple[torch.Tensor, dict[str, Any]]:
    """(N, ctx) token windows from a packed dataset or from calibration text tokenised by the model's tokenizer."""
    if cfg.data:
        import numpy as np

        from bielik.data.pack import TokenShards

        shards = TokenShards(cfg.data, cfg.split)
        n = min(len(shards), cfg.samples)
        if n == 0:
            raise BielikError(f"data {cfg.data}: split '{cfg.split}' has no rows")
        rows = torch.from_numpy(shards.rows(np.arange(n)))[:, : cfg.ctx]
        return rows, {"source": f"{cfg.data}:{cfg.split}"}
    from bielik.quant.calibration import select_text
    from bielik.tokenizer.formats import load_hf_tokenizer

    text, per_lang = select_text(cfg.text, heldout=False)
    ids = load_hf_tokenizer(cfg.model)(text, add_special_tokens=False).input_ids
    n = min(len(ids) // cfg.ctx, cfg.samples)
    if n == 0:
        raise BielikError(
            f"importance: the calibration text gives {len(ids)} tokens, fewer than one window of ctx={cfg.ctx}"
        )
    return torch.tensor(ids[: n * cfg.ctx]).view(n, cfg.ctx), {"source": "text", "characters": per_lang}


def summary_of(imp: Importance) -> dict[str, Any]:
    bi = imp.block_influence.tolist()
    return {
        "layers": len(bi),
        "hidden_size": len(imp.hidden),
        "intermediate_size": len(imp.ffn[0]),
        "heads": len(imp.heads[0]),
        "block_influence": [round(b, 6) for b in bi],
        "layers_by_influence": sorted(range(len(bi)), key=lambda i: bi[i]),
        "calibration": imp.meta,
    }


def importance(cfg: ImportanceConfig) -> dict[str, Any]:
    """Compute and save the importance of ``cfg.model``'s layers, channels, neurons and heads."""
    from bielik.compress.plots import plot_importance
    from bielik.model.loading import load_hf_model

    if Path(cfg.output).exists() and not cfg.overwrite:
        raise BielikError(f"output {cfg.output} already exists (pass overwrite=true to replace it)")
    model = load_hf_model(cfg.model, dtype=cfg.dtype)
    windows, source = calibration_windows(cfg)
    log.info("importance of %s on %d windows x %d tokens", cfg.model, *windows.shape)
    imp = compute_importance(model, windows, cfg.batch_size, cfg.aggregation.seq, cfg.aggregation.batch)
    imp.meta.update(model=cfg.model, **{k: v for k, v in source.items() if k != "characters"})
    summary = {**summary_of(imp), "calibration_source": source}
    with staged_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
        imp.save(tmp / FILE)
        write_json(tmp / "importance.json", summary)
        plot_importance(imp, tmp / "importance.png")
        inputs = {"model": cfg.model, **({"data": cfg.data} if cfg.data else {})}
        write_stage_record(tmp, "compress.importance", cfg, inputs=inputs, metrics=summary)
    log.info("layers by Block Influence (least influential first): %s", summary["layers_by_influence"])
    return summary
