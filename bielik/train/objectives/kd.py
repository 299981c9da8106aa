"""Logit distillation (Minitron, RECIPE §7.4): forward KL from a frozen teacher, with temperature.

Per predicted token, with student logits z_s, teacher logits z_t, p = softmax(z_t/τ), q = softmax(z_s/τ)::

    KD = τ² · KL(p ‖ q) = τ² · Σ_v p_v (log p_v − log q_v)          ∂KD/∂z_s = τ · (q − p)
    L  = (1 − α) · KD + α · CE(z_s, y)                                 (α = 0: the report's logit-only KD)

summed over the predicted tokens and divided by the global batch's token count by the engine. τ²
keeps the gradient's scale independent of τ (Hinton et al.); α = 1 is plain CE on the student (the
ablation; no teacher is run then).

**Chunked, like the fused CE** (:mod:`bielik.model.lm_head`): neither model's (B, T, V) logits ever
exist. The teacher's no-grad preparation pass (:meth:`LogitDistillation.prepare`) runs only its
decoder; the objective then walks the tokens in chunks of ``chunk``, forms (chunk, V) logits of both
models, and, because ∂L/∂z_s is known in the forward pass, accumulates the gradients of the student's
hidden states and LM head right there (:class:`_FusedLinearKD`): no logits are kept for the backward
and none are recomputed.

Two teacher paths (``top_k``):

* ``top_k = 0`` (default, exact): ``prepare`` returns the teacher's final hidden states (B, T, H_t),
  and the teacher's logits and log-softmax are formed chunk by chunk inside the objective under
  no_grad. This is the report's full-vocabulary KL, at the cost of one teacher LM-head matmul per
  chunk.
* ``top_k = k``: ``prepare`` keeps per token the teacher's k largest logits, their ids and
  lse_τ = logsumexp(z_t/τ) — 2k+1 numbers instead of V, declared in ``prepare_token_keys`` so
  ``train.prepare.cache`` stores them on disk per example and the teacher need not run again. The
  loss is then the KL between the two distributions *coarsened* to the k teacher tokens plus one
  "rest" bucket (p_rest = 1 − Σ_K p, q_rest = 1 − Σ_K q)::

      KD_k = τ² · [ Σ_{v∈K} p_v (log p_v − log q_v) + p_rest (log p_rest − log q_rest) ]

  It is exact in the teacher's probabilities (lse over the full vocabulary), never exceeds the full
  KL (data-processing inequality) and equals it as k → V; its gradient is τ·(q − p̃), where p̃ is p
  on K and spreads p_rest over the other tokens in proportion to q. (Departure from the report,
  which distils full logits; common top-k KD renormalises p over K instead and so loses p_rest.)

``perplexity`` is True because the engine's ``val_ppl`` is taken from the ``ce`` metric (the
student's own next-token NLL), which this objective always reports, beside ``kl`` (unscaled
KL(p‖q) at τ) and ``top1_agree`` (share of tokens where the student's argmax is the teacher's).
Under FSDP2 the engine keeps a frozen model's root parameters (embeddings, final norm, LM head)
gathered, which is what lets the objective use the teacher's head chunk by chunk outside its forward;
DDP and FSDP2 on two processes match one (tests/compress/test_distributed_kd.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bielik.errors import BielikError
from bielik.model.lm_head import IGNORE_INDEX, _compute_dtype, _no_autocast
from bielik.train.objectives.base import (
    Objective,
    ObjectiveOutput,
    decoder_hidden_states,
    lm_head_weight,
    shifted_labels,
)

# --- the maths, dense (reference and chunk-free path) ----------------------------------------


def forward_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """τ²·KL(softmax(z_t/τ) ‖ softmax(z_s/τ)) per row.

    Args: ``student_logits`` (N, V), ``teacher_logits`` (N, V). Returns (N,), differentiable in the student's logits.
    """
    logq = F.log_softmax(student_logits.float() / tau, dim=-1)
    logp = F.log_softmax(teacher_logits.float() / tau, dim=-1)
    return tau * tau * (logp.exp() * (logp - logq)).sum(-1)


def topk_forward_kl(
    student_logits: torch.Tensor,
    topk_logits: torch.Tensor,
    topk_ids: torch.Tensor,
    teacher_lse: torch.Tensor,
    tau: float = 1.0,
) -> torch.Tensor:
    """τ²·KL between teacher and student coarsened to the teacher's top-k tokens plus a "rest" bucket.

    Args: ``student_logits`` (N, V); ``topk_logits`` (N, k) raw teacher logits and ``topk_ids`` (N, k)
    their token ids; ``teacher_lse`` (N,) = logsumexp(z_t/τ) over the whole vocabulary. Returns (N,).
    """
    zs = student_logits.float() / tau
    lse_s = torch.logsumexp(zs, -1)
    logq_k = zs.gather(1, topk_ids) - lse_s[:, None]
    logp_k = topk_logits.float() / tau - teacher_lse.float()[:, None]
    p_rest = (1 - logp_k.exp().sum(-1)).clamp_min(0)
    logq_rest = torch.logsumexp(zs.scatter(1, topk_ids, float("-inf")), -1) - lse_s
    kl = (logp_k.exp() * (logp_k - logq_k)).sum(-1) + torch.xlogy(p_rest, p_rest) - p_rest * logq_rest
    return tau * tau * kl


def teacher_topk(
    teacher_logits: torch.Tensor, k: int, tau: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What the top-k path keeps of the teacher's (N, V) logits: (values (N, k), ids (N, k), lse_τ (N,))."""
    z = teacher_logits.float()
    vals, ids = z.topk(k, dim=-1)
    return vals, ids, torch.logsumexp(z / tau, -1)


# --- chunked and fused ---------------------------------------------------------------------


def _kd_chunk(zs: torch.Tensor, lse_s: torch.Tensor, teacher: dict[str, torch.Tensor], tau: float):
    """One chunk of tempered student logits zs = z/τ (c, V) and their logsumexp (c, 1) against the teacher.

    Returns KL(p‖q) (c,), the teacher's argmax (c,) and ∂(τ²·KL)/∂z = τ·(q − p̃) (c, V). Works in
    place on its own buffers: three (c, V) tensors at most besides ``zs``.
    """
    logq = zs - lse_s
    if "hidden" in teacher:
        zt = (teacher["hidden"].to(teacher["weight"].dtype) @ teacher["weight"].T).float()
        top = zt.argmax(-1)
        if tau != 1:
            zt.div_(tau)
        zt.sub_(torch.logsumexp(zt, -1, keepdim=True))  # log p
        p = zt.exp()
        kl = zt.sub_(logq).mul_(p).sum(-1)
        return kl, top, logq.exp_().sub_(p).mul_(tau)
    ids = teacher["ids"]
    logp_k = teacher["vals"].float() / tau - teacher["lse"].float()[:, None]
    p_k = logp_k.exp()
    p_rest = (1 - p_k.sum(-1)).clamp_min(0)
    logq_k = logq.gather(1, ids)
    logq_rest = torch.logsumexp(zs.scatter(1, ids, float("-inf")), -1) - lse_s[:, 0]
    kl = (p_k * (logp_k - logq_k)).sum(-1) + torch.xlogy(p_rest, p_rest) - p_rest * logq_rest
    spread = torch.exp(torch.log(p_rest) - logq_rest)  # p_rest / q_rest: p̃ = q·spread off the top-k
    g = logq.exp_().mul_((1 - spread)[:, None]).scatter_(1, ids, logq_k.exp() - p_k)
    return kl, ids[:, 0], g.mul_(tau)


def _chunk_step(z, y, teacher, tau, alpha, need_grad):  # noqa: ANN001
    """Loss terms of one chunk of student logits z (c, V) and, if asked, ∂loss/∂z (c, V)."""
    valid = (y != IGNORE_INDEX).float()
    y0 = torch.where(y != IGNORE_INDEX, y, 0)
    zs = z / tau if tau != 1 else z
    lse_s = torch.logsumexp(zs, -1, keepdim=True)
    lse = lse_s if tau == 1 else torch.logsumexp(z, -1, keepdim=True)
    ce = (lse[:, 0] - z.gather(1, y0[:, None])[:, 0]) * valid
    loss, kl, agree, g = alpha * ce, None, None, None
    if alpha < 1:
        kl, top, g = _kd_chunk(zs, lse_s, teacher, tau)
        kl, agree = kl * valid, (top == z.argmax(-1)).float() * valid
        loss = loss + (1 - alpha) * tau * tau * kl
        g = g.mul_(1 - alpha) if need_grad else None
    if need_grad and alpha > 0:
        soft = (
            torch.exp(z - lse).scatter_add_(1, y0[:, None], -torch.ones_like(lse)).mul_(alpha)
        )  # α·(softmax − onehot)
        g = soft if g is None else g.add_(soft)
    if g is not None:
        g.mul_(valid[:, None])
    return loss, ce, kl, agree, g


class _FusedLinearKD(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, teacher, tau, alpha, chunk, dtype):  # noqa: ANN001
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        w_c = weight.to(dtype)
        sums = torch.zeros(4, dtype=torch.float64, device=hidden.device)  # loss, ce, kl, agree
        with _no_autocast(hidden.device.type):
            for s in range(0, hidden.shape[0], chunk):
                h = hidden[s : s + chunk].to(dtype)
                t = {k: v if k == "weight" else v[s : s + chunk] for k, v in teacher.items()}
                loss, ce, kl, agree, g = _chunk_step(
                    (h @ w_c.T).float(), targets[s : s + chunk], t, tau, alpha, need_h or need_w
                )
                sums[:2] += torch.stack([loss.sum(), ce.sum()]).double()
                if kl is not None:
                    sums[2:] += torch.stack([kl.sum(), agree.sum()]).double()
                if g is not None:
                    g = g.to(dtype)
                    if need_h:
                        grad_h[s : s + chunk] = (g @ w_c).to(hidden.dtype)
                    if need_w:
                        grad_w += (g.T @ h).float()
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        loss, ce, kl, agree = (sums[i].float() for i in range(4))
        ctx.mark_non_differentiable(ce, kl, agree)
        return loss, ce, kl, agree

    @staticmethod
    def backward(ctx, grad_loss, *_):  # noqa: ANN001
        grad_h, grad_w = ctx.saved_tensors
        gh = None if grad_h is None else grad_h * grad_loss.to(grad_h.dtype)
        gw = None if grad_w is None else (grad_w * grad_loss).to(ctx.weight_dtype)
        return gh, gw, None, None, None, None, None, None


def fused_linear_kd(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    teacher: dict[str, torch.Tensor],
    tau: float = 1.0,
    alpha: float = 0.0,
    chunk: int = 1024,
) -> tuple[torch.Tensor, ...]:
    """Σ over tokens of (1−α)·τ²·KL + α·CE, plus Σ CE, Σ KL and Σ top-1 agreement, chunk by chunk.

    Args: ``hidden`` (N, H) student final-norm hidden states, ``weight`` (V, H) its LM head,
    ``targets`` (N,) next tokens (``IGNORE_INDEX`` = not predicted). ``teacher``: either
    ``{"hidden": (N, H_t), "weight": (V, H_t)}`` (full vocabulary) or ``{"vals": (N, k), "ids": (N, k),
    "lse": (N,)}`` (top-k); ignored when α = 1. Returns four scalars; only the first has a gradient.
    """
    lead = targets.dim()  # teacher tensors are shaped like the targets plus trailing dims
    hidden = hidden.reshape(-1, hidden.shape[-1])
    teacher = {k: (v if k == "weight" else v.reshape(hidden.shape[0], *v.shape[lead:])) for k, v in teacher.items()}
    dtype = _compute_dtype(hidden, weight)
    return _FusedLinearKD.apply(
        hidden, weight, targets.reshape(-1), teacher, float(tau), float(alpha), max(1, chunk), dtype
    )


@torch.no_grad()
def chunked_teacher_topk(hidden: torch.Tensor, weight: torch.Tensor, k: int, tau: float, chunk: int = 1024):
    """:func:`teacher_topk` of ``hidden`` (..., H) @ ``weight``ᵀ, chunk by chunk; outputs shaped (..., k),
    (..., k), (...)."""
    shape = hidden.shape[:-1]
    h = hidden.reshape(-1, hidden.shape[-1])
    parts = [
        teacher_topk((h[s : s + chunk].to(weight.dtype) @ weight.T).float(), k, tau)
        for s in range(0, h.shape[0], max(1, chunk))
    ]
    vals, ids, lse = (torch.cat(p) for p in zip(*parts))
    return vals.reshape(*shape, k), ids.reshape(*shape, k), lse.reshape(shape)


# --- the objective -------------------------------------------------------------------------


class LogitDistillation(Objective):
    """(1 − α)·τ²·KL(teacher ‖ student) + α·CE per predicted token; the teacher is a frozen model."""

    perplexity = True  # val_ppl comes from the `ce` metric (the student's own NLL), see the module docstring

    def __init__(
        self, teacher: nn.Module | None, tau: float = 1.0, alpha: float = 0.0, top_k: int = 0, chunk: int = 1024
    ):
        if not tau > 0 or not 0 <= alpha <= 1 or top_k < 0:
            raise BielikError(f"distillation needs tau > 0, 0 <= alpha <= 1, top_k >= 0 (got {tau}, {alpha}, {top_k})")
        if teacher is None and alpha < 1:
            raise BielikError("distillation with alpha < 1 needs a teacher")
        self.teacher = teacher if alpha < 1 else None
        self.tau, self.alpha, self.top_k, self.chunk = float(tau), float(alpha), int(top_k), int(chunk)
        if self.teacher is not None and top_k >= self.teacher.config.vocab_size:
            raise BielikError(
                f"top_k={top_k} is not below the vocabulary ({self.teacher.config.vocab_size}); "
                "use top_k=0 for the full KL"
            )
        self.name = "ce" if self.teacher is None else ("kd" if top_k == 0 else f"kd_top{top_k}_tau{tau:g}")
        self.prepare_token_keys = frozenset(
            {"teacher_hidden"} if top_k == 0 else {"teacher_topk_logits", "teacher_topk_ids", "teacher_lse"}
        )

    def frozen_models(self) -> dict[str, nn.Module]:
        return {"teacher": self.teacher} if self.teacher is not None else {}

    def loss_units(self, batch: dict[str, torch.Tensor]) -> float:
        return float((shifted_labels(batch) != IGNORE_INDEX).sum())

    @staticmethod
    def _decoder_kwargs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"position_ids": batch["position_ids"]} if "position_ids" in batch else {}

    def prepare(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The teacher's final hidden states (full KL) or its top-k logits, ids and lse_τ per token (no grad)."""
        if self.teacher is None:
            return {}
        h = decoder_hidden_states(self.teacher, batch["input_ids"], **self._decoder_kwargs(batch))
        if self.top_k == 0:
            return {"teacher_hidden": h}
        vals, ids, lse = chunked_teacher_topk(h, lm_head_weight(self.teacher), self.top_k, self.tau, self.chunk or 1024)
        return {
            "teacher_topk_logits": vals,
            "teacher_topk_ids": ids.int(),
            "teacher_lse": lse,
        }  # int32 ids: half the cache

    def _teacher_side(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.teacher is None:
            return {}
        if self.top_k == 0:
            w = lm_head_weight(self.teacher)
            if type(w).__name__ == "DTensor":
                raise BielikError(
                    "distillation: the teacher's LM head is sharded (a DTensor); "
                    "frozen models' root parameters must stay gathered"
                )
            return {"hidden": batch["teacher_hidden"][:, :-1], "weight": w}
        return {
            "vals": batch["teacher_topk_logits"][:, :-1],
            "ids": batch["teacher_topk_ids"][:, :-1].long(),
            "lse": batch["teacher_lse"][:, :-1],
        }

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        targets = shifted_labels(batch)
        hidden = decoder_hidden_states(model, batch["input_ids"], **self._decoder_kwargs(batch))[:, :-1]
        teacher = self._teacher_side(batch)
        if self.chunk > 0:
            loss, ce, kl, agree = fused_linear_kd(
                hidden, lm_head_weight(model), targets, teacher, self.tau, self.alpha, self.chunk
            )
        else:
            loss, ce, kl, agree = self._dense(model, hidden, targets, teacher)
        n = (targets != IGNORE_INDEX).sum()
        metrics = {"ce": (ce.detach(), n)}
        if self.teacher is not None:
            metrics.update(kl=(kl.detach(), n), top1_agree=(agree.detach(), n))
        return ObjectiveOutput(loss_sum=loss, metrics=metrics)

    def _dense(self, model: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, teacher: dict[str, torch.Tensor]):
        """The chunk-free path (``chunk=0``): full (B, T, V) logits of both models; for checks and the memory
        benchmark."""
        z = model.get_output_embeddings()(hidden).float().flatten(0, 1)
        y = targets.reshape(-1)
        valid = (y != IGNORE_INDEX).float()
        ce = F.cross_entropy(z, y, ignore_index=IGNORE_INDEX, reduction="none")
        loss = self.alpha * (ce * valid).sum()
        kl = agree = torch.zeros((), device=z.device)
        if teacher:
            if "hidden" in teacher:
                zt = (teacher["hidden"].to(teacher["weight"].dtype) @ teacher["weight"].T).float().flatten(0, 1)
                kd, t_top = forward_kl(z, zt, self.tau), zt.argmax(-1)
            else:
                ids = teacher["ids"].flatten(0, 1)
                kd, t_top = (
                    topk_forward_kl(z, teacher["vals"].flatten(0, 1), ids, teacher["lse"].reshape(-1), self.tau),
                    ids[:, 0],
                )
            loss = loss + (1 - self.alpha) * (kd * valid).sum()
            kl = (kd.detach() * valid).sum() / (self.tau * self.tau)
            agree = ((t_top == z.argmax(-1)).float() * valid).sum()
        return loss, (ce.detach() * valid).sum(), kl, agree
