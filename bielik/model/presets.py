"""Named model shapes.

Tiny presets train on a CPU in minutes (hidden and FFN sizes are multiples of 256 so K-quants in
GGUF work on them). The real shapes are the bases of the Bielik family; they are meant to be built
on the ``meta`` device for parameter counting and planning (``bielik model info mistral-7b-v0.1``).
Values come from the published ``config.json`` files of those models.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # --- tiny, trainable on CPU ---------------------------------------------------------------
    "tiny-llama": dict(
        model_type="llama", hidden_size=256, intermediate_size=768, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        rope_theta=10000.0, rms_norm_eps=1e-5, vocab_size=8192, tie_word_embeddings=False,
    ),
    "tiny-mistral": dict(
        model_type="mistral", hidden_size=256, intermediate_size=768, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=64, max_position_embeddings=2048,
        rope_theta=10000.0, rms_norm_eps=1e-5, sliding_window=1024, vocab_size=8192,
        tie_word_embeddings=False,
    ),
    "tiny-qwen2": dict(
        model_type="qwen2", hidden_size=256, intermediate_size=768, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        rope_theta=1000000.0, rms_norm_eps=1e-6, vocab_size=8192, tie_word_embeddings=True,
    ),
    "small-llama": dict(
        model_type="llama", hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
        num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=4096,
        rope_theta=10000.0, rms_norm_eps=1e-5, vocab_size=32000, tie_word_embeddings=False,
    ),
    # --- real shapes (Bielik bases) ----------------------------------------------------------
    "mistral-7b-v0.1": dict(
        model_type="mistral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=32768,
        rope_theta=10000.0, rms_norm_eps=1e-5, sliding_window=4096, vocab_size=32000,
        tie_word_embeddings=False,
    ),
    "mistral-7b-v0.2": dict(
        model_type="mistral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=32768,
        rope_theta=1000000.0, rms_norm_eps=1e-5, sliding_window=None, vocab_size=32000,
        tie_word_embeddings=False,
    ),
    "bielik-11b-v2": dict(  # Mistral-7B-v0.2 depth-up-scaled to 50 layers (RECIPE §3)
        model_type="mistral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=50,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=32768,
        rope_theta=1000000.0, rms_norm_eps=1e-5, sliding_window=None, vocab_size=32128,
        tie_word_embeddings=False,
    ),
    # Bielik-11B-v3 (RECIPE §7.3; base of Bielik-Minitron-7B): the 11B v2 shape with the Polish APT4
    # 32k tokenizer and one (tied) embedding matrix. 11.04B parameters; vocabulary 32,000 and tying
    # are what make the reported 11.04B and the 7.35B of the chosen 40-layer / FFN-11,264 student.
    "bielik-11b-v3": dict(
        model_type="mistral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=50,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=32768,
        rope_theta=1000000.0, rms_norm_eps=1e-5, sliding_window=None, vocab_size=32000,
        tie_word_embeddings=True,
    ),
    "qwen2.5-1.5b": dict(
        model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
        num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=131072,
        rope_theta=1000000.0, rms_norm_eps=1e-6, vocab_size=151936, tie_word_embeddings=True,
    ),
    "qwen2.5-3b": dict(
        model_type="qwen2", hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
        num_attention_heads=16, num_key_value_heads=2, max_position_embeddings=32768,
        rope_theta=1000000.0, rms_norm_eps=1e-6, vocab_size=151936, tie_word_embeddings=True,
    ),
    "qwen2.5-7b": dict(
        model_type="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
        num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=131072,
        rope_theta=1000000.0, rms_norm_eps=1e-6, vocab_size=152064, tie_word_embeddings=False,
    ),
}


def preset_names() -> list[str]:
    return sorted(PRESETS)
