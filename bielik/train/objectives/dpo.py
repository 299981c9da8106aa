"""DPO-Positive as an engine objective: policy vs a frozen reference, one unit per preference pair.

The maths is :func:`bielik.train.losses.dpo_positive_loss` (which form of the paper and why: see
:mod:`bielik.train.losses`); this class gathers Σ_t log π over each completion and calls it.

* **One forward for both completions, prompt once**: batches are shared-prompt rows
  (:mod:`bielik.train.group_rows`): ``[prompt | chosen | rejected]`` with a mask under which each
  completion sees the prompt and itself, so the prompt's tokens are run once per pair instead of
  twice, and the LM head runs only at completion tokens. ``share_prompt=false`` in the stage gives
  the usual concatenated batch (prompt + chosen and prompt + rejected as separate sequences).
* **Reference log-probs in the preparation pass** (:meth:`DPOPositive.prepare`): Σ_t log π_ref of
  both completions per pair, keyed by the pair's ``example_ids``; with ``train.prepare.cache=auto``
  and ``precompute=true`` (the stage's default) they are computed once over the data set and read
  from disk afterwards, so the reference costs nothing during training.
* **Weights**: an optional per-pair weight w_i (``weight``, or ``quality`` mapped as in SFT) scales
  the pair's loss, L = Σ_i w_i·l_i / Σ_i 1 over the global batch (``normalize="pairs"``) or
  / Σ_i w_i (``"weights"``) — the reducer of SFT's weighted CE, applied per pair.

Batch keys (besides the shared-prompt rows): ``example_ids`` (P,) pair ids, ``pair_weight`` (P,),
``seq_pair`` / ``seq_side`` (S,): the pair of each completion and whether it is the chosen (0) or the
rejected (1) one. Logged metrics, each over pairs: ``reward_chosen`` β·h_w, ``reward_rejected`` β·h_l,
``margin``, ``accuracy`` (r_w > r_l), ``penalty`` (nats of chosen likelihood lost to the
reference), ``logp_chosen`` / ``logp_rejected``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from bielik.errors import BielikError
from bielik.train.group_rows import completion_logprobs, sequence_sums
from bielik.train.losses import dpo_positive_loss
from bielik.train.objectives.base import Objective, ObjectiveOutput


def pair_logps(model: nn.Module, batch: dict[str, torch.Tensor], chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) Σ_t log π of every pair of the batch, each (P,) in ``example_ids`` order."""
    sums = sequence_sums(completion_logprobs(model, batch, chunk), batch)
    n = int(batch["example_ids"].shape[0])
    side = batch["seq_side"]
    chosen = torch.zeros(n, dtype=sums.dtype, device=sums.device).index_add(
        0, batch["seq_pair"][side == 0], sums[side == 0]
    )
    rejected = torch.zeros(n, dtype=sums.dtype, device=sums.device).index_add(
        0, batch["seq_pair"][side == 1], sums[side == 1]
    )
    return chosen, rejected


class DPOPositive(Objective):
    """DPO-P (λ = 0: sigmoid DPO) against ``reference``, a separate frozen copy of the initial policy."""

    name = "dpo_positive"

    def __init__(
        self,
        reference: nn.Module,
        beta: float = 0.1,
        lam: float = 5.0,
        chunk: int = 2048,
        normalize: Literal["pairs", "weights"] = "pairs",
    ):
        if reference is None:
            raise BielikError(
                "DPO-P needs a reference model (its log-probs may then be cached with train.prepare.cache)"
            )
        if lam < 0 or beta <= 0:
            raise BielikError(f"DPO-P needs beta > 0 and lam >= 0, got beta={beta}, lam={lam}")
        self.reference, self.beta, self.lam, self.chunk, self.normalize = reference, beta, lam, chunk, normalize

    def frozen_models(self) -> dict[str, nn.Module]:
        return {"reference": self.reference}

    def prepare(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        chosen, rejected = pair_logps(self.reference, batch, self.chunk)
        return {"ref_chosen_logps": chosen.float(), "ref_rejected_logps": rejected.float()}

    def loss_units(self, batch: dict[str, torch.Tensor]) -> float:
        if self.normalize == "weights":
            return float(batch["pair_weight"].sum())
        return float(batch["example_ids"].shape[0])

    def loss_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["target_ids"].shape[0])

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        chosen, rejected = pair_logps(model, batch, self.chunk)
        out = dpo_positive_loss(
            chosen, rejected, batch["ref_chosen_logps"], batch["ref_rejected_logps"], self.beta, self.lam
        )
        w = batch["pair_weight"].float()
        n = chosen.shape[0]

        def per_pair(v: torch.Tensor) -> tuple[torch.Tensor, int]:
            return v.detach().float().sum(), n

        metrics = {
            "reward_chosen": per_pair(out.chosen_rewards),
            "reward_rejected": per_pair(out.rejected_rewards),
            "margin": per_pair(out.chosen_rewards - out.rejected_rewards),
            "accuracy": per_pair((out.chosen_rewards > out.rejected_rewards).float()),
            "penalty": per_pair(out.penalty),
            "logp_chosen": per_pair(chosen),
            "logp_rejected": per_pair(rejected),
            "dpo_loss": per_pair(out.losses),
        }
        return ObjectiveOutput(loss_sum=(out.losses * w).sum(), metrics=metrics)
