"""The maths of preference optimisation and GRPO as pure tensor functions (log-probs in, losses out).

Objectives (:mod:`bielik.train.objectives.dpo`, :mod:`bielik.train.objectives.grpo`) gather the
log-probabilities and call these; the tests check them on random tensors and hand-computed values.

**DPO-Positive** (Pal et al. 2024, "Smaug", arXiv 2402.13228, RECIPE §6.1). With the sequence
log-probabilities of the chosen (w) and rejected (l) completions under the policy θ and the frozen
reference,

    h_w = log πθ(y_w|x) − log π_ref(y_w|x),   h_l = log πθ(y_l|x) − log π_ref(y_l|x)
    p   = max(0, log π_ref(y_w|x) − log πθ(y_w|x)) = max(0, −h_w)
    L   = −log σ( β·(h_w − h_l − λ·p) )

The penalty p is zero while the policy gives the chosen completion at least the reference's
likelihood, and grows linearly (slope λ inside the β-scaled logit) as it falls below it; λ = 0 is
the sigmoid DPO loss (Rafailov et al. 2023). *Which form*: the paper's versions disagree on the
bracketing (its first manuscript's eq. 3 and its appendix differ; the authors acknowledged the
error in abacusai/smaug issue #2 and fixed the bracketing in the July 2024 revision), and several
re-implementations put the penalty *outside* the log-sigmoid, L = −log σ(β(h_w − h_l)) + λ·p. bielik
implements the corrected eq. 3 above, which is also the recipe's (RECIPE §6.1): inside the sigmoid
the penalty's gradient on log πθ(y_w|x) is at most β·(1 + λ) per nat, whereas outside it is λ per
nat for ever, whatever the margin: with λ = 50 a chosen completion 10 nats below the reference adds
500 to the loss — the "loss blows up at λ = 50" users report. The loss is computed as
softplus(−z) (= −log σ(z) without overflow), so it stays finite for any λ: linear in the penalty for
large λ·p. Default λ = 5: the low end of the range [5, 500] the authors report the results to be
insensitive to; β = 0.1 as in DPO.

Rewards (logged): r_w = β·h_w, r_l = β·h_l, margin r_w − r_l, accuracy 1[r_w > r_l], penalty p.

**GRPO** (Shao et al. 2024, DeepSeekMath, arXiv 2402.03300, RECIPE §6.2). For G completions o_i of
one prompt with rewards r_i, the advantage of every token of o_i is Â_i = (r_i − mean(r)) / (std(r) +
ε) (population std of the group; a group of equal rewards gives exactly 0, not 0/ε noise). Per
token, with ρ = πθ(o_t)/π_old(o_t),

    ℓ_t = −min(ρ·Â, clip(ρ, 1 − ε_low, 1 + ε_high)·Â) + β·KL_t,
    KL_t = π_ref(o_t)/πθ(o_t) − log(π_ref(o_t)/πθ(o_t)) − 1          (Schulman's k3 estimator)

k3 is an unbiased estimator of KL(πθ‖π_ref) from tokens sampled from πθ and is never negative (x −
log x − 1 ≥ 0), unlike the plain log-ratio (k1); the paper uses it. Here the tokens are sampled from
π_old, which equals πθ at the first of the μ updates of a rollout (as in the paper). The sequence
loss is the paper's (1/|o_i|)·Σ_t ℓ_t (``normalize="sequence"``) or the token sum divided by the
global number of completion tokens (``"token"``, DAPO; it removes the paper's bias towards short
completions). ε_high = ε_low unless set (DAPO's "clip higher").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class DPOPositiveOutput:
    losses: torch.Tensor
    """(B,) per-pair loss −log σ(β(h_w − h_l − λ·p))."""
    chosen_rewards: torch.Tensor
    """(B,) β·h_w, detached."""
    rejected_rewards: torch.Tensor
    """(B,) β·h_l, detached."""
    penalty: torch.Tensor
    """(B,) p = max(0, log π_ref(y_w|x) − log πθ(y_w|x)) in nats, detached."""


def dpo_positive_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    lam: float = 5.0,
) -> DPOPositiveOutput:
    """DPO-Positive loss per pair (see the module docstring; ``lam=0`` is sigmoid DPO).

    Args:
        policy_chosen_logps: (B,) Σ_t log πθ over the chosen completion's tokens.
        policy_rejected_logps: (B,) the same for the rejected completion.
        ref_chosen_logps: (B,) Σ_t log π_ref of the chosen completion (no gradient needed).
        ref_rejected_logps: (B,) the same for the rejected completion.
        beta: β, the inverse temperature of the implicit reward.
        lam: λ ≥ 0, the weight of the penalty on the chosen completion's lost likelihood.

    Returns:
        :class:`DPOPositiveOutput` of (B,) tensors; only ``losses`` carries a gradient.
    """
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    h_w = policy_chosen_logps.float() - ref_chosen_logps.float()
    h_l = policy_rejected_logps.float() - ref_rejected_logps.float()
    penalty = torch.relu(-h_w)  # subgradient 0 at h_w = 0: at the start (policy = reference) DPO-P steps as DPO
    logits = beta * (h_w - h_l - lam * penalty)
    losses = F.softplus(-logits)
    return DPOPositiveOutput(losses, (beta * h_w).detach(), (beta * h_l).detach(), penalty.detach())


def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """Group-normalised advantages Â_i = (r_i − mean_g) / (std_g + ε) (``scale=False``: r_i − mean_g).

    Args:
        rewards: (N,) with N = n_groups · group_size, the completions of one prompt adjacent.
        group_size: G.
        scale: divide by the group's population standard deviation (the paper) or not (Dr. GRPO).
        eps: ε of the denominator.

    Returns:
        (N,) float32 advantages; exactly 0 for every member of a group whose rewards are all equal.
    """
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    r = rewards.float().reshape(-1, group_size)
    centred = r - r.mean(dim=1, keepdim=True)
    if scale:
        centred = centred / (r.std(dim=1, unbiased=False, keepdim=True) + eps)
    flat = (r.amax(dim=1) == r.amin(dim=1))[:, None]
    return torch.where(flat, torch.zeros_like(centred), centred).reshape(-1)


def k3_kl(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(πθ‖π_ref): exp(ref − logp) − (ref − logp) − 1, elementwise, ≥ 0.

    Args:
        logps: (N,) log πθ of the sampled tokens (carries the gradient).
        ref_logps: (N,) log π_ref of the same tokens.
    """
    d = ref_logps.float() - logps.float()
    return torch.exp(d) - d - 1.0


@dataclass
class ClippedOutput:
    loss: torch.Tensor
    """(N,) per-token loss −min(ρÂ, clip(ρ)Â) (+ β·KL when a reference is given)."""
    kl: torch.Tensor | None
    """(N,) k3 KL per token (detached), None without a reference."""
    clipped: torch.Tensor
    """(N,) bool: the clipped term was the minimum (its gradient is zero)."""
    ratio: torch.Tensor
    """(N,) ρ = πθ/π_old (detached)."""


def clipped_policy_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    ref_logps: torch.Tensor | None = None,
    beta: float = 0.0,
    eps_low: float = 0.2,
    eps_high: float | None = None,
) -> ClippedOutput:
    """GRPO's per-token loss: the PPO clipped surrogate with group advantages plus β·k3 KL.

    Args:
        logps: (N,) log πθ of every completion token (carries the gradient).
        old_logps: (N,) log π_old of the same tokens (the policy that sampled them).
        advantages: (N,) Â of each token's completion.
        ref_logps: (N,) log π_ref, or None for no KL term (β = 0).
        beta: β, the KL weight.
        eps_low, eps_high: the clip range [1 − ε_low, 1 + ε_high] of ρ (ε_high defaults to ε_low).

    Returns:
        :class:`ClippedOutput` of (N,) tensors.
    """
    eps_high = eps_low if eps_high is None else eps_high
    adv = advantages.float()
    ratio = torch.exp(logps.float() - old_logps.float())
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
    loss = -torch.minimum(unclipped, clipped)
    kl = None
    if ref_logps is not None and beta != 0.0:
        kl_t = k3_kl(logps, ref_logps)
        loss = loss + beta * kl_t
        kl = kl_t.detach()
    return ClippedOutput(loss, kl, (clipped < unclipped).detach(), ratio.detach())


def per_sequence_mean(values: torch.Tensor, seq_index: torch.Tensor, n_seqs: int) -> torch.Tensor:
    """(S,) mean of ``values`` (N,) over the tokens of each sequence (``seq_index`` (N,) in [0, S))."""
    sums = torch.zeros(n_seqs, dtype=values.dtype, device=values.device).index_add(0, seq_index, values)
    counts = torch.zeros(n_seqs, dtype=values.dtype, device=values.device).index_add(
        0, seq_index, torch.ones_like(values)
    )
    return sums / counts.clamp_min(1)
