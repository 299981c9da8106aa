import pytest
import torch

from bielik.errors import BielikError
from bielik.model.merge import MergeConfig, merge
from tests.model.tiny_models import save_tiny


def _sd(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).state_dict()


def test_weighted_average_matches_reference(tmp_path):
    paths = [save_tiny(tmp_path / f"m{i}", seed=i) for i in range(3)]
    out = tmp_path / "merged"
    merge(MergeConfig(models=[str(p) for p in paths], weights=[1, 2, 5], output=str(out), max_shard_gb=50e3 / 2**30))
    sds = [_sd(p) for p in paths]
    merged = _sd(out)
    assert set(merged) == set(sds[0])
    for k in merged:
        ref = (1 * sds[0][k] + 2 * sds[1][k] + 5 * sds[2][k]) / 8
        torch.testing.assert_close(merged[k], ref, rtol=1e-6, atol=1e-7)
    assert not torch.equal(
        merged["model.layers.0.self_attn.q_proj.weight"], sds[0]["model.layers.0.self_attn.q_proj.weight"]
    )


def test_identity_and_unnormalised_sum(tmp_path):
    a = save_tiny(tmp_path / "a", seed=0)
    b = save_tiny(tmp_path / "b", seed=1)
    merge(MergeConfig(models=[str(a), str(a)], output=str(tmp_path / "same")))
    for k, v in _sd(tmp_path / "same").items():
        assert torch.equal(v, _sd(a)[k])
    merge(
        MergeConfig(
            models=[str(a), str(b)],
            weights=[1.0, -1.0],
            normalize=False,
            output=str(tmp_path / "diff"),
            dtype="bfloat16",
        )
    )
    d, sa, sb = _sd(tmp_path / "diff"), _sd(a), _sd(b)
    k = "model.layers.1.mlp.up_proj.weight"
    assert d[k].dtype == torch.bfloat16
    torch.testing.assert_close(d[k], (sa[k] - sb[k]).to(torch.bfloat16))


def test_shape_mismatch_names_the_tensor(tmp_path):
    a = save_tiny(tmp_path / "a")
    b = save_tiny(tmp_path / "b", intermediate_size=192)
    with pytest.raises(BielikError, match=r"tensor model\.layers\.0\.mlp\.(down|gate|up)_proj\.weight has shape"):
        merge(MergeConfig(models=[str(a), str(b)], output=str(tmp_path / "x")))
    assert not (tmp_path / "x").exists()
    c = save_tiny(tmp_path / "c", vocab_size=320)
    with pytest.raises(BielikError, match=r"tensor (model\.embed_tokens|lm_head)\.weight .*vocabularies differ"):
        merge(MergeConfig(models=[str(a), str(c)], output=str(tmp_path / "x")))
    d = save_tiny(tmp_path / "d", num_hidden_layers=3)
    with pytest.raises(BielikError, match=r"tensor model\.layers\.3\..* is missing"):
        merge(MergeConfig(models=[str(a), str(d)], output=str(tmp_path / "x")))


def test_same_size_different_vocab_is_refused(tmp_path, tiny_tokenizer):
    import json

    a = save_tiny(tmp_path / "a", tokenizer=tiny_tokenizer, vocab_size=2048 + 16)
    b = save_tiny(tmp_path / "b", tokenizer=tiny_tokenizer, vocab_size=2048 + 16)
    tj = json.loads((b / "tokenizer.json").read_text())
    vocab = tj["model"]["vocab"]
    t1, t2 = sorted(vocab, key=vocab.get)[500:502]
    vocab[t1], vocab[t2] = vocab[t2], vocab[t1]
    (b / "tokenizer.json").write_text(json.dumps(tj))
    with pytest.raises(BielikError, match="vocabularies .* differ"):
        merge(MergeConfig(models=[str(a), str(b)], output=str(tmp_path / "x")))


def test_config_validation():
    with pytest.raises(ValueError, match="2 weights for 3 models"):
        MergeConfig(models=["a", "b", "c"], weights=[1, 2])
    with pytest.raises(ValueError):
        MergeConfig(models=["a"])
