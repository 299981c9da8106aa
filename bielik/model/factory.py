"""Model factory: HF configs from presets, models on a real or ``meta`` device, parameter counts.

Checkpoints are plain HF directories (``config.json`` + ``model.safetensors`` + tokenizer files)
that ``AutoModelForCausalLM.from_pretrained`` opens; nothing here needs ``trust_remote_code``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from bielik.artifacts import staged_dir, write_stage_record
from bielik.config import StageConfig
from bielik.errors import BielikError, ConfigError
from bielik.log import get_logger
from bielik.model.presets import PRESETS, preset_names

log = get_logger(__name__)


def build_config(preset: str, **overrides: Any):
    """An HF ``PretrainedConfig`` for a preset name, with field overrides (e.g. ``vocab_size``)."""
    from transformers import AutoConfig

    if preset not in PRESETS:
        import difflib

        near = difflib.get_close_matches(preset, preset_names(), n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        raise ConfigError(f"unknown model preset '{preset}'{hint} (known: {', '.join(preset_names())})")
    fields = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    model_type = fields.pop("model_type")
    return AutoConfig.for_model(model_type, **fields)


def build_model(config, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, seed: int | None = 0):
    """Instantiate ``AutoModelForCausalLM`` from a config; ``device="meta"`` allocates nothing."""
    from transformers import AutoModelForCausalLM

    config._attn_implementation = getattr(config, "_attn_implementation", None) or "sdpa"
    if seed is not None:
        torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model


@dataclass
class ParamCount:
    total: int
    embedding: int
    lm_head: int
    non_embedding: int

    @staticmethod
    def of(model: torch.nn.Module) -> ParamCount:
        seen: set[int] = set()
        total = 0
        for p in model.parameters():  # tied weights counted once
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
        emb = model.get_input_embeddings().weight
        head = model.get_output_embeddings()
        head_n = 0 if head is None or head.weight is emb else head.weight.numel()
        return ParamCount(
            total=total, embedding=emb.numel(), lm_head=head_n, non_embedding=total - emb.numel() - head_n
        )


def human(n: float) -> str:
    for unit, div in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(int(n))


def model_info(name_or_path: str) -> dict[str, Any]:
    """Shape and parameter counts of a preset or an HF model directory, built on ``meta``."""
    from transformers import AutoConfig

    if Path(name_or_path).is_dir():
        config = AutoConfig.from_pretrained(name_or_path)
    else:
        config = build_config(name_or_path)
    model = build_model(config, device="meta", seed=None)
    pc = ParamCount.of(model)
    return {
        "name": name_or_path,
        "architecture": type(model).__name__,
        "layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "attention_heads": config.num_attention_heads,
        "kv_heads": getattr(config, "num_key_value_heads", config.num_attention_heads),
        "vocab_size": config.vocab_size,
        "tied_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
        "parameters": pc.total,
        "parameters_human": human(pc.total),
        "embedding_parameters": pc.embedding,
        "lm_head_parameters": pc.lm_head,
        "non_embedding_parameters": pc.non_embedding,
        "bf16_weights_gib": round(pc.total * 2 / 2**30, 2),
    }


class ModelInitConfig(StageConfig):
    preset: str = "tiny-llama"
    tokenizer: str | None = Field("runs/tokenizer", description="HF tokenizer dir; sets vocab size and special ids")
    output: str = "runs/model-init"
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="HF config fields to change, e.g. {num_hidden_layers: 2}"
    )
    seed: int = 0
    overwrite: bool = False


def init_model(cfg: ModelInitConfig) -> Path:
    """Write a freshly initialised HF checkpoint (with the tokenizer) to ``cfg.output``."""
    tokenizer = None
    extra: dict[str, Any] = dict(cfg.overrides)
    if cfg.tokenizer:
        from bielik.tokenizer.formats import load_hf_tokenizer

        if not Path(cfg.tokenizer).is_dir():
            raise BielikError(f"tokenizer directory {cfg.tokenizer} does not exist")
        tokenizer = load_hf_tokenizer(cfg.tokenizer)
        extra.setdefault("vocab_size", len(tokenizer))
        extra.setdefault("bos_token_id", tokenizer.bos_token_id)
        extra.setdefault("eos_token_id", tokenizer.eos_token_id)
        extra.setdefault("pad_token_id", tokenizer.pad_token_id)
    config = build_config(cfg.preset, **extra)
    model = build_model(config, seed=cfg.seed)
    pc = ParamCount.of(model)
    with staged_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        write_stage_record(
            tmp,
            "model.init",
            cfg,
            inputs={"tokenizer": cfg.tokenizer} if cfg.tokenizer else None,
            metrics={"parameters": pc.total, "non_embedding_parameters": pc.non_embedding},
        )
    log.info("initialised %s (%s parameters) in %s", cfg.preset, human(pc.total), cfg.output)
    return Path(cfg.output)
