"""The contract between the engine and an objective.

An objective turns a micro-batch into a **sum** of per-unit losses plus summed metrics, and says
how many units a batch holds (tokens for language modelling, pairs for DPO-P, sequences for GRPO;
a float, so weighted units are possible). The engine divides by the number of units in the whole
*global* batch (all micro-batches, all ranks), so gradient accumulation and data parallelism give
the same update as one large batch, whatever the number of tokens per micro-batch (HF calls this
``num_items_in_batch``).

What an objective may declare, and the engine then does for it (one loop for every objective):

* **Frozen models** (:meth:`Objective.frozen_models`: a reference policy, a teacher): the engine
  moves and casts them, puts them in eval mode without gradients, shards them with FSDP2 (left
  unwrapped under DDP: they have no gradients to synchronise), never gives them to the optimizer
  and never writes them into a checkpoint or an export.
* **A no-grad preparation pass** (:meth:`Objective.prepare`): run per micro-batch under
  ``torch.no_grad`` before the forward (reference log-probs, teacher logits). Its outputs are
  merged into the batch. With ``train.prepare.cache`` they are stored per example (the batch's
  ``example_ids``) on disk and reused — and with ``train.prepare.precompute`` computed once over the
  whole data set before the first step, so the frozen model costs nothing during training.
* **Metrics with their own denominators** (:class:`ObjectiveOutput`): a bare tensor is a sum over
  the loss units; a ``(sum, count)`` pair is averaged over its own count (a per-sequence quantity
  is not averaged over tokens).
* **Throughput in real tokens** (:meth:`Objective.real_tokens`): padding is not counted.

Objectives must not be ``nn.Module`` s: the engine keeps them outside the trained module tree, so
nothing they own reaches the optimizer or a checkpoint.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
from torch import nn

IGNORE_INDEX = -100

Metric = torch.Tensor | tuple[torch.Tensor, torch.Tensor | float]


@dataclass
class ObjectiveOutput:
    loss_sum: torch.Tensor
    """Σ over the batch's loss units; the engine back-propagates loss_sum / global_units."""
    metrics: dict[str, Metric] = field(default_factory=dict)
    """Named metrics: a tensor is a sum over loss units (logged as sum / units); a (sum, count) pair
    is logged as Σsum / Σcount over the global batch (e.g. per-pair rewards over pairs)."""


class Objective(ABC):
    name: str = "objective"
    perplexity: bool = False
    """True when the loss is a mean negative log-likelihood per token, so exp(val_loss) is a perplexity."""
    prepare_token_keys: frozenset[str] = frozenset()
    """Outputs of :meth:`prepare` shaped (B, T, ...) along the batch's tokens (cached trimmed to the
    real tokens and right-padded with zeros on reuse); every other output is one value per row."""

    @abstractmethod
    def loss_units(self, batch: dict[str, torch.Tensor]) -> float:
        """Number of units (tokens, pairs, ...; may be weighted) ``loss_sum`` sums over in this micro-batch."""

    @abstractmethod
    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        """Forward ``batch`` through ``model`` (an HF causal LM) and return summed loss and metrics."""

    def loss_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        """Tokens that carry a loss (targets not masked); the adaptive LR's T_t sums these."""
        return int((shifted_labels(batch) != IGNORE_INDEX).sum())

    def real_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        """Non-padding tokens processed (throughput counts these, not padded positions)."""
        for key in ("token_mask", "attention_mask"):
            if key in batch:
                return int(batch[key].sum())
        return int(batch["input_ids"].numel())

    def frozen_models(self) -> dict[str, nn.Module]:
        """Models the objective runs but never trains (reference, teacher), by name."""
        return {}

    def prepare(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The no-grad preparation pass: extra batch entries computed from frozen models (default: none)."""
        return {}

    @property
    def has_prepare(self) -> bool:
        return type(self).prepare is not Objective.prepare


def shifted_labels(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Targets of next-token prediction: ``labels`` (or ``input_ids``) shifted left by one, (B, T-1)."""
    labels = batch.get("labels", batch["input_ids"])
    return labels[:, 1:]


def decoder_hidden_states(model: nn.Module, input_ids: torch.Tensor, **kwargs) -> torch.Tensor:
    """Final-norm hidden states (B, T, H) of an HF causal LM, without running its LM head.

    ``kwargs`` go to the decoder (``position_ids`` restarting at 0 mark packed documents: with no
    attention mask, transformers builds a block-diagonal causal mask from them).
    """
    base = getattr(model, model.base_model_prefix)
    return base(input_ids=input_ids, use_cache=False, **kwargs).last_hidden_state


def lm_head_weight(model: nn.Module) -> torch.Tensor:
    return model.get_output_embeddings().weight
