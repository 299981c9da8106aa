"""Next-token prediction: the continued-pretraining objective (RECIPE §4).

L = (1/N) Σ_{b,t} −log p_θ(x_{b,t+1} | x_{b,≤t}) over the N predicted tokens of the global batch.
Rows may carry ``labels`` with ``-100`` at positions that are not predicted; packed pretraining rows
predict every next token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bielik.train.lm_head import IGNORE_INDEX, fused_linear_cross_entropy
from bielik.train.objectives.base import Objective, ObjectiveOutput, decoder_hidden_states, lm_head_weight


def shifted_targets(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    labels = batch.get("labels", batch["input_ids"])
    return labels[:, 1:]


class CausalLM(Objective):
    name = "causal_lm"

    def __init__(self, chunk: int = 2048):
        self.chunk = chunk  # 0: materialise full logits and use HF-style cross-entropy

    def loss_units(self, batch: dict[str, torch.Tensor]) -> int:
        return int((shifted_targets(batch) != IGNORE_INDEX).sum())

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        targets = shifted_targets(batch)
        hidden = decoder_hidden_states(model, batch["input_ids"])[:, :-1]
        if self.chunk > 0:
            loss_sum, _ = fused_linear_cross_entropy(hidden, lm_head_weight(model), targets, chunk=self.chunk)
        else:
            logits = model.get_output_embeddings()(hidden).float()
            loss_sum = F.cross_entropy(logits.flatten(0, 1), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")
        return ObjectiveOutput(loss_sum=loss_sum, metrics={"loss": loss_sum.detach()})
