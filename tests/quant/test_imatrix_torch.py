"""The PyTorch-hook importance matrix against a direct computation, and its file format (no llama.cpp needed)."""

import numpy as np
import pytest
import torch

from bielik.errors import BielikError
from bielik.quant.imatrix import imatrix_entries, torch_imatrix, write_imatrix


@pytest.fixture(scope="module")
def model(tiny_model):
    from bielik.model.loading import load_hf_model

    return load_hf_model(tiny_model).eval()


def test_sums_of_squares_match_direct_computation(model):
    ids = torch.randint(4, model.config.vocab_size, (40,), generator=torch.Generator().manual_seed(0)).tolist()
    entries, windows = torch_imatrix(model, ids, ctx=16, bos_id=1)
    assert windows == 2  # 40 // 16: the tail is dropped, as llama-imatrix does
    names = {
        f"blk.{i}.{n}.weight"
        for i in range(2)
        for n in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
    }
    assert set(entries) == names
    x = torch.tensor([ids[:16], ids[16:32]])
    x[:, 0] = 1
    with torch.no_grad():
        h = model(input_ids=x, output_hidden_states=True).hidden_states
        normed0 = model.model.layers[0].input_layernorm(h[0])
    expected = (normed0.double() ** 2).sum(dim=(0, 1)).numpy()
    for n in ("attn_q", "attn_k", "attn_v"):  # q, k and v read the same normalised input
        s, count = entries[f"blk.0.{n}.weight"]
        assert count == 32
        np.testing.assert_allclose(s, expected, rtol=1e-10)
    assert entries["blk.0.ffn_down.weight"][0].shape == (model.config.intermediate_size,)


def test_file_round_trip(model, tmp_path):
    ids = list(range(4, 68))
    entries, windows = torch_imatrix(model, ids, ctx=32, bos_id=None)
    write_imatrix(tmp_path / "imatrix.gguf", entries, "llama", windows, 32, "calibration.txt")
    back = imatrix_entries(tmp_path / "imatrix.gguf")
    assert set(back) == set(entries)
    s, c = back["blk.1.ffn_up.weight"]
    np.testing.assert_allclose(s.ravel(), entries["blk.1.ffn_up.weight"][0].astype(np.float32))
    assert float(c.ravel()[0]) == 64


def test_too_little_text_is_a_clear_error(model):
    with pytest.raises(BielikError, match="fewer than one window"):
        torch_imatrix(model, [5, 6, 7], ctx=16, bos_id=None)
