"""Tiny HF checkpoints of each supported architecture, saved as safetensors for surgery tests."""

from __future__ import annotations

from pathlib import Path

SMALL = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=300,
)


def save_tiny(out: Path, preset: str = "tiny-llama", seed: int = 0, tokenizer: Path | None = None, **overrides) -> Path:
    from bielik.model.factory import build_config, build_model

    config = build_config(preset, **{**SMALL, **overrides})
    model = build_model(config, seed=seed)
    model.save_pretrained(out)
    if tokenizer is not None:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(tokenizer).save_pretrained(out)
    return out
