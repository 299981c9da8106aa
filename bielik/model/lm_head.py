"""LM head + loss without materialising the (batch, seq, vocab) logits.

The vocabulary projection dominates memory (and, for small models, time): a 32k vocabulary at 4,096
tokens x batch 4 is 2 GB of fp32 logits, plus as much again for their gradient. Both functions here
walk the tokens in chunks of ``chunk`` rows, so at most (chunk, vocab) logits exist at once.

* :func:`fused_linear_cross_entropy` — for objectives whose loss is a weighted *sum* of per-token
  cross-entropies (causal LM, weighted instruction CE, KD is not of this form). Because
  d/dz [w·CE(z, y)] = w·(softmax(z) − onehot(y)) is known in the forward pass, the gradients of the
  hidden states and the head weight are accumulated chunk by chunk during the forward and only
  scaled in the backward — no logits are kept and none are recomputed (the idea of Liger-Kernel's
  fused linear cross-entropy).
* :func:`chunked_token_logprobs` — log p(y_t) per token, for objectives that are nonlinear in the
  per-token values (DPO-P, GRPO). Each chunk runs under activation checkpointing, so its logits are
  recomputed in the backward pass instead of stored.
"""

from __future__ import annotations

import contextlib

import torch
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100


def _compute_dtype(t: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    if torch.is_autocast_enabled(t.device.type):
        return torch.get_autocast_dtype(t.device.type)
    return weight.dtype


def _no_autocast(device_type: str):
    return torch.autocast(device_type, enabled=False) if device_type in ("cpu", "cuda") else contextlib.nullcontext()


class _FusedLinearCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, token_weights, chunk, dtype):  # noqa: ANN001
        n = hidden.shape[0]
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        w_c = weight.to(dtype)
        weighted = hidden.new_zeros((), dtype=torch.float32)
        plain = hidden.new_zeros((), dtype=torch.float32)
        with _no_autocast(hidden.device.type):
            for s in range(0, n, chunk):
                h = hidden[s : s + chunk].to(dtype)
                t = targets[s : s + chunk]
                valid = t != IGNORE_INDEX
                t0 = torch.where(valid, t, 0)
                logits = (h @ w_c.T).float()  # (c, V); the only (c, V) buffer, reused in place below
                z_t = logits.gather(1, t0[:, None])
                m = logits.amax(dim=-1, keepdim=True)
                e = logits.sub_(m).exp_()  # exp(z - max): one exp per logit, shared by loss and gradient
                total = e.sum(dim=-1, keepdim=True)
                ce = ((m + total.log()) - z_t).squeeze(1) * valid
                tw = valid.float() if token_weights is None else token_weights[s : s + chunk].float() * valid
                weighted += (ce * tw).sum()
                plain += ce.sum()
                if need_h or need_w:
                    g = e.mul_(tw[:, None] / total)  # w·softmax(z)
                    g.scatter_add_(1, t0[:, None], -tw[:, None])  # − w·onehot(y)
                    g = g.to(dtype)
                    if need_h:
                        grad_h[s : s + chunk] = (g @ w_c).to(hidden.dtype)
                    if need_w:
                        if dtype == torch.float32:
                            grad_w.addmm_(g.T, h)
                        else:  # matmul in the compute dtype, accumulate in fp32
                            grad_w += (g.T @ h).float()
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        ctx.mark_non_differentiable(plain)
        return weighted, plain

    @staticmethod
    def backward(ctx, grad_weighted, grad_plain):  # noqa: ANN001
        grad_h, grad_w = ctx.saved_tensors
        gh = None if grad_h is None else grad_h * grad_weighted.to(grad_h.dtype)
        gw = None if grad_w is None else (grad_w * grad_weighted).to(ctx.weight_dtype)
        return gh, gw, None, None, None, None


def fused_linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    token_weights: torch.Tensor | None = None,
    chunk: int = 2048,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (Σ_i w_i·CE_i, Σ_i CE_i) over tokens whose target is not ``IGNORE_INDEX``.

    ``hidden`` (N, H) are final-norm hidden states, ``weight`` (V, H) the LM head, ``targets`` (N,).
    CE_i = logsumexp(z_i) − z_i[y_i] with z_i = W·h_i computed in the autocast dtype (else the
    weight's dtype) and reduced in fp32. Only the first output carries a gradient.
    """
    hidden = hidden.reshape(-1, hidden.shape[-1])
    targets = targets.reshape(-1)
    if token_weights is not None:
        token_weights = token_weights.reshape(-1)
    return _FusedLinearCE.apply(hidden, weight, targets, token_weights, max(1, chunk), _compute_dtype(hidden, weight))


def chunked_token_logprobs(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int = 2048
) -> torch.Tensor:
    """log softmax(W·h_t)[y_t] for every position (0 where the target is ``IGNORE_INDEX``).

    ``hidden`` (..., H) and ``targets`` (...) — the result has the shape of ``targets``.
    """
    shape = targets.shape
    h = hidden.reshape(-1, hidden.shape[-1])
    t = targets.reshape(-1)

    def piece(hc: torch.Tensor, tc: torch.Tensor) -> torch.Tensor:
        valid = tc != IGNORE_INDEX
        logits = (hc @ weight.T).float()
        lp = logits.gather(1, torch.where(valid, tc, 0)[:, None]).squeeze(1) - torch.logsumexp(logits, -1)
        return lp * valid

    outs = [
        checkpoint(piece, h[s : s + chunk], t[s : s + chunk], use_reentrant=False)
        if torch.is_grad_enabled()
        else piece(h[s : s + chunk], t[s : s + chunk])
        for s in range(0, h.shape[0], max(1, chunk))
    ]
    return torch.cat(outs).reshape(shape)
