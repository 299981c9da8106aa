"""Structured pruning of HF checkpoints: exactness at 100%, valid shapes that transformers opens with the
planned parameter count, GQA-consistent heads, and units that carry nothing pruned without a change."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from bielik.compress.importance import Importance, compute_importance
from bielik.compress.prune import PruneConfig, prune, select_heads, top_indices
from bielik.compress.shape import Shape, count_params
from bielik.errors import BielikError, ConfigError
from bielik.model.factory import ParamCount, build_config, build_model
from tests.model.tiny_models import SMALL

IDS = torch.randint(0, 300, (4, 16), generator=torch.Generator().manual_seed(0))
D = 16  # head_dim of the test models (hidden 64, 4 heads)


def tiny(preset="tiny-llama", seed=1, **fields):
    return build_model(build_config(preset, **{**SMALL, **fields}), seed=seed).eval()


def save(model, path: Path, tokenizer: Path | None = None) -> Path:
    model.save_pretrained(path)
    if tokenizer is not None:
        from bielik.tokenizer.formats import load_hf_tokenizer

        load_hf_tokenizer(tokenizer).save_pretrained(path)
    return path


def with_importance(model, path: Path) -> Path:
    compute_importance(model, IDS, batch_size=2).save(path / "imp.safetensors")
    return path / "imp.safetensors"


def logits(model_or_dir, ids=IDS):
    m = (
        model_or_dir
        if isinstance(model_or_dir, torch.nn.Module)
        else AutoModelForCausalLM.from_pretrained(model_or_dir).eval()
    )
    with torch.no_grad():
        return m(ids).logits


def run(tmp_path, src: Path, imp: Path | None, name="out", **target) -> tuple[dict, Path]:
    out = tmp_path / name
    return prune(PruneConfig(model=str(src), importance=str(imp) if imp else None, output=str(out), **target)), out


CASES = [
    ("tiny-llama", {}),
    ("tiny-llama", {"attention_bias": True, "mlp_bias": True}),
    ("tiny-mistral", {"head_dim": D}),
    ("tiny-qwen2", {}),
]


@pytest.mark.parametrize("preset,extra", CASES)
def test_keeping_everything_reproduces_logits_exactly(tmp_path, preset, extra):
    model = tiny(preset, **extra)
    src = save(model, tmp_path / "src")
    s, out = run(
        tmp_path,
        src,
        with_importance(model, tmp_path),
        layers=4,
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    assert s["parameters"] == s["parameters_source"] and s["kept_layers"] == [0, 1, 2, 3]
    assert torch.equal(logits(out), logits(model))


@pytest.mark.parametrize("preset,extra", CASES)
def test_pruned_shape_opens_in_transformers_with_the_planned_count(tmp_path, preset, extra, tiny_tokenizer):
    model = tiny(preset, **extra)
    src = save(model, tmp_path / "src", tokenizer=tiny_tokenizer)
    s, out = run(
        tmp_path,
        src,
        with_importance(model, tmp_path),
        layers=3,
        hidden_size=48,
        intermediate_size=96,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    pruned = AutoModelForCausalLM.from_pretrained(out)
    c = pruned.config
    assert (
        c.num_hidden_layers,
        c.hidden_size,
        c.intermediate_size,
        c.num_attention_heads,
        c.num_key_value_heads,
        c.head_dim,
    ) == (3, 48, 96, 2, 1, D)
    assert ParamCount.of(pruned).total == s["parameters"] == count_params(Shape.of(c)) < s["parameters_source"]
    assert pruned.model.layers[0].self_attn.q_proj.weight.shape == (2 * D, 48)
    assert (pruned.get_output_embeddings().weight is pruned.get_input_embeddings().weight) == bool(
        c.tie_word_embeddings
    )
    if preset == "tiny-qwen2":
        assert pruned.model.layers[0].self_attn.k_proj.bias.shape == (D,) and len(c.layer_types) == 3
    assert logits(pruned).shape == (4, 16, 300) and torch.isfinite(logits(pruned)).all()
    from bielik.tokenizer.formats import load_hf_tokenizer

    assert load_hf_tokenizer(out)("Ala ma kota").input_ids == load_hf_tokenizer(src)("Ala ma kota").input_ids
    for f in ("metrics.json", "lineage.json", "config.yaml"):
        assert (out / f).is_file()


def test_select_heads_keeps_whole_gqa_groups():
    scores = torch.tensor([1.0, 5.0, 4.0, 3.0, 9.0, 0.5])  # 3 KV groups of 2 query heads: sums 6, 7, 9.5
    assert select_heads(scores, n_kv=3, keep_kv=2, keep_q=4) == ([2, 3, 4, 5], [1, 2])
    assert select_heads(scores, n_kv=3, keep_kv=2, keep_q=2) == ([2, 4], [1, 2])  # best head of each kept group
    assert select_heads(scores, n_kv=3, keep_kv=3, keep_q=3) == ([1, 2, 4], [0, 1, 2])
    assert select_heads(scores, n_kv=3, keep_kv=3, keep_q=6) == (None, None)
    assert top_indices(torch.tensor([3.0, 1.0, 2.0]), 2).tolist() == [0, 2] and top_indices(torch.ones(3), 3) is None


def test_dead_kv_group_is_pruned_without_changing_the_logits(tmp_path):
    model = tiny()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.v_proj.weight[D:].zero_()  # KV group 1: its query heads (2, 3) output exactly zero
    src = save(model, tmp_path / "src")
    imp = with_importance(model, tmp_path)
    assert all(h[2:].abs().max() == 0 and h[:2].min() > 0 for h in Importance.load(imp).heads)
    s, out = run(tmp_path, src, imp, num_key_value_heads=1)
    assert s["shape"]["heads"] == 2 and s["shape"]["kv_heads"] == 1  # the query heads went with their group
    w, w0 = load_file(out / "model.safetensors"), load_file(src / "model.safetensors")
    assert torch.equal(w["model.layers.0.self_attn.k_proj.weight"], w0["model.layers.0.self_attn.k_proj.weight"][:D])
    assert torch.equal(
        w["model.layers.0.self_attn.o_proj.weight"], w0["model.layers.0.self_attn.o_proj.weight"][:, : 2 * D]
    )
    torch.testing.assert_close(logits(out), logits(model), rtol=0, atol=1e-5)


def test_dead_neurons_and_an_identity_layer_pruned_without_changing_the_logits(tmp_path):
    model = tiny()
    dead = torch.arange(0, 128, 2)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mlp.up_proj.weight[dead] = 0  # act(gate)·up = 0 for these neurons
        model.model.layers[2].self_attn.o_proj.weight.zero_()  # layer 2 leaves the residual stream as it is
        model.model.layers[2].mlp.down_proj.weight.zero_()
    src = save(model, tmp_path / "src")
    s, out = run(tmp_path, src, with_importance(model, tmp_path), layers=3, intermediate_size=64)
    assert s["dropped_layers"] == [2] and s["depth_criterion"] == "block_influence"
    w, w0 = load_file(out / "model.safetensors"), load_file(src / "model.safetensors")
    assert torch.equal(
        w["model.layers.2.mlp.up_proj.weight"], w0["model.layers.3.mlp.up_proj.weight"][1::2]
    )  # renumbered
    torch.testing.assert_close(logits(out), logits(model), rtol=0, atol=1e-5)


def test_depth_last_and_explicit_drop(tmp_path):
    model = tiny()
    src = save(model, tmp_path / "src")
    s, _ = run(tmp_path, src, None, "last", layers=2, depth="last")
    assert s["kept_layers"] == [0, 1]
    s, out = run(tmp_path, src, None, "drop", drop_layers=[1, 3])
    assert s["kept_layers"] == [0, 2]
    w, w0 = load_file(out / "model.safetensors"), load_file(src / "model.safetensors")
    assert torch.equal(w["model.layers.1.self_attn.q_proj.weight"], w0["model.layers.2.self_attn.q_proj.weight"])


def test_hidden_channels_sliced_consistently(tmp_path):
    model = tiny("tiny-qwen2")
    src = save(model, tmp_path / "src")
    imp = with_importance(model, tmp_path)
    _, out = run(tmp_path, src, imp, hidden_size=40)
    keep = top_indices(Importance.load(imp).hidden, 40)
    w, w0 = load_file(out / "model.safetensors"), load_file(src / "model.safetensors")
    assert torch.equal(w["model.embed_tokens.weight"], w0["model.embed_tokens.weight"][:, keep])
    assert torch.equal(w["model.norm.weight"], w0["model.norm.weight"][keep])
    assert torch.equal(w["model.layers.1.mlp.down_proj.weight"], w0["model.layers.1.mlp.down_proj.weight"][keep])
    assert torch.equal(
        w["model.layers.1.self_attn.q_proj.bias"], w0["model.layers.1.self_attn.q_proj.bias"]
    )  # heads all kept
    assert "lm_head.weight" not in w  # tied


def test_clear_errors(tmp_path):
    model = tiny()
    src = save(model, tmp_path / "src")
    with pytest.raises(ConfigError, match="needs an importance file"):
        run(tmp_path, src, None, intermediate_size=64)
    with pytest.raises(ConfigError, match="needs an importance file"):
        run(tmp_path, src, None, layers=2)  # depth by Block Influence
    with pytest.raises(ConfigError, match="num_attention_heads=3 must be a multiple"):
        run(tmp_path, src, None, num_attention_heads=3, num_key_value_heads=2)
    other = tiny(num_hidden_layers=2)
    with pytest.raises(BielikError, match="another shape"):
        run(tmp_path, src, with_importance(other, tmp_path), layers=2)
    with pytest.raises(ConfigError, match="not both"):
        run(tmp_path, src, None, layers=2, drop_layers=[0])
    assert not (tmp_path / "out").exists()
