"""The contract between the engine and an objective.

An objective turns a micro-batch into a **sum** of per-unit losses plus summed metrics, and says
how many units a batch holds (tokens for language modelling, pairs for DPO-P, sequences for GRPO).
The engine divides by the number of units in the whole *global* batch (all micro-batches, all
ranks), so gradient accumulation and data parallelism give the same update as one large batch,
whatever the number of tokens per micro-batch (HF calls this ``num_items_in_batch``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class ObjectiveOutput:
    loss_sum: torch.Tensor
    """Σ over the batch's loss units; the engine back-propagates loss_sum / global_units."""
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    """Named sums over units (logged as sum / units), e.g. {"ce": ...}."""


class Objective(ABC):
    name: str = "objective"

    @abstractmethod
    def loss_units(self, batch: dict[str, torch.Tensor]) -> int:
        """Number of units (tokens, pairs, ...) ``loss_sum`` sums over for this micro-batch."""

    @abstractmethod
    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        """Forward ``batch`` through ``model`` (an HF causal LM) and return summed loss and metrics."""

    def modules(self) -> dict[str, nn.Module]:
        """Extra modules the objective owns (e.g. a frozen reference or teacher) to move/shard."""
        return {}


def decoder_hidden_states(model: nn.Module, input_ids: torch.Tensor, **kwargs) -> torch.Tensor:
    """Final-norm hidden states (B, T, H) of an HF causal LM, without running its LM head."""
    base = getattr(model, model.base_model_prefix)
    return base(input_ids=input_ids, use_cache=False, **kwargs).last_hidden_state


def lm_head_weight(model: nn.Module) -> torch.Tensor:
    return model.get_output_embeddings().weight
