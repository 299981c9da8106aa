import pytest
import torch

from bielik.errors import ConfigError
from bielik.model.factory import ParamCount, build_config, model_info


@pytest.mark.parametrize(
    "preset, billions",
    [
        ("mistral-7b-v0.1", 7.24),
        ("mistral-7b-v0.2", 7.24),
        ("bielik-11b-v2", 11.17),
        ("qwen2.5-1.5b", 1.54),
        ("qwen2.5-3b", 3.09),
        ("qwen2.5-7b", 7.62),
    ],
)
def test_real_shapes_parameter_counts(preset, billions):
    info = model_info(preset)
    assert round(info["parameters"] / 1e9, 2) == billions


def test_mistral_count_matches_formula():
    info = model_info("mistral-7b-v0.1")
    h, f, layers, v, kv = 4096, 14336, 32, 32000, 1024
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * f + 2 * h
    assert info["parameters"] == layers * per_layer + 2 * v * h + h


def test_unknown_preset_suggests():
    with pytest.raises(ConfigError, match="did you mean 'mistral-7b-v0.1'"):
        build_config("mistral-7b-v01")


def test_init_roundtrip_from_pretrained(tiny_model, tiny_tokenizer):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.vocab_size == len(tok) == len(AutoTokenizer.from_pretrained(tiny_tokenizer))
    assert (tiny_model / "model.safetensors").is_file() and (tiny_model / "config.yaml").is_file()
    ids = tok("Zażółć gęślą jaźń", return_tensors="pt").input_ids
    assert tok.decode(ids[0], skip_special_tokens=True) == "Zażółć gęślą jaźń"
    with torch.no_grad():
        assert model(ids).logits.shape == (1, ids.shape[1], len(tok))
    assert ParamCount.of(model).total == sum(p.numel() for p in model.parameters())
