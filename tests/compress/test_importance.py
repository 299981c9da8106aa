"""Activation-based importance: Block Influence on a constructed case, width scores against a direct
computation from the model's own activations, the aggregation alternatives, and the stage's files."""

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from bielik.compress.importance import FILE, Importance, ImportanceConfig, compute_importance, importance
from bielik.model.activations import ChannelImportance


def micro(layers=3, seed=0):
    torch.manual_seed(seed)
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=40,
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
        )
    ).eval()


def make_identity(layer):
    """A decoder layer that adds nothing to the residual stream: x_out = x_in."""
    with torch.no_grad():
        layer.self_attn.o_proj.weight.zero_()
        layer.mlp.down_proj.weight.zero_()


IDS = torch.randint(0, 40, (5, 11), generator=torch.Generator().manual_seed(1))


def test_block_influence_constructed_case():
    model = micro(4)
    make_identity(model.model.layers[1])
    imp = compute_importance(model, IDS, batch_size=2)
    bi = imp.block_influence
    assert abs(bi[1]) < 1e-12  # identity block: cos = 1 for every token
    assert (bi[[0, 2, 3]] > 1e-3).all()
    with torch.no_grad():
        h = model(IDS, output_hidden_states=True).hidden_states  # h[i] enters layer i (the last one is normed)
    for i in (0, 2):
        expected = 1 - F.cosine_similarity(h[i].double(), h[i + 1].double(), dim=-1).mean()
        assert bi[i].item() == pytest.approx(expected.item(), abs=1e-9)


def test_width_scores_match_direct_computation():
    model = micro(2)
    imp = compute_importance(model, IDS, batch_size=3)  # batches of 3 + 2: the L2 over samples spans both
    layer = model.model.layers[1]
    with torch.no_grad():  # layer 1 by hand: x = norm(h + attn(norm(h))) is what its MLP reads
        h = model(IDS, output_hidden_states=True).hidden_states[1]
        pos = model.model.rotary_emb(h, torch.arange(IDS.shape[1])[None])
        x = layer.post_attention_layernorm(h + layer.self_attn(layer.input_layernorm(h), position_embeddings=pos)[0])
        act = F.silu(layer.mlp.gate_proj(x)) * layer.mlp.up_proj(x)  # (B, T, F)
    expected = act.abs().double().mean(1).square().sum(0).sqrt()  # mean over the sequence, L2 over the batch
    torch.testing.assert_close(imp.ffn[1], expected, rtol=1e-6, atol=1e-9)
    assert len(imp.heads[0]) == 4 and len(imp.hidden) == 32 and (imp.hidden > 0).all()


def test_head_scores_are_head_output_norms():
    model = micro(1)
    captured = []
    h = model.model.layers[0].self_attn.o_proj.register_forward_pre_hook(lambda m, a: captured.append(a[0].detach()))
    imp = compute_importance(model, IDS, batch_size=5)
    h.remove()
    per_head = captured[0].unflatten(-1, (4, 8)).norm(dim=-1).double()  # (B, T, heads)
    torch.testing.assert_close(imp.heads[0], per_head.mean(1).square().sum(0).sqrt())


def test_aggregation_alternatives_by_hand():
    a = torch.tensor([[[1.0, 0.0], [3.0, 2.0]], [[2.0, 2.0], [2.0, 0.0]]])  # (B=2, T=2, C=2)

    def agg(seq, batch):
        s = ChannelImportance(seq, batch)
        s.update(a[:1])
        s.update(a[1:])  # two calls = one batch of two
        return s.result().tolist()

    assert agg("mean", "l2") == pytest.approx([math.sqrt(2**2 + 2**2), math.sqrt(1 + 1)])
    assert agg("mean", "mean") == pytest.approx([2.0, 1.0])
    assert agg("max", "max") == pytest.approx([3.0, 2.0])
    assert agg("l2", "mean") == pytest.approx([(math.sqrt(10) + math.sqrt(8)) / 2, (2 + 2) / 2])


def test_stage_writes_file_plot_and_record(tmp_path, tiny_model):
    out = tmp_path / "imp"
    summary = importance(
        ImportanceConfig(model=str(tiny_model), output=str(out), text={"chars": 20_000}, ctx=32, samples=8)
    )
    for f in (FILE, "importance.json", "importance.png", "metrics.json", "lineage.json", "config.yaml"):
        assert (out / f).is_file(), f
    imp = Importance.load(out)
    assert len(imp.block_influence) == summary["layers"] == 2 and imp.meta["windows"] == "8"
    assert sorted(summary["layers_by_influence"]) == [0, 1]
    from bielik.errors import BielikError

    with pytest.raises(BielikError, match="already exists"):
        importance(ImportanceConfig(model=str(tiny_model), output=str(out)))
