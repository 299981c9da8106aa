"""Shared-prompt rows: one prompt, then k completions that each see the prompt but not each other.

DPO-P scores two completions of a prompt (chosen, rejected) and GRPO scores G; running the prompt
once per group instead of once per completion saves (k − 1)·|prompt| tokens of every forward. A
*group* is laid out in a row as ``[prompt | completion 1 | ... | completion k]``:

* ``position_ids`` restart after the prompt for every completion (prompt 0..P−1, each completion
  P, P+1, ...), so every completion sees the positions it would see right after the prompt;
* the attention mask (built by :func:`shared_prefix_mask`, (B, 1, T, T) boolean) lets a token
  attend to earlier tokens of its own group that are in the prompt or in its own completion:
  token i sees j iff j ≤ i, seg_j = seg_i and (part_j = part_i or part_j = 0). Several groups can be
  packed in one row (``seg`` tells them apart; padding is a segment of its own). A row whose only
  group has one completion and no padding before it needs no mask (``needs_mask`` = 0);
* the first token of every completion is predicted from the *last prompt token*, not from the
  token before it in the row; so predictions are not the row shifted by one but explicit pairs
  (``target_row``, ``target_src``) → ``target_ids``: the hidden state at row ``target_row``,
  position ``target_src`` predicts token ``target_ids``. Only these N positions go through the LM
  head (no logits for prompt tokens).

A batch (:func:`group_batch`) holds ``input_ids``, ``position_ids``, ``seg``, ``part`` (B, T)
int64, ``token_mask`` (B, T) bool (not padding), the flat target triple and ``target_seq`` (N,)
(the completion each target belongs to: group-major, completion j of group g is Σ_{g'<g} k_g' + j),
``seq_group`` (S,) (the index of its group in the ``groups`` given), ``seq_part`` (S,) (which completion of
its group) and ``needs_mask``. ``tests/train/test_group_rows.py`` checks that
the log-probabilities equal those of each prompt + completion run alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bielik.errors import BielikError
from bielik.model.lm_head import chunked_token_logprobs
from bielik.train.objectives.base import decoder_hidden_states, lm_head_weight


@dataclass(frozen=True)
class Group:
    """Token ids of one prompt (≥ 1 token) and its completions (each ≥ 1 token)."""

    prompt: np.ndarray
    completions: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return len(self.prompt) + sum(len(c) for c in self.completions)


def plan_rows(groups: Sequence[Group], seq_len: int | None, pack: bool = True) -> list[list[int]]:
    """Rows of group indices. ``pack``: the fewest rows of at most ``seq_len`` tokens that the
    groups fit in, balanced (longest group first into the emptiest row), so that padding to the
    longest row wastes little; else one group per row."""
    lengths = [len(g) for g in groups]
    if not pack or seq_len is None:
        return [[i] for i in range(len(groups))]
    if lengths and max(lengths) > seq_len:
        raise BielikError(f"a group of {max(lengths)} tokens does not fit in rows of {seq_len}")
    order = sorted(range(len(groups)), key=lambda i: (-lengths[i], i))
    n_rows = max(1, -(-sum(lengths) // seq_len))
    while True:
        rows: list[list[int]] = [[] for _ in range(n_rows)]
        fill = [0] * n_rows
        for i in order:
            r = min(range(n_rows), key=lambda k: (fill[k], k))
            rows[r].append(i)
            fill[r] += lengths[i]
        if max(fill) <= seq_len:
            return [sorted(r) for r in rows if r]
        n_rows += 1


def _fill_group(g: Group, at: int, seg: int, r: int, arrays: dict, targets: list) -> int:
    """Write group ``g`` into row ``r`` from position ``at``; append its (row, src, id) targets."""
    p = len(g.prompt)
    ids, pos, segs, part = arrays["input_ids"], arrays["position_ids"], arrays["seg"], arrays["part"]
    ids[r, at : at + p], pos[r, at : at + p], segs[r, at : at + p], part[r, at : at + p] = (
        g.prompt,
        np.arange(p),
        seg,
        0,
    )
    last_prompt, cur = at + p - 1, at + p
    for j, c in enumerate(g.completions):
        n = len(c)
        ids[r, cur : cur + n], pos[r, cur : cur + n], segs[r, cur : cur + n], part[r, cur : cur + n] = (
            c,
            p + np.arange(n),
            seg,
            j + 1,
        )
        src = np.concatenate([[last_prompt], np.arange(cur, cur + n - 1)])
        targets.append((np.full(n, r), src, c))
        cur += n
    return cur


def group_batch(
    groups: Sequence[Group], rows: Sequence[Sequence[int]], pad_id: int, width: int | None = None
) -> dict[str, torch.Tensor]:
    """The tensors of one micro-batch: ``groups[i]`` for the indices of each row (see the module
    docstring). Groups and completions are numbered in row order, then in order within a row."""
    order = [i for row in rows for i in row]
    width = width or max(sum(len(groups[i]) for i in row) for row in rows)
    shape = (len(rows), width)
    arrays = {
        "input_ids": np.full(shape, pad_id, np.int64),
        "position_ids": np.zeros(shape, np.int64),
        "seg": np.full(shape, -1, np.int64),
        "part": np.full(shape, -1, np.int64),
    }
    targets: list = []
    needs_mask = False
    seg = 0
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            at = _fill_group(groups[i], at, seg, r, arrays, targets)
            needs_mask |= len(groups[i].completions) > 1 or (len(row) > 1)
            seg += 1
        arrays["position_ids"][r, at:] = np.arange(width - at)
    seq_lens = [len(c) for i in order for c in groups[i].completions]
    out = {k: torch.from_numpy(v) for k, v in arrays.items()}
    out["token_mask"] = out["seg"] >= 0
    out["target_row"] = torch.from_numpy(np.concatenate([t[0] for t in targets]).astype(np.int64))
    out["target_src"] = torch.from_numpy(np.concatenate([t[1] for t in targets]).astype(np.int64))
    out["target_ids"] = torch.from_numpy(np.concatenate([t[2] for t in targets]).astype(np.int64))
    out["target_seq"] = torch.repeat_interleave(torch.arange(len(seq_lens)), torch.tensor(seq_lens))
    per_group = torch.tensor([len(groups[i].completions) for i in order])
    out["seq_group"] = torch.repeat_interleave(torch.tensor(order), per_group)
    out["seq_part"] = torch.cat([torch.arange(int(k)) for k in per_group])
    out["needs_mask"] = torch.tensor(bool(needs_mask))
    return out


def shared_prefix_mask(seg: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T) bool: query i may attend key j (see the module docstring); the diagonal is always True."""
    t = seg.shape[1]
    idx = torch.arange(t, device=seg.device)
    causal = idx[None, :] <= idx[:, None]
    same = seg[:, :, None] == seg[:, None, :]
    visible = (part[:, None, :] == part[:, :, None]) | (part[:, None, :] == 0)
    return (causal[None] & same & visible)[:, None]


def _attention_mask(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
    if not bool(batch["needs_mask"]):
        return None  # one single-completion group per row, padding only at the end: causal suffices
    allowed = shared_prefix_mask(batch["seg"], batch["part"])
    impl = getattr(getattr(model, "config", None), "_attn_implementation", "sdpa")
    if impl == "sdpa":
        return allowed
    if impl == "eager":
        dtype = next(model.parameters()).dtype
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
            ~allowed, torch.finfo(dtype).min
        )
    raise BielikError(f"shared-prompt rows need attention with a custom mask (sdpa or eager), not '{impl}'")


def completion_logprobs(model: nn.Module, batch: dict[str, torch.Tensor], chunk: int = 2048) -> torch.Tensor:
    """(N,) log πθ(target_ids) at every completion token of the batch (the LM head only at those)."""
    hidden = decoder_hidden_states(
        model, batch["input_ids"], position_ids=batch["position_ids"], attention_mask=_attention_mask(model, batch)
    )
    h = hidden[batch["target_row"], batch["target_src"]]
    return chunked_token_logprobs(h, lm_head_weight(model), batch["target_ids"], chunk=chunk)


def sequence_sums(token_values: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(S,) Σ over each completion's tokens of ``token_values`` (N,)."""
    n = int(batch["seq_group"].shape[0])
    return torch.zeros(n, dtype=token_values.dtype, device=token_values.device).index_add(
        0, batch["target_seq"], token_values
    )
