"""Closed-form parameter counts against transformers' own count of the built model, and the report's numbers."""

import itertools

import pytest

from bielik.compress.shape import Shape, check_target, count_params
from bielik.errors import ConfigError
from bielik.model.factory import ParamCount, build_config, build_model


def transformers_count(preset: str, **fields) -> tuple[int, Shape]:
    config = build_config(preset, **fields)
    return ParamCount.of(build_model(config, device="meta", seed=None)).total, Shape.of(config)


CASES = [
    ("tiny-llama", {}),
    ("tiny-llama", {"attention_bias": True, "mlp_bias": True}),
    ("tiny-mistral", {}),
    ("tiny-qwen2", {}),  # tied, q/k/v biases
    ("tiny-qwen2", {"tie_word_embeddings": False}),
]


@pytest.mark.parametrize("preset,extra", CASES)
def test_counts_match_transformers_for_pruned_shapes(preset, extra):
    # shapes a pruner produces: head_dim no longer hidden/heads, fewer heads per group, odd FFN sizes
    for layers, hidden, ffn, (heads, kv) in itertools.islice(
        itertools.product((1, 3), (96, 256), (80, 768), ((4, 2), (2, 2), (2, 1), (6, 3))), 0, None, 5
    ):
        if preset == "tiny-llama" and hidden % heads:
            continue  # LlamaConfig refuses it (check_target says so, see below)
        n, shape = transformers_count(
            preset,
            num_hidden_layers=layers,
            hidden_size=hidden,
            intermediate_size=ffn,
            num_attention_heads=heads,
            num_key_value_heads=kv,
            head_dim=48,
            **extra,
        )
        assert shape.head_dim == 48 and (shape.heads, shape.kv_heads) == (heads, kv)
        assert count_params(shape) == n, (preset, extra, layers, hidden, ffn, heads, kv)


def test_bielik_11b_v3_and_the_reports_student():
    n, base = transformers_count("bielik-11b-v3")
    assert n == count_params(base) and round(n / 1e9, 2) == 11.04
    student = base.with_(layers=40, ffn=11264)
    m, _ = transformers_count("bielik-11b-v3", num_hidden_layers=40, intermediate_size=11264)
    assert count_params(student) == m and round(m / 1e9, 2) == 7.35
    assert round(100 * (1 - m / n), 1) == 33.4  # "-33.4%" in the report


def test_check_target_names_the_field():
    base = Shape.of(build_config("tiny-llama"))  # 4 heads, 2 KV heads
    check_target(base, base.with_(layers=2, heads=2, kv_heads=2))
    with pytest.raises(ConfigError, match="intermediate_size=1000"):
        check_target(base, base.with_(ffn=1000))
    with pytest.raises(ConfigError, match="multiple of num_key_value_heads"):
        check_target(base, base.with_(heads=3))
    with pytest.raises(ConfigError, match="multiple of num_attention_heads=3 for Llama"):
        check_target(base.with_(heads=6, kv_heads=3), base.with_(hidden=128, heads=3, kv_heads=3))
    with pytest.raises(ConfigError, match="query heads per group"):
        check_target(base, base.with_(heads=4, kv_heads=1))
