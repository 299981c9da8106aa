"""AdamW and the learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from bielik.train.config import AdaptiveLRConfig, OptimConfig


def build_adamw(model: nn.Module, cfg: OptimConfig, device_type: str) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on norms, biases or 1-D parameters).

    Uses the fused kernel where the device has one (CUDA, CPU, MPS in recent torch) unless the
    parameters are DTensors (FSDP2), where the multi-tensor ``foreach`` path is the supported one.
    """
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    is_dtensor = any(type(p).__name__ == "DTensor" for p in decay + no_decay)
    fused = cfg.fused == "on" or (cfg.fused == "auto" and not is_dtensor and device_type in ("cuda", "cpu", "mps"))
    kwargs = {"fused": True} if fused else {"foreach": True}
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, **kwargs)


def lr_at(step: int, total_steps: int, cfg: OptimConfig) -> float:
    """LR for optimizer step ``step`` (0-based).

    Linear warm-up from ~0 to ``lr`` over ``warmup_steps``, then for progress p ∈ [0, 1]:
    cosine: min_lr + (lr − min_lr)·½(1 + cos πp); linear: lr − (lr − min_lr)·p; constant: lr.
    """
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(1, total_steps - cfg.warmup_steps)
    p = min(1.0, (step - cfg.warmup_steps) / span)
    if cfg.schedule == "linear":
        return cfg.lr - (cfg.lr - cfg.min_lr) * p
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * p))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def adaptive_lr(schedule_lr: float, loss_tokens: float, cfg: AdaptiveLRConfig) -> float:
    """Bielik's adaptive learning rate: ``schedule_lr · √(T / BS)`` (capped at ``max_scale`` if set).

    ``loss_tokens`` is T, the loss-carrying tokens of the step's global batch; BS is
    ``cfg.baseline_tokens``. Off (``cfg.enabled=False``) it returns ``schedule_lr`` unchanged.
    """
    if not cfg.enabled:
        return schedule_lr
    scale = math.sqrt(max(loss_tokens, 0.0) / cfg.baseline_tokens)
    if cfg.max_scale is not None:
        scale = min(scale, cfg.max_scale)
    return schedule_lr * scale
