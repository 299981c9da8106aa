import json

import pytest
import torch
from safetensors import safe_open

from bielik.errors import BielikError, ConfigError
from bielik.model.upscale import UpscaleConfig, dus_layer_map, parse_layer_map, upscale
from tests.model.tiny_models import save_tiny


def test_dus_layer_map_matches_solar():
    assert dus_layer_map(4, 1) == [0, 1, 2, 1, 2, 3]
    mp = dus_layer_map(32, 7)  # Bielik 11B v2: 25 + 25 layers
    assert len(mp) == 50 and mp[:25] == list(range(25)) and mp[25:] == list(range(7, 32))
    assert len(dus_layer_map(36, 8)) == 56
    with pytest.raises(ConfigError):
        dus_layer_map(4, 4)
    assert parse_layer_map([0, "2:4", 1], 4) == [0, 2, 3, 1]
    with pytest.raises(ConfigError, match="has 4 layers"):
        parse_layer_map(["0:5"], 4)


@pytest.mark.parametrize(
    "preset, m, layers, billions", [("mistral-7b-v0.2", 7, 50, 11.17), ("qwen2.5-3b", 8, 56, 4.63)]
)
def test_real_shapes_on_meta(preset, m, layers, billions):
    s = upscale(UpscaleConfig(model=preset, m=m, dry_run=True))
    assert s["output_layers"] == layers
    assert round(s["parameters_output"] / 1e9, 2) == billions


def test_preset_needs_dry_run(tmp_path):
    with pytest.raises(ConfigError, match="dry_run"):
        upscale(UpscaleConfig(model="mistral-7b-v0.2", m=7, output=str(tmp_path / "x")))


@pytest.mark.parametrize(
    "preset, extra",
    [
        ("tiny-llama", {}),
        ("tiny-mistral", {"head_dim": 16}),
        ("tiny-qwen2", {"use_sliding_window": True, "sliding_window": 32, "max_window_layers": 2}),
    ],
)
def test_upscaled_layers_equal_their_source_layer(tmp_path, preset, extra):
    from transformers import AutoModelForCausalLM

    src = save_tiny(tmp_path / "src", preset, **extra)
    out = tmp_path / "up"
    s = upscale(UpscaleConfig(model=str(src), m=1, output=str(out), max_shard_gb=60e3 / 2**30))  # forces several shards
    mp = s["layer_map"]
    assert mp == [0, 1, 2, 1, 2, 3]
    assert (out / "model.safetensors.index.json").is_file()
    a = AutoModelForCausalLM.from_pretrained(src)
    b = AutoModelForCausalLM.from_pretrained(out)
    assert b.config.num_hidden_layers == 6 == len(b.model.layers)
    if preset == "tiny-qwen2":
        src_types = a.config.layer_types
        assert src_types == ["full_attention", "full_attention", "sliding_attention", "sliding_attention"]
        assert b.config.layer_types == [src_types[i] for i in mp]
    sa, sb = a.state_dict(), b.state_dict()
    for j, i in enumerate(mp):
        layer_keys = [k for k in sa if k.startswith(f"model.layers.{i}.")]
        assert layer_keys
        for k in layer_keys:
            assert torch.equal(sb[k.replace(f"layers.{i}.", f"layers.{j}.", 1)], sa[k])
    for k in sa:
        if ".layers." not in k:
            assert torch.equal(sa[k], sb[k]), k
    # copies, not aliases: changing output layer 1 leaves output layer 3 (also source layer 1) alone
    with torch.no_grad():
        b.model.layers[1].mlp.down_proj.weight.add_(1.0)
    assert torch.equal(b.model.layers[3].mlp.down_proj.weight, a.model.layers[1].mlp.down_proj.weight)
    # no two stored tensors share memory in the files
    ptrs = set()
    for f in out.glob("*.safetensors"):
        with safe_open(str(f), framework="pt") as h:
            for k in h.keys():
                ptrs.add((f.name, k))
    assert len(ptrs) == len(sb) - (1 if b.config.tie_word_embeddings else 0)
    ids = torch.randint(0, 300, (1, 12))
    with torch.no_grad():
        assert torch.isfinite(b(ids).logits).all()
    rec = json.loads((out / "metrics.json").read_text())
    assert rec["parameters_output"] == sum(p.numel() for p in b.parameters())


def test_explicit_map_and_errors(tmp_path):
    src = save_tiny(tmp_path / "src")
    s = upscale(UpscaleConfig(model=str(src), layer_map=["0:4", 3, 3], output=str(tmp_path / "o")))
    assert s["output_layers"] == 6 and s["layer_map"] == [0, 1, 2, 3, 3, 3]
    with pytest.raises(ConfigError, match="names layers"):
        upscale(UpscaleConfig(model=str(src), layer_map=[0, 9], output=str(tmp_path / "bad")))
    assert not (tmp_path / "bad").exists()
    with pytest.raises(BielikError, match="neither"):
        upscale(UpscaleConfig(model=str(tmp_path / "nope"), m=1, output=str(tmp_path / "bad")))


def test_derived_layer_types_are_made_explicit(tmp_path):
    """An older Qwen2 config.json with max_window_layers but no layer_types."""
    from transformers import AutoConfig

    src = save_tiny(tmp_path / "src", "tiny-qwen2", use_sliding_window=True, sliding_window=32, max_window_layers=2)
    conf = json.loads((src / "config.json").read_text())
    conf.pop("layer_types")
    (src / "config.json").write_text(json.dumps(conf))
    upscale(UpscaleConfig(model=str(src), layer_map=[2, 0, 3], output=str(tmp_path / "o")))
    assert AutoConfig.from_pretrained(tmp_path / "o").layer_types == [
        "sliding_attention",
        "full_attention",
        "sliding_attention",
    ]
