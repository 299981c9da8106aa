"""Next-token prediction: continued pretraining (RECIPE §4) and SFT with Weighted Instruction CE (§5.3).

Plain (``weighted=False``):  L = (1/N) Σ_{b,t} −log p_θ(y_{b,t+1} | x_{b,≤t}) over the N predicted
tokens of the global batch (targets ``labels`` shifted by one, ``-100`` = not predicted).

Weighted Instruction Cross-Entropy (``weighted=True``): every target token t of example i carries
the example's weight w_i (``loss_weights``; 1.0 / 0.7 / 0.5 for high / medium / low quality), so an
example contributes l_i = −w_i · Σ_t log p(y_t). Normalisation (``normalize``):

* ``tokens`` (default): L = Σ_i l_i / Σ_i n_i — divided by the *unweighted* number of loss tokens in
  the global batch. A low-quality example then moves the model less in absolute terms (its tokens
  count at half strength while the denominator stays), which is the paper's l_i = w_i·CE read
  literally; a batch made only of low-quality data takes a smaller step.
* ``weights``: L = Σ_i l_i / Σ_i w_i·n_i — a weighted mean: weights only redistribute the step
  between examples of the same batch, a batch of uniform weight trains as if unweighted.

The paper does not say which; ``tokens`` is our default because it is the only one in which the
weights change anything for a uniform-quality batch (and it equals the plain loss at w = 1). The
maths lives in :func:`bielik.model.lm_head.fused_linear_cross_entropy` (Σ w·CE and Σ CE, fused,
chunked); this class only gathers the hidden states and targets.

Packed rows carry ``position_ids`` that restart at 0 for every document (dialogue): with no attention
mask, transformers turns them into a block-diagonal causal mask, so no attention crosses a boundary,
and the first token of every document has label ``-100``, so no label does.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from bielik.model.lm_head import fused_linear_cross_entropy
from bielik.train.objectives.base import (
    IGNORE_INDEX,
    Objective,
    ObjectiveOutput,
    decoder_hidden_states,
    lm_head_weight,
    shifted_labels,
)

shifted_targets = shifted_labels  # the name earlier code imports


def _shifted_weights(batch: dict[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    if "loss_weights" not in batch:
        raise KeyError("weighted loss needs 'loss_weights' (B, T) in the batch")
    return batch["loss_weights"][:, 1:].float() * (targets != IGNORE_INDEX)


class CausalLM(Objective):
    name = "causal_lm"
    perplexity = True

    def __init__(self, chunk: int = 2048, weighted: bool = False, normalize: Literal["tokens", "weights"] = "tokens"):
        self.chunk = chunk  # 0: materialise full logits and use F.cross_entropy
        self.weighted = weighted
        self.normalize = normalize
        if weighted:
            self.name = "weighted_instruction_ce"

    def loss_units(self, batch: dict[str, torch.Tensor]) -> float:
        targets = shifted_labels(batch)
        if self.weighted and self.normalize == "weights":
            return float(_shifted_weights(batch, targets).sum())
        return float((targets != IGNORE_INDEX).sum())

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        targets = shifted_labels(batch)
        kwargs = {"position_ids": batch["position_ids"]} if "position_ids" in batch else {}
        hidden = decoder_hidden_states(model, batch["input_ids"], **kwargs)[:, :-1]
        weights = _shifted_weights(batch, targets) if self.weighted else None
        if self.chunk > 0:
            valid = targets != IGNORE_INDEX
            if not bool(valid.all()):  # SFT: only the loss-carrying positions go through the head (1.6x, measured)
                hidden, targets = hidden[valid], targets[valid]
                weights = None if weights is None else weights[valid]
            loss_sum, ce_sum = fused_linear_cross_entropy(
                hidden, lm_head_weight(model), targets, weights, chunk=self.chunk
            )
        else:
            logits = model.get_output_embeddings()(hidden).float()
            ce = F.cross_entropy(logits.flatten(0, 1), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none")
            loss_sum = ce.sum() if weights is None else (ce * weights.reshape(-1)).sum()
            ce_sum = ce.detach().sum()
        n_tokens = (targets != IGNORE_INDEX).sum()
        metrics = {"ce": (ce_sum.detach(), n_tokens)}
        if weights is not None:
            metrics["mean_weight"] = (weights.sum().detach(), n_tokens)
        return ObjectiveOutput(loss_sum=loss_sum, metrics=metrics)
