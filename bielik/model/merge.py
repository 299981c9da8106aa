"""``bielik model merge``: linear (weighted-average) merge of N checkpoints (RECIPE §6.3).

For checkpoints θ_1..θ_N of one architecture and weights w_1..w_N, every tensor of the output is

    θ = Σ_k w_k θ_k / Σ_k w_k        (normalize = true, the default; "model soup", Wortsman et al.,
                                       ICML 2022, arXiv 2203.05482)
    θ = Σ_k w_k θ_k                  (normalize = false: task-arithmetic style sums)

accumulated in float32 and stored in the first model's dtype (or ``dtype``). Tensors are streamed
one at a time, so memory stays at one tensor per input. Everything that would make an average
meaningless is an error naming what differs: a tensor missing from a model, a tensor whose shape
differs (the message names the tensor and both shapes), different architectures or config shapes,
different vocabularies. The output is the first model's directory layout: its config, tokenizer
and generation settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from bielik.artifacts import staged_dir, write_json, write_stage_record
from bielik.config import StageConfig
from bielik.errors import BielikError
from bielik.log import get_logger
from bielik.progress import progress

log = get_logger(__name__)

# config fields that must agree for parameters to mean the same thing
_SHAPE_FIELDS = (
    "model_type",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
    "tie_word_embeddings",
)
_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


class MergeConfig(StageConfig):
    models: list[str] = Field(..., min_length=2, description="HF model directories (identical architecture)")
    weights: list[float] | None = Field(None, description="one weight per model; default: equal weights")
    normalize: bool = Field(True, description="divide by the sum of weights (a weighted average)")
    dtype: str | None = Field(None, description="output dtype: float32, bfloat16, float16; default: the first model's")
    output: str = "runs/merged"
    max_shard_gb: float = Field(4.0, gt=0)
    overwrite: bool = False

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str | None) -> str | None:
        if v is not None and v not in _DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}")
        return v

    @model_validator(mode="after")
    def _weights(self) -> MergeConfig:
        if self.weights is not None:
            if len(self.weights) != len(self.models):
                raise ValueError(f"{len(self.weights)} weights for {len(self.models)} models")
            if self.normalize and abs(sum(self.weights)) < 1e-12:
                raise ValueError("weights sum to 0: cannot normalise (set normalize=false)")
        return self


def _vocab_fingerprint(path: Path) -> dict[str, int] | None:
    f = path / "tokenizer.json"
    if not f.is_file():
        return None
    data = json.loads(f.read_text(encoding="utf-8"))
    vocab = dict(data.get("model", {}).get("vocab", {}) or {})
    if isinstance(vocab, list):  # Unigram: [[piece, score], ...]
        vocab = {p: i for i, (p, _) in enumerate(vocab)}
    vocab.update({t["content"]: t["id"] for t in data.get("added_tokens", [])})
    return vocab


def check_compatible(paths: list[Path], readers: list) -> None:
    """Raise a :class:`BielikError` naming the first tensor, token or config field that differs."""
    names = readers[0].keys()
    for p, r in zip(paths[1:], readers[1:]):
        missing = [k for k in names if k not in r]
        extra = [k for k in r.keys() if k not in readers[0]]
        if missing or extra:
            what = (
                f"tensor {missing[0]} is missing from {p}"
                if missing
                else f"tensor {extra[0]} of {p} is not in {paths[0]}"
            )
            raise BielikError(f"cannot merge: {what}")
        for k in names:
            a, b = readers[0].shape(k), r.shape(k)
            if a != b:
                vocab = (
                    " (the vocabularies differ in size)" if ("embed" in k or "lm_head" in k) and a[0] != b[0] else ""
                )
                raise BielikError(
                    f"cannot merge: tensor {k} has shape {list(a)} in {paths[0]} but {list(b)} in {p}{vocab}"
                )
    base_vocab = _vocab_fingerprint(paths[0])
    for p in paths[1:]:
        v = _vocab_fingerprint(p)
        if base_vocab is not None and v is not None and v != base_vocab:
            diff = sorted(set(base_vocab.items()) ^ set(v.items()), key=lambda kv: kv[1])[:3]
            raise BielikError(
                f"cannot merge: the vocabularies of {paths[0]} and {p} differ "
                f"({len(set(base_vocab.items()) ^ set(v.items()))} (token, id) pairs not in both, e.g. {diff}), "
                "so rows of model.embed_tokens.weight / lm_head.weight would average different tokens"
            )
    base_cfg = readers[0].config()
    for p, r in zip(paths[1:], readers[1:]):
        c = r.config()
        for field in _SHAPE_FIELDS:
            if base_cfg.get(field) != c.get(field):
                raise BielikError(
                    f"cannot merge: config field '{field}' is {base_cfg.get(field)!r} in {paths[0]} "
                    f"but {c.get(field)!r} in {p}"
                )


def merge(cfg: MergeConfig) -> dict[str, Any]:
    """Write the weighted average of ``cfg.models`` to ``cfg.output``; return the summary."""
    import shutil

    import torch

    from bielik.model.tensors import CheckpointReader, ShardWriter, copy_side_files

    paths = [Path(m) for m in cfg.models]
    readers = [CheckpointReader(p) for p in paths]
    check_compatible(paths, readers)
    weights = cfg.weights or [1.0] * len(paths)
    scale = sum(weights) if cfg.normalize else 1.0
    coeffs = [w / scale for w in weights]
    out_dtype = getattr(torch, cfg.dtype) if cfg.dtype else None
    names = readers[0].keys()
    with staged_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
        writer = ShardWriter(tmp, int(cfg.max_shard_gb * 2**30))
        with progress("merge", total=len(names), unit="tensors") as bar:
            for name in names:
                first = readers[0].get(name)
                if not first.is_floating_point():  # integer buffers (rare): must agree, copied as is
                    for p, r in zip(paths[1:], readers[1:]):
                        if not torch.equal(first, r.get(name)):
                            raise BielikError(
                                f"cannot merge: non-float tensor {name} differs between {paths[0]} and {p}"
                            )
                    writer.add(name, first)
                else:
                    acc = first.to(torch.float32) * coeffs[0]
                    for c, r in zip(coeffs[1:], readers[1:]):
                        acc.add_(r.get(name).to(torch.float32), alpha=c)
                    writer.add(name, acc.to(out_dtype or first.dtype))
                bar.advance()
        files = writer.close()
        if out_dtype is None:
            shutil.copy2(paths[0] / "config.json", tmp / "config.json")
        else:
            conf = {**readers[0].config(), "dtype": cfg.dtype}
            conf.pop("torch_dtype", None)
            write_json(tmp / "config.json", conf)
        copy_side_files(paths[0], tmp)
        summary = {
            "models": [str(p) for p in paths],
            "coefficients": coeffs,
            "tensors": len(names),
            "files": files,
            "bytes": writer.total_bytes,
        }
        write_stage_record(
            tmp, "model.merge", cfg, inputs={f"model{i}": p for i, p in enumerate(paths)}, metrics=summary
        )
    log.info("merged %d models (coefficients %s) into %s", len(paths), [round(c, 4) for c in coeffs], cfg.output)
    return summary
