"""The surgery stages as recipe stages: the same functions through bielik.recipe."""

import json

import torch
import yaml

from bielik.recipe import load_recipe, run_recipe
from tests.model.tiny_models import save_tiny


def test_upscale_then_merge_recipe(tmp_path, tiny_tokenizer):
    src = save_tiny(tmp_path / "src", tokenizer=tiny_tokenizer, vocab_size=2048)
    recipe = {
        "name": "surgery",
        "run_dir": str(tmp_path / "run"),
        "stages": {
            "stats": {
                "kind": "tokenizer.stats",
                "config": {"tokenizers": {"tiny": str(tiny_tokenizer)}, "chart": False},
            },
            "up": {"kind": "model.upscale", "config": {"model": str(src), "m": 1}},
            "up2": {"kind": "model.upscale", "config": {"model": str(src), "layer_map": ["0:3", "1:4"]}},
            "soup": {"kind": "model.merge", "config": {"models": ["${up}", "${up2}"], "weights": [3, 1]}},
        },
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    run_recipe(load_recipe(path))
    run = tmp_path / "run"
    assert "| tiny | 2,048 |" in (run / "stats" / "stats.md").read_text()
    from transformers import AutoModelForCausalLM

    a, b, m = (AutoModelForCausalLM.from_pretrained(run / n) for n in ("up", "up2", "soup"))
    assert m.config.num_hidden_layers == 6
    w = "model.layers.3.self_attn.o_proj.weight"
    torch.testing.assert_close(m.state_dict()[w], 0.75 * a.state_dict()[w] + 0.25 * b.state_dict()[w])
    assert json.loads((run / "soup" / "metrics.json").read_text())["coefficients"] == [0.75, 0.25]
    assert run_recipe(load_recipe(path))["soup"] == str(run / "soup")  # done: skipped on a re-run
