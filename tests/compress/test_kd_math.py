"""The distillation maths on random tensors: the pure functions against an independent naive reference
(F.kl_div on full logits, explicitly coarsened distributions), and the chunked fused version against
autograd through the full logits — values and gradients."""

import pytest
import torch
import torch.nn.functional as F

from bielik.train.objectives.kd import forward_kl, fused_linear_kd, teacher_topk, topk_forward_kl

N, H, HT, V = 29, 12, 10, 37


def naive_kl(zs, zt, tau):
    """τ²·KL(p‖q) with torch's own kl_div (input = log q, target = log p)."""
    return tau**2 * F.kl_div(
        F.log_softmax(zs / tau, -1), F.log_softmax(zt / tau, -1), log_target=True, reduction="none"
    ).sum(-1)


def coarsened_kl(zs, zt, k, tau):
    """KL between p and q summed into (each of the teacher's top-k tokens, everything else), built explicitly."""
    p, q = F.softmax(zt / tau, -1), F.softmax(zs / tau, -1)
    ids = zt.topk(k, -1).indices
    in_k = torch.zeros_like(p, dtype=torch.bool).scatter(1, ids, True)
    pc = torch.cat([p.gather(1, ids), (p * ~in_k).sum(-1, keepdim=True)], 1)
    qc = torch.cat([q.gather(1, ids), (q * ~in_k).sum(-1, keepdim=True)], 1)
    return tau**2 * (torch.xlogy(pc, pc) - pc * qc.log()).sum(-1)


def rand(*shape, seed, scale=3.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).float() * scale


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_forward_kl_matches_kl_div(tau):
    zs, zt = rand(N, V, seed=0), rand(N, V, seed=1)
    torch.testing.assert_close(forward_kl(zs, zt, tau), naive_kl(zs, zt, tau), rtol=1e-5, atol=1e-6)
    assert forward_kl(zt, zt, tau).abs().max() < 1e-5  # KL(p‖p) = 0


@pytest.mark.parametrize("k", [1, 5, V - 1])
def test_topk_kl_is_the_coarsened_kl_and_bounded_by_the_full_one(k):
    zs, zt = rand(N, V, seed=2), rand(N, V, seed=3)
    vals, ids, lse = teacher_topk(zt, k, tau=1.5)
    got = topk_forward_kl(zs, vals, ids, lse, tau=1.5)
    torch.testing.assert_close(got, coarsened_kl(zs, zt, k, 1.5), rtol=1e-4, atol=1e-5)
    full = forward_kl(zs, zt, 1.5)
    assert (got <= full + 1e-4).all()
    if k == V - 1:  # the "rest" bucket is a single token: nothing is lost
        torch.testing.assert_close(got, full, rtol=1e-4, atol=1e-5)


def _targets():
    y = torch.randint(0, V, (N,), generator=torch.Generator().manual_seed(4))
    y[[0, 7, 8]] = -100
    return y


def _leaves():
    h = rand(N, H, seed=5, scale=1.0).requires_grad_()
    w = rand(V, H, seed=6, scale=1.0).requires_grad_()
    return h, w


@pytest.mark.parametrize("alpha,tau,chunk", [(0.0, 1.0, 7), (0.0, 2.0, 64), (0.3, 2.0, 5), (1.0, 1.0, 8)])
def test_chunked_full_vocab_kd_equals_naive(alpha, tau, chunk):
    y = _targets()
    valid = (y != -100).float()
    ht, wt = rand(N, HT, seed=7, scale=1.0), rand(V, HT, seed=8, scale=1.0)
    h, w = _leaves()
    loss, ce, kl, agree = fused_linear_kd(h, w, y, {"hidden": ht, "weight": wt}, tau=tau, alpha=alpha, chunk=chunk)
    loss.backward()
    gh, gw = h.grad.clone(), w.grad.clone()

    h2, w2 = _leaves()
    zs, zt = h2 @ w2.T, ht @ wt.T
    ce_ref = F.cross_entropy(zs, y, ignore_index=-100, reduction="none")
    kd_ref = naive_kl(zs, zt, tau) * valid
    ref = alpha * ce_ref.sum() + (1 - alpha) * kd_ref.sum()
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ce, ce_ref.sum().detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gh, h2.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(gw, w2.grad, rtol=1e-4, atol=1e-6)
    if alpha < 1:
        torch.testing.assert_close(kl, (kd_ref.sum() / tau**2).detach(), rtol=1e-5, atol=1e-5)
        assert agree == float(((zs.argmax(-1) == zt.argmax(-1)).float() * valid).sum())


@pytest.mark.parametrize("k,alpha", [(4, 0.0), (9, 0.5)])
def test_chunked_topk_kd_equals_dense_topk_kd(k, alpha):
    y = _targets()
    valid = (y != -100).float()
    vals, ids, lse = teacher_topk(rand(N, V, seed=9), k, tau=2.0)
    h, w = _leaves()
    loss, _, kl, _ = fused_linear_kd(h, w, y, {"vals": vals, "ids": ids, "lse": lse}, tau=2.0, alpha=alpha, chunk=6)
    loss.backward()
    h2, w2 = _leaves()
    zs = h2 @ w2.T
    kd_ref = topk_forward_kl(zs, vals, ids, lse, 2.0) * valid
    ref = alpha * F.cross_entropy(zs, y, ignore_index=-100, reduction="sum") + (1 - alpha) * kd_ref.sum()
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(kl, (kd_ref.sum() / 4).detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h.grad, h2.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(w.grad, w2.grad, rtol=1e-4, atol=1e-6)


def test_bf16_autocast_close_to_fp32():
    y = _targets()
    ht, wt = rand(N, HT, seed=7, scale=1.0), rand(V, HT, seed=8, scale=1.0)
    h, w = _leaves()
    ref = fused_linear_kd(h, w, y, {"hidden": ht, "weight": wt}, chunk=8)[0].detach()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = fused_linear_kd(h, w, y, {"hidden": ht, "weight": wt}, chunk=8)[0].detach()
    assert abs(low.item() - ref.item()) < 0.05 * ref.item()
