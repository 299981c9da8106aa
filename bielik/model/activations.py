"""Activation statistics from forward hooks: the one place that taps a model's activations.

Two users, one mechanism (a :class:`Hooks` set of PyTorch forward hooks feeding running statistics,
removed when the block ends, even on an error):

* ``quant.imatrix`` — llama.cpp's importance matrix, Σ_t x_{t,j}² per input column j of every
  linear layer (:class:`SumSquares`);
* ``compress.importance`` — Minitron's activation-based importance of hidden channels, FFN neurons
  and attention heads (:class:`ChannelImportance`) and the Block Influence of every decoder layer
  (:class:`BlockInfluence`).

Statistics accumulate in float64 on the activation's device, so calibration sets of any size sum
without loss, and they only ever hold one vector per tapped tensor (never the activations).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

SeqReduce = Literal["mean", "l2", "max"]
BatchReduce = Literal["l2", "mean", "max"]


def _hidden_arg(args: tuple, kwargs: dict[str, Any]) -> torch.Tensor:
    """The activation a module receives: its first positional tensor, else ``hidden_states=``."""
    if args and torch.is_tensor(args[0]):
        return args[0]
    if torch.is_tensor(kwargs.get("hidden_states")):
        return kwargs["hidden_states"]
    raise TypeError("hooked module received no tensor input (positional or hidden_states=)")


def _output_tensor(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


class Hooks:
    """A set of forward hooks, removed on exit::

    with Hooks() as hooks:
        hooks.input(layer.mlp.down_proj, stat.update)       # fn(x) with the module's input
        hooks.output(layer.input_layernorm, stat.update)    # fn(y) with its output
        hooks.block(layer, bi.update)                       # fn(x_in, x_out)
        model(input_ids)
    """

    def __init__(self) -> None:
        self._handles: list[Any] = []

    def input(self, module: nn.Module, fn: Callable[[torch.Tensor], None]) -> None:
        self._handles.append(
            module.register_forward_pre_hook(lambda _m, a, k: fn(_hidden_arg(a, k).detach()), with_kwargs=True)
        )

    def output(self, module: nn.Module, fn: Callable[[torch.Tensor], None]) -> None:
        self._handles.append(module.register_forward_hook(lambda _m, _a, out: fn(_output_tensor(out).detach())))

    def block(self, module: nn.Module, fn: Callable[[torch.Tensor, torch.Tensor], None]) -> None:
        def hook(_m, args, kwargs, out):
            fn(_hidden_arg(args, kwargs).detach(), _output_tensor(out).detach())

        self._handles.append(module.register_forward_hook(hook, with_kwargs=True))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> Hooks:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


class SumSquares:
    """Σ_t x_{t,j}² per channel j over every row t seen, and the number of rows (llama.cpp's imatrix)."""

    def __init__(self) -> None:
        self.sum: torch.Tensor | None = None
        self.count = 0

    def update(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).double()
        s = (x * x).sum(0)
        self.sum = s if self.sum is None else self.sum + s
        self.count += x.shape[0]


class ChannelImportance:
    """One score per channel from per-token magnitudes ``a`` (B, T, C), Minitron-style.

    Each sample's scores are first reduced over its sequence (``seq``: mean, l2 = √Σ_t a², max),
    then over all samples seen (``batch``: l2 = √Σ_b s_b², mean, max). The Minitron report's choice
    (its best-performing aggregation) is ``seq="mean"``, ``batch="l2"``. ``a`` must already be a
    magnitude (|x| for a channel, ‖head output‖ for a head): a signed mean would cancel.
    """

    def __init__(self, seq: SeqReduce = "mean", batch: BatchReduce = "l2") -> None:
        self.seq, self.batch = seq, batch
        self.acc: torch.Tensor | None = None
        self.samples = 0

    def update(self, a: torch.Tensor) -> None:
        if a.dim() != 3:
            raise ValueError(f"expected (batch, seq, channels) magnitudes, got shape {tuple(a.shape)}")
        a = a.double()
        if self.seq == "mean":
            s = a.mean(1)
        elif self.seq == "l2":
            s = a.square().sum(1).sqrt()
        else:
            s = a.amax(1)
        if self.batch == "l2":
            part = s.square().sum(0)
        elif self.batch == "mean":
            part = s.sum(0)
        else:
            part = s.amax(0)
        if self.acc is None:
            self.acc = part
        else:
            self.acc = torch.maximum(self.acc, part) if self.batch == "max" else self.acc + part
        self.samples += s.shape[0]

    def result(self) -> torch.Tensor:
        if self.acc is None:
            raise RuntimeError("no activations were recorded")
        if self.batch == "l2":
            return self.acc.sqrt()
        return self.acc / self.samples if self.batch == "mean" else self.acc.clone()


class BlockInfluence:
    """BI = 1 − E_t[cos(x_in,t, x_out,t)] over every token seen (Men et al., ShortGPT; Minitron §depth).

    A block that leaves its residual stream unchanged has BI = 0; one that turns it has BI up to 2.
    """

    def __init__(self) -> None:
        self.cos_sum = 0.0
        self.tokens = 0

    def update(self, x_in: torch.Tensor, x_out: torch.Tensor) -> None:
        cos = torch.nn.functional.cosine_similarity(x_in.double(), x_out.double(), dim=-1, eps=1e-12)
        self.cos_sum += float(cos.sum())
        self.tokens += cos.numel()

    def result(self) -> float:
        if not self.tokens:
            raise RuntimeError("no activations were recorded")
        return 1.0 - self.cos_sum / self.tokens
