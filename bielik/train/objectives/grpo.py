"""GRPO as an engine objective: a clipped policy-gradient loss on sampled, rewarded completions.

The maths is :func:`bielik.train.losses.clipped_policy_loss` (the PPO clipped surrogate with group
advantages and Schulman's k3 KL to the reference; see :mod:`bielik.train.losses` for the formulas and
what departs from DeepSeekMath). Batches come from a :class:`~bielik.train.rollout.RolloutSource`
(built by :mod:`bielik.train.grpo`): shared-prompt rows (:mod:`bielik.train.group_rows`) of one prompt
and its G completions, with per-completion ``advantages``, rewards and statistics, and — when a
rollout is replayed for μ > 1 updates — ``old_logps``, the sampling policy's log-probs computed
teacher-forced at rollout time. With μ = 1 the sampling policy *is* the current one at the only
update, so π_old = πθ.detach() (ratio 1, gradient Â·∇log πθ) and that forward is skipped.

The reference's per-token log-probs come from the no-grad preparation pass (:meth:`GRPO.prepare`).
They depend on the sampled tokens, so they are not cached on disk (``train.prepare.cache`` must be
off); the engine stores them into the replayed batch (:meth:`Engine._prepare_replayed`), so they are
computed once per rollout, not again for the μ − 1 replays.

Units: completions (``normalize="sequence"``, the paper's (1/G)·Σ_i (1/|o_i|)·Σ_t) or completion
tokens (``"token"``). Logged: ``reward`` and each named ``reward_<name>`` (per completion),
``completion_length``, ``truncated`` (share cut by the length limit), ``group_reward_std``,
``zero_std_groups`` (share of groups with no learning signal), ``kl`` and ``clip_fraction`` (per
token), ``advantage_abs``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from bielik.errors import BielikError
from bielik.train.group_rows import completion_logprobs
from bielik.train.losses import clipped_policy_loss, per_sequence_mean
from bielik.train.objectives.base import Objective, ObjectiveOutput

SEQUENCE_STATS = ("reward", "completion_length", "truncated")


class GRPO(Objective):
    name = "grpo"

    def __init__(
        self,
        reference: nn.Module | None = None,
        beta: float = 0.04,
        eps_low: float = 0.2,
        eps_high: float | None = None,
        normalize: Literal["sequence", "token"] = "sequence",
        chunk: int = 2048,
    ):
        if beta < 0:
            raise BielikError(f"GRPO's KL weight beta must be >= 0, got {beta}")
        if beta > 0 and reference is None:
            raise BielikError("GRPO with beta > 0 needs a reference model (beta=0 trains without the KL term)")
        self.reference = reference if beta > 0 else None
        self.beta, self.eps_low, self.eps_high, self.normalize, self.chunk = beta, eps_low, eps_high, normalize, chunk

    def frozen_models(self) -> dict[str, nn.Module]:
        return {"reference": self.reference} if self.reference is not None else {}

    def prepare(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.reference is None:
            return {}
        return {"ref_logps": completion_logprobs(self.reference, batch, self.chunk).float()}

    def loss_units(self, batch: dict[str, torch.Tensor]) -> float:
        return float(batch["target_ids"].shape[0] if self.normalize == "token" else batch["seq_group"].shape[0])

    def loss_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["target_ids"].shape[0])

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        logp = completion_logprobs(model, batch, self.chunk)
        old = batch["old_logps"] if "old_logps" in batch else logp.detach()
        seq = batch["target_seq"]
        out = clipped_policy_loss(
            logp, old, batch["advantages"][seq], batch.get("ref_logps"), self.beta, self.eps_low, self.eps_high
        )
        n_seq, n_tok = int(batch["seq_group"].shape[0]), int(seq.shape[0])
        if self.normalize == "sequence":
            loss_sum = per_sequence_mean(out.loss, seq, n_seq).sum()
        else:
            loss_sum = out.loss.sum()
        return ObjectiveOutput(loss_sum=loss_sum, metrics=self._metrics(batch, out, n_seq, n_tok))

    @staticmethod
    def _metrics(batch, out, n_seq: int, n_tok: int) -> dict:
        m = {
            k: (batch[k].detach().float().sum(), n_seq) for k in batch if k.startswith("reward") or k in SEQUENCE_STATS
        }
        n_groups = int(batch["group_reward_std"].shape[0])
        m["group_reward_std"] = (batch["group_reward_std"].float().sum(), n_groups)
        m["zero_std_groups"] = ((batch["group_reward_std"] == 0).float().sum(), n_groups)
        m["advantage_abs"] = (batch["advantages"].abs().float().sum(), n_seq)
        m["clip_fraction"] = (out.clipped.float().sum(), n_tok)
        if out.kl is not None:
            m["kl"] = (out.kl.sum(), n_tok)
        return m
