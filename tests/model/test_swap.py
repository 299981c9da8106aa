import json

import pytest
import torch

from bielik.errors import BielikError
from bielik.model.swap import SwapTokenizerConfig, canonical_vocab, match_tokens, sparsemax, swap_tokenizer
from bielik.tokenizer.formats import load_hf_tokenizer
from tests.conftest import polish_sp_tokenizer
from tests.model.tiny_models import save_tiny

FAST_FT = {"dim": 32, "epochs": 2, "min_count": 3}


def _simplex_projection(z: torch.Tensor) -> torch.Tensor:
    """Reference: argmin_p ||p - z||² on the simplex, τ found by bisection on Σ max(z - τ, 0) = 1."""
    lo, hi = z.min().item() - 1, z.max().item()
    for _ in range(200):
        mid = (lo + hi) / 2
        if torch.clamp(z - mid, min=0).sum() > 1:
            lo = mid
        else:
            hi = mid
    return torch.clamp(z - (lo + hi) / 2, min=0)


def _simplex_fit(anchors: torch.Tensor, row: torch.Tensor, iters: int = 2000) -> torch.Tensor:
    """argmin_w ||anchorsᵀ w - row|| over the probability simplex (FISTA; sparsemax is the projection)."""
    n = anchors.shape[0]
    w = y = torch.full((n,), 1 / n, dtype=anchors.dtype)
    step, t = 1 / torch.linalg.matrix_norm(anchors, 2) ** 2, 1.0
    for _ in range(iters):
        w_next = sparsemax(y - step * (anchors @ (anchors.T @ y - row)))
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        y = w_next + (t - 1) / t_next * (w_next - w)
        w, t = w_next, t_next
    return w


def test_sparsemax_is_the_simplex_projection():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(64, 50, generator=gen, dtype=torch.float64) * 3
    p = sparsemax(z)
    assert torch.all(p >= 0)
    torch.testing.assert_close(p.sum(1), torch.ones(64, dtype=torch.float64))
    for row in range(64):
        torch.testing.assert_close(p[row], _simplex_projection(z[row]), atol=1e-9, rtol=0)
    assert (p > 0).sum(1).float().mean() < 50  # sparse, unlike softmax
    torch.testing.assert_close(sparsemax(torch.tensor([[0.1, 0.3]])), torch.tensor([[0.4, 0.6]]))
    torch.testing.assert_close(sparsemax(torch.tensor([[5.0, 0.0, 0.0]])), torch.tensor([[1.0, 0.0, 0.0]]))


@pytest.fixture(scope="module")
def sp_tok(tmp_path_factory):
    return polish_sp_tokenizer(tmp_path_factory, vocab_size=1024, max_chars=400_000)


def test_matching_across_space_markers(tiny_tokenizer, sp_tok):
    from transformers import AutoTokenizer

    byte_level, metaspace = AutoTokenizer.from_pretrained(tiny_tokenizer), AutoTokenizer.from_pretrained(sp_tok)
    bl, ms = canonical_vocab(byte_level), canonical_vocab(metaspace)
    assert byte_level(" się", add_special_tokens=False).input_ids == [bl["▁się"]]  # 'Ġsi' + two byte symbols of 'ę'
    assert ms["▁się"] == metaspace.convert_tokens_to_ids("▁się")
    assert ms["<0xC4>"] == metaspace.convert_tokens_to_ids("<0xC4>") and bl[
        "<0xC4>"
    ] == byte_level.convert_tokens_to_ids("Ä")
    assert bl["<special:bos>"] == byte_level.bos_token_id and ms["<special:eos>"] == metaspace.eos_token_id
    shared, new = match_tokens(byte_level, metaspace)
    assert shared[metaspace.convert_tokens_to_ids("▁się")] == bl["▁się"]
    assert shared[metaspace.bos_token_id] == byte_level.bos_token_id
    assert sorted([*shared, *new]) == list(range(len(metaspace)))


@pytest.mark.parametrize("preset", ["tiny-llama", "tiny-qwen2"])
def test_focus_swap_copies_shared_and_combines_new(tmp_path, tiny_tokenizer, sp_tok, preset):
    from transformers import AutoModelForCausalLM

    src = save_tiny(tmp_path / "src", preset, tokenizer=tiny_tokenizer, vocab_size=2048)
    out = tmp_path / "swapped"
    s = swap_tokenizer(
        SwapTokenizerConfig(
            model=str(src), tokenizer=str(sp_tok), output=str(out), init="focus", max_chars=400_000, fasttext=FAST_FT
        )
    )
    a, b = AutoModelForCausalLM.from_pretrained(src), AutoModelForCausalLM.from_pretrained(out)
    tgt = load_hf_tokenizer(out)
    assert len(tgt) == 1024 == b.config.vocab_size == b.get_input_embeddings().weight.shape[0]
    assert b.config.eos_token_id == tgt.eos_token_id
    shared, new = match_tokens(load_hf_tokenizer(src), tgt)
    assert s["shared"] == len(shared) > 100 and s["new"] == len(new)
    assert s["new_focus"] > 20 and s["new_focus"] + s["new_random"] == len(
        new
    )  # random: unseen in the corpus (byte tokens)
    ea, eb = a.get_input_embeddings().weight, b.get_input_embeddings().weight
    t_ids = torch.tensor(list(shared))
    assert torch.equal(eb[t_ids], ea[torch.tensor([shared[t] for t in t_ids.tolist()])])
    if preset == "tiny-llama":  # untied head: shared rows copied too
        assert torch.equal(b.lm_head.weight[t_ids], a.lm_head.weight[torch.tensor([shared[t] for t in t_ids.tolist()])])
    else:
        assert b.lm_head.weight.data_ptr() == b.get_input_embeddings().weight.data_ptr()
    # every FOCUS row is a convex combination of shared tokens' source rows: fit weights on the
    # simplex and check they rebuild the row (new[0] is a byte token unseen in the corpus, drawn at
    # random, ~0.7 of its norm away from that hull; unconstrained least squares would fit any row)
    anchors = ea[torch.tensor(sorted(set(shared.values())))].double()
    focus_id = next(i for i in tgt("Rzeczpospolita", add_special_tokens=False).input_ids if i in set(new))
    row = eb[focus_id].double()
    inside = _simplex_fit(anchors, row)
    assert torch.all(inside >= 0) and abs(inside.sum().item() - 1) < 1e-9
    torch.testing.assert_close(anchors.T @ inside, row, atol=1e-4, rtol=0)
    assert s["sparsemax_support_mean"] >= 1
    ids = tgt("Rzeczpospolita Polska jest dobrem wspólnym.", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.isfinite(b(ids).logits).all()
    assert json.loads((out / "metrics.json").read_text())["init"] == "focus"


def test_mean_and_random_inits(tmp_path, tiny_tokenizer, sp_tok):
    from transformers import AutoModelForCausalLM

    src = save_tiny(tmp_path / "src", tokenizer=tiny_tokenizer, vocab_size=2048)
    a = AutoModelForCausalLM.from_pretrained(src)
    shared, new = match_tokens(load_hf_tokenizer(src), load_hf_tokenizer(sp_tok))
    swap_tokenizer(
        SwapTokenizerConfig(model=str(src), tokenizer=str(sp_tok), output=str(tmp_path / "mean"), init="mean")
    )
    m = AutoModelForCausalLM.from_pretrained(tmp_path / "mean")
    mu = a.get_input_embeddings().weight.mean(0)
    torch.testing.assert_close(m.get_input_embeddings().weight[torch.tensor(new)], mu.expand(len(new), -1))
    torch.testing.assert_close(m.lm_head.weight[new[0]], a.lm_head.weight.mean(0))
    s = swap_tokenizer(
        SwapTokenizerConfig(model=str(src), tokenizer=str(sp_tok), output=str(tmp_path / "rnd"), init="random")
    )
    r = AutoModelForCausalLM.from_pretrained(tmp_path / "rnd").get_input_embeddings().weight[torch.tensor(new)]
    assert s["new_random"] == len(new)
    src_w = a.get_input_embeddings().weight
    assert abs(r.std(0).mean() - src_w.std(0).mean()) < 0.2 * src_w.std(0).mean()


def test_wrong_source_tokenizer_is_refused(tmp_path, tiny_tokenizer, sp_tok):
    src = save_tiny(tmp_path / "src", vocab_size=300)
    with pytest.raises(BielikError, match="300 embedding rows but its tokenizer has 2048"):
        swap_tokenizer(
            SwapTokenizerConfig(
                model=str(src), source_tokenizer=str(tiny_tokenizer), tokenizer=str(sp_tok), output=str(tmp_path / "x")
            )
        )
    assert not (tmp_path / "x").exists()
