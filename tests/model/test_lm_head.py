import pytest
import torch
import torch.nn.functional as F

from bielik.model.lm_head import IGNORE_INDEX, chunked_token_logprobs, fused_linear_cross_entropy


def _case(seed=0, n=257, h=32, v=500):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g, requires_grad=True)
    weight = (torch.randn(v, h, generator=g) * 0.3).requires_grad_()
    targets = torch.randint(0, v, (n,), generator=g)
    targets[::5] = IGNORE_INDEX
    return hidden, weight, targets


@pytest.mark.parametrize("chunk", [1, 64, 1000])
def test_fused_ce_matches_cross_entropy(chunk):
    hidden, weight, targets = _case()
    w = torch.rand(hidden.shape[0])
    loss, plain = fused_linear_cross_entropy(hidden, weight, targets, w, chunk=chunk)
    ref_tok = F.cross_entropy(hidden @ weight.T, targets, ignore_index=IGNORE_INDEX, reduction="none")
    ref = (ref_tok * w).sum()
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(plain, ref_tok.sum(), rtol=1e-5, atol=1e-4)
    g = torch.autograd.grad(2.5 * loss, (hidden, weight))
    r = torch.autograd.grad(2.5 * ref, (hidden, weight))
    for a, b in zip(g, r):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_fused_ce_bf16_autocast_close_to_fp32():
    hidden, weight, targets = _case(1)
    ref = F.cross_entropy(hidden @ weight.T, targets, ignore_index=IGNORE_INDEX, reduction="sum")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = fused_linear_cross_entropy(hidden, weight, targets, chunk=50)
    assert loss.dtype == torch.float32
    assert abs(loss.item() - ref.item()) / ref.item() < 1e-2
    gh, gw = torch.autograd.grad(loss, (hidden, weight))
    assert gh.dtype == hidden.dtype and gw.dtype == weight.dtype


def test_chunked_logprobs_values_and_grads():
    hidden, weight, targets = _case(2)
    lp = chunked_token_logprobs(hidden, weight, targets, chunk=40)
    ref = -F.cross_entropy(hidden @ weight.T, targets, ignore_index=IGNORE_INDEX, reduction="none")
    torch.testing.assert_close(lp, ref, rtol=1e-5, atol=1e-5)
    coef = torch.linspace(-1, 1, hidden.shape[0])
    g = torch.autograd.grad((lp.sigmoid() * coef).sum(), (hidden, weight))  # nonlinear in the log-probs
    r = torch.autograd.grad((ref.sigmoid() * coef).sum(), (hidden, weight))
    for a, b in zip(g, r):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
