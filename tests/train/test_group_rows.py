"""Shared-prompt rows: the log-probs of every completion equal those of prompt + completion run alone."""

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from bielik.train.group_rows import (
    Group,
    completion_logprobs,
    group_batch,
    plan_rows,
    sequence_sums,
    shared_prefix_mask,
)

V = 32


def _model(attn="sdpa"):
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=V,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    cfg._attn_implementation = attn
    return LlamaForCausalLM(cfg).eval()


def _groups(seed=0, n=5, k=(2, 1, 3, 2, 2)):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        prompt = rng.integers(0, V, rng.integers(1, 7))
        out.append(Group(prompt, tuple(rng.integers(0, V, rng.integers(1, 6)) for _ in range(k[i % len(k)]))))
    return out


def _alone(model, prompt, completion):
    ids = torch.tensor(np.concatenate([prompt, completion]))[None]
    logp = model(input_ids=ids, use_cache=False).logits[0, :-1].float().log_softmax(-1)
    tgt = ids[0, 1:]
    return logp.gather(1, tgt[:, None]).squeeze(1)[len(prompt) - 1 :]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("pack", [True, False])
def test_shared_prompt_logprobs_equal_separate_runs(attn, pack):
    model = _model(attn)
    groups = _groups()
    rows = plan_rows(groups, 24, pack=pack)
    assert sorted(i for r in rows for i in r) == list(range(len(groups)))
    batch = group_batch(groups, rows, pad_id=0)
    with torch.no_grad():
        got = completion_logprobs(model, batch, chunk=7)
        sums = sequence_sums(got, batch)
    order = [i for r in rows for i in r]
    expected = [_alone(model, groups[i].prompt, c) for i in order for c in groups[i].completions]
    assert torch.allclose(got, torch.cat(expected), atol=1e-5)
    assert torch.allclose(sums, torch.stack([e.sum() for e in expected]), atol=1e-5)
    assert batch["seq_group"].tolist() == [i for i in order for _ in groups[i].completions]
    assert batch["seq_part"].tolist() == [j for i in order for j in range(len(groups[i].completions))]


def test_mask_rules():
    groups = [Group(np.array([1, 2]), (np.array([3]), np.array([4, 5])))]
    b = group_batch(groups, [[0]], pad_id=0, width=7)
    m = shared_prefix_mask(b["seg"], b["part"])[0, 0].int().tolist()
    # positions: prompt 0,1 | c1 2 | c2 3,4 | pad 5,6
    assert m[2] == [1, 1, 1, 0, 0, 0, 0]
    assert m[4] == [1, 1, 0, 1, 1, 0, 0]  # the second completion does not see the first
    assert m[6] == [0, 0, 0, 0, 0, 1, 1]  # padding sees only padding
    assert b["position_ids"][0].tolist() == [0, 1, 2, 2, 3, 0, 1]
    assert b["target_src"].tolist() == [1, 1, 3] and b["target_ids"].tolist() == [3, 4, 5]


def test_single_completion_rows_need_no_mask():
    groups = [Group(np.array([1, 2]), (np.array([3, 4]),)), Group(np.array([5]), (np.array([6]),))]
    assert not bool(group_batch(groups, [[0], [1]], pad_id=0)["needs_mask"])
    assert bool(group_batch(groups, [[0, 1]], pad_id=0)["needs_mask"])
