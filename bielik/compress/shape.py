"""The prunable shape of a decoder-only model and its exact parameter count.

A :class:`Shape` holds the axes Minitron prunes (layers, hidden size, FFN size, query heads, KV
heads) plus what stays fixed (vocabulary, head dimension, tying, biases). :func:`count_params` is
closed-form, so a planner can price hundreds of candidates of an 11B model instantly; it matches
transformers' own count of the model built from :meth:`Shape.config` (tests/compress/test_shape.py)
for Llama (with ``attention_bias`` / ``mlp_bias``), Mistral and Qwen2 (q/k/v biases), tied or not.

Per layer, with d the head dimension, q = heads·d and k = kv_heads·d::

    attention  H·q + 2·H·k + q·H   (+ q + 2k biases for Qwen2; + q + 2k + H for Llama attention_bias)
    MLP        3·H·F               (+ 2F + H for Llama mlp_bias)
    norms      2·H
    total      L·layer + V·H (embedding) + H (final norm) + V·H (LM head, unless tied)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from bielik.errors import BielikError

SUPPORTED = ("llama", "mistral", "qwen2")


@dataclass(frozen=True)
class Shape:
    model_type: str
    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    attention_bias: bool = False
    mlp_bias: bool = False

    @staticmethod
    def of(config: Any) -> Shape:
        """The shape of an HF config (object or ``config.json`` dict)."""
        get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
        model_type = get("model_type")
        if model_type not in SUPPORTED:
            raise BielikError(
                f"model type {model_type!r} is not supported for pruning (supported: {', '.join(SUPPORTED)})"
            )
        hidden, heads = int(get("hidden_size")), int(get("num_attention_heads"))
        return Shape(
            model_type=model_type,
            layers=int(get("num_hidden_layers")),
            hidden=hidden,
            ffn=int(get("intermediate_size")),
            heads=heads,
            kv_heads=int(get("num_key_value_heads") or heads),
            head_dim=int(get("head_dim") or hidden // heads),
            vocab=int(get("vocab_size")),
            tied=bool(get("tie_word_embeddings", False)),
            attention_bias=model_type == "qwen2" or (model_type == "llama" and bool(get("attention_bias", False))),
            mlp_bias=model_type == "llama" and bool(get("mlp_bias", False)),
        )

    def with_(self, **axes: int | None) -> Shape:
        """A copy with some axes changed (``None`` keeps the axis)."""
        return replace(self, **{k: v for k, v in axes.items() if v is not None})

    def config_fields(self) -> dict[str, Any]:
        """The HF config fields this shape sets (``head_dim`` explicit: it no longer follows hidden/heads)."""
        return {
            "num_hidden_layers": self.layers,
            "hidden_size": self.hidden,
            "intermediate_size": self.ffn,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "head_dim": self.head_dim,
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def layer_params(s: Shape) -> int:
    q, k = s.heads * s.head_dim, s.kv_heads * s.head_dim
    attn = s.hidden * q + 2 * s.hidden * k + q * s.hidden
    if s.attention_bias:
        attn += q + 2 * k + (s.hidden if s.model_type == "llama" else 0)
    mlp = 3 * s.hidden * s.ffn + ((2 * s.ffn + s.hidden) if s.mlp_bias else 0)
    return attn + mlp + 2 * s.hidden


def count_params(s: Shape) -> int:
    """Exact number of parameters of a model of shape ``s`` (tied weights counted once)."""
    embed = s.vocab * s.hidden
    return s.layers * layer_params(s) + embed + s.hidden + (0 if s.tied else embed)


def check_target(src: Shape, dst: Shape) -> None:
    """Raise a ``ConfigError`` naming the field when ``dst`` is not a valid pruning of ``src``."""
    from bielik.errors import ConfigError

    for field, a, b in (
        ("layers", src.layers, dst.layers),
        ("hidden_size", src.hidden, dst.hidden),
        ("intermediate_size", src.ffn, dst.ffn),
        ("num_attention_heads", src.heads, dst.heads),
        ("num_key_value_heads", src.kv_heads, dst.kv_heads),
    ):
        if not 1 <= b <= a:
            raise ConfigError(f"{field}={b}: must be between 1 and the source's {a} (pruning only removes)")
    if dst.heads % dst.kv_heads:
        raise ConfigError(
            f"num_attention_heads={dst.heads} must be a multiple of num_key_value_heads={dst.kv_heads} "
            "(every KV group keeps the same number of query heads)"
        )
    if dst.model_type == "llama" and dst.hidden % dst.heads:
        raise ConfigError(
            f"hidden_size={dst.hidden} must be a multiple of num_attention_heads={dst.heads} for Llama "
            "(transformers' LlamaConfig refuses other shapes even with an explicit head_dim)"
        )
    if dst.heads // dst.kv_heads > src.heads // src.kv_heads:
        raise ConfigError(
            f"num_attention_heads={dst.heads} with num_key_value_heads={dst.kv_heads} needs "
            f"{dst.heads // dst.kv_heads} query heads per group, but the source has {src.heads // src.kv_heads}"
        )
