"""Running an HF causal LM over a batch with a KV cache: the model side of :mod:`bielik.model.generation`.

Decisions:

* **Left padding.** Prompts of different lengths are right-aligned; the attention mask hides the
  padding and position ids count real tokens only (``cumsum(mask) - 1``, 0 on padding), as HF
  ``generate`` does, so greedy output equals ``model.generate(do_sample=False)`` token for token
  (``tests/model/test_generation.py``). A batch without padding passes no mask (SDPA's causal path).
* **Cache.** A transformers ``DynamicCache(config=...)`` (the config gives sliding-window layers their
  own layer type) whose plain full-attention layers are :class:`PreallocatedLayer`: allocated once for
  prompt + new tokens and written in place, where ``DynamicLayer`` re-concatenates the whole cache at
  every step. The cache is passed as ``cache=`` — the transformers 5 name; older models take
  ``past_key_values``, so the adapter reads the model's signature. Only the last position's logits
  are computed (``logits_to_keep=1``).
* **Prefill in length groups.** With a preallocated cache, a batch's prompts are prefilled in groups
  of similar length (each padded to its own longest prompt, at most :data:`PREFILL_TOKENS` padded
  tokens a forward) and their keys/values are right-aligned in one cache of the batch's width (zeros
  under the padding, masked): a batch mixing 150- and 650-token prompts no longer computes the
  padding, and the decode still runs all rows together.
* Measured by ``benchmarks/kv_cache.py`` (7M tiny-llama, 2 CPU threads): see its docstring.
* **A forward function** (:data:`ForwardFn`) is the hook for wrapped models: :class:`HFForward` calls
  the model object itself, so DDP's and FSDP2's hooks run (FSDP2 all-gathers in them).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from bielik.errors import BielikError

ForwardFn = Callable[[torch.Tensor, "torch.Tensor | None", torch.Tensor, Any], "tuple[torch.Tensor, Any]"]
"""``(input_ids [B, T], attention_mask [B, past + T] | None, position_ids [B, T], cache | None)
-> (logits of the last position [B, V] float32, cache)``; ``cache`` is None on the prefill call
(the function creates it) unless the function has a ``new_cache(capacity)`` method, which the sampler
then calls. The mask is None when the batch has no padding."""


class HFForward:
    """The default :data:`ForwardFn` for an HF causal LM, also wrapped by DDP (``.module``) or FSDP2.

    It calls the model itself (a wrapper's hooks must run: FSDP2 all-gathers in them) with
    ``use_cache=True`` and ``logits_to_keep=1`` when the model takes it. :meth:`new_cache` gives the
    sampler a cache whose full-attention layers are allocated once for the whole decode.
    """

    def __init__(self, model: torch.nn.Module):
        inner = getattr(model, "module", model)  # DDP keeps the HF model in .module
        if not hasattr(inner, "config"):
            raise BielikError(
                f"{type(inner).__name__} is not an HF model (no .config): pass a forward function instead"
            )
        params = inspect.signature(inner.forward).parameters
        self.model, self.config = model, inner.config
        self.device = next(inner.parameters()).device
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

    def new_cache(self, capacity: int):
        """A ``DynamicCache`` for the model whose plain full-attention layers are :class:`PreallocatedLayer`
        of ``capacity`` positions (sliding-window and other layer types stay as transformers makes them)."""
        cache = DynamicCache(config=self.config)
        cache.layers = [PreallocatedLayer(capacity) if type(layer) is DynamicLayer else layer for layer in cache.layers]
        return cache

    def __call__(self, input_ids, attention_mask, position_ids, cache):
        if cache is None:
            cache = DynamicCache(config=self.config)
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=True,
            **{self._cache_kw: cache},
            **self._extra,
        )
        return out.logits[:, -1].float(), cache


class PreallocatedLayer(DynamicLayer):
    """A full-attention cache layer allocated for ``capacity`` positions on its first update; every
    update writes in place and ``keys``/``values`` are views of the filled part. transformers'
    ``DynamicLayer`` concatenates instead, copying the whole cache at every decode step: a cost that
    grows with rows x length (``benchmarks/kv_cache.py``). Unwritten positions are never viewed."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity, self._n, self._k, self._v = capacity, 0, None, None

    def lazy_initialization(self, key_states, value_states) -> None:
        self.device, self.is_initialized = key_states.device, True
        self._k = key_states.new_empty((*key_states.shape[:2], self.capacity, key_states.shape[-1]))
        self._v = value_states.new_empty((*value_states.shape[:2], self.capacity, value_states.shape[-1]))

    def _view(self, n: int):
        self._n, self.keys, self.values = n, self._k[:, :, :n], self._v[:, :, :n]
        return self.keys, self.values

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = self._n + key_states.shape[-2]
        if n > self.capacity:
            raise BielikError(f"KV cache of {self.capacity} positions cannot take {n}")
        self._k[:, :, self._n : n].copy_(key_states)
        self._v[:, :, self._n : n].copy_(value_states)
        return self._view(n)

    def batch_select_indices(self, indices) -> None:
        if self.is_initialized:
            self._k, self._v = self._k[indices.to(self._k.device)], self._v[indices.to(self._v.device)]
            self._view(self._n)

    reorder_cache = batch_select_indices

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self._k, self._v = self._k.repeat_interleave(repeats, dim=0), self._v.repeat_interleave(repeats, dim=0)
            self._view(self._n)

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes the negative number of positions to remove")
        if self.is_initialized:
            self._view(max(self._n + tokens_to_remove, 0))

    def reset(self) -> None:
        super().reset()
        self._n, self._k, self._v = 0, None, None


def as_forward(model) -> ForwardFn:
    """An HF model (or its DDP/FSDP wrapper) becomes an :class:`HFForward`; a callable is used as is."""
    if isinstance(model, torch.nn.Module):
        return HFForward(model)
    if callable(model):
        return model
    raise BielikError(f"cannot sample from a {type(model).__name__}: pass an HF causal LM or a forward function")


PREFILL_TOKENS = 4096
"""Most padded tokens in one prefill forward of a length group (see ``benchmarks/kv_cache.py``)."""


def _left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token ids and mask ``[B, width]`` right-aligned, and position ids counting real tokens (0 on padding)."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.as_tensor(list(p), dtype=torch.long)
        mask[i, width - len(p) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    return ids, mask, (mask.cumsum(-1) - 1).clamp_min(0)


def _length_groups(lengths: list[int], budget: int = PREFILL_TOKENS, slack: float = 0.8) -> list[list[int]]:
    """Row indices grouped for the prefill: longest first; a group closes when its next row is shorter
    than ``slack`` x its longest (more padding than 20%) or would take it past ``budget`` padded tokens."""
    groups: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        g = groups[-1] if groups else None
        if g and lengths[i] >= slack * lengths[g[0]] and (len(g) + 1) * lengths[g[0]] <= budget:
            g.append(i)
        else:
            groups.append([i])
    return groups


def prefill(
    forward: ForwardFn, prompts: Sequence[Sequence[int]], pad_id: int, device, capacity: int, grouped: bool = True
):
    """Logits ``[B, V]`` at every prompt's last token, the cache, and the batch's ids and mask.

    With a preallocated cache, rows are prefilled in length groups (each padded to its own longest
    row) and their keys/values are then right-aligned in one cache of the batch's width; otherwise
    (or with ``grouped=False``: ranks in lockstep must all run one prefill forward) the batch runs as
    one forward.
    """
    ids, mask, pos = _left_pad(prompts, pad_id, device)
    cache = forward.new_cache(capacity) if hasattr(forward, "new_cache") else None
    groups = _length_groups([len(p) for p in prompts])
    padded = any(len(p) < ids.shape[1] for p in prompts)
    if (
        not grouped
        or len(groups) == 1
        or cache is None
        or not all(isinstance(layer, PreallocatedLayer) for layer in cache.layers)
    ):
        logits, cache = forward(ids, mask if padded else None, pos, cache)
        return logits, cache, ids, mask
    logits, parts = None, []
    for g in groups:
        w, idx = max(len(prompts[i]) for i in g), torch.tensor(g, device=device)
        g_mask = mask[idx, -w:]
        z, c = forward(ids[idx, -w:], None if bool(g_mask.all()) else g_mask, pos[idx, -w:], forward.new_cache(w))
        logits = z.new_empty((len(prompts), z.shape[-1])) if logits is None else logits
        logits[idx] = z
        parts.append((idx, c))
    _right_align(cache, parts, len(prompts), ids.shape[1])
    return logits, cache, ids, mask


def _right_align(cache, parts: list, rows: int, width: int) -> None:
    """Fill ``cache`` (``rows`` rows) with each group's prefilled keys/values, right-aligned at ``width``;
    positions under the padding hold zeros (masked, never attended)."""
    for li, layer in enumerate(cache.layers):
        k0, v0 = parts[0][1].layers[li].keys, parts[0][1].layers[li].values
        keys = k0.new_zeros((rows, k0.shape[1], width, k0.shape[-1]))
        values = v0.new_zeros((rows, v0.shape[1], width, v0.shape[-1]))
        for idx, c in parts:
            src = c.layers[li]
            keys[idx, :, width - src.keys.shape[-2] :] = src.keys
            values[idx, :, width - src.values.shape[-2] :] = src.values
        layer.update(keys, values)
