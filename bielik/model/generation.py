"""Batched sampling from an HF causal LM with a KV cache: the one decode loop of bielik.

``bielik generate``, the evaluation harness (lm-eval's ``generate_until``), ``bielik bench speed`` and
GRPO's rollouts call :func:`sample`. It lives in ``bielik.model`` so that ``train``, ``eval`` and
``quant`` can all import it without importing each other.

Decisions:

* **The model side** — left padding, the preallocated KV cache, length-grouped prefill, the
  :data:`~bielik.model.kv_cache.ForwardFn` hook for DDP/FSDP-wrapped models — is
  :mod:`bielik.model.kv_cache`.
* **Finished rows leave the batch**: the cache, mask and positions are narrowed
  (``Cache.batch_select_indices``) as soon as a row stops, so a batch costs what its live rows cost.
  A cache without that method keeps its rows; they run on and their tokens are discarded.
* **Logits pipeline** in HF's order: repetition penalty -> temperature -> top-k -> top-p -> draw.
  Temperature 0 is the arg-max (no draw; the generator is untouched).
* **Stop strings** follow lm-eval: the text is cut at the earliest occurrence of any stop string.
  A row stops as soon as the decoded tail of its tokens holds one: after every token a window of
  trailing tokens wide enough for the longest stop string is decoded (O(window) per token, not
  O(length)); the final text is decoded from all tokens and then cut. **Stop token ids** (EOS,
  ``<|im_end|>``) end a row; the token stays in ``token_ids`` (a policy must learn to emit it) but
  not in ``text``.
* **Log-probs** (``return_logprobs``) are ``log_softmax`` of the raw logits at the drawn token: the
  model's own distribution (temperature 1, no penalty, no top-k/top-p), i.e. what a teacher-forced
  forward of prompt + completion gives and what GRPO's importance ratio needs — not the log-probs
  of the truncated sampling distribution.
* **Lockstep** (``lockstep=True``): ranks of a sharded (FSDP2) model all-gather parameters in every
  forward, so all ranks must run the same number of forwards. The loop then runs exactly one
  prefill forward (no length groups) and ``max_new_tokens - 1`` decode steps whatever finishes;
  finished rows still leave the batch, but when all are done one of them stays as a passenger whose
  tokens are discarded.
* Runs under ``torch.no_grad``, not ``inference_mode``: inference tensors cannot meet autograd later,
  which a training loop that samples between optimiser steps would trip over.
* **Seeds.** Same generator seed + same inputs (and batch) -> same outputs; a row's sample does
  depend on the other rows of its batch (one draw per step for the whole batch).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from bielik.errors import BielikError
from bielik.model.kv_cache import ForwardFn, HFForward, PreallocatedLayer, as_forward, prefill

__all__ = [
    "Completion",
    "DecodeTimings",
    "FinishReason",
    "ForwardFn",
    "HFForward",
    "PreallocatedLayer",
    "SamplingParams",
    "as_forward",
    "end_of_turn_ids",
    "next_tokens",
    "repetition_penalty",
    "sample",
    "top_k_filter",
    "top_p_filter",
]

FinishReason = Literal["stop", "eos", "length"]

END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>")


@dataclass(frozen=True)
class SamplingParams:
    """How to decode. ``temperature=0`` is greedy; ``top_k=None`` and ``top_p=1`` switch those off."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int | None = None
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    stop_token_ids: frozenset[int] = frozenset()
    return_logprobs: bool = False
    lockstep: bool = False

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise BielikError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.temperature >= 0:
            raise BielikError(f"temperature must be >= 0 (0: greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise BielikError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 1:
            raise BielikError(f"top_k must be >= 1 or None, got {self.top_k}")
        if not self.repetition_penalty > 0:
            raise BielikError(f"repetition_penalty must be > 0 (1: off), got {self.repetition_penalty}")
        stops = (self.stop,) if isinstance(self.stop, str) else self.stop
        object.__setattr__(self, "stop", tuple(s for s in stops if s))  # lm-eval ignores empty stop strings
        object.__setattr__(self, "stop_token_ids", frozenset(int(t) for t in self.stop_token_ids if t is not None))


@dataclass
class Completion:
    """One prompt's result. ``token_ids`` include the stop token or the token that completed a stop
    string; ``text`` excludes a stop token and is cut before the first stop string; ``logprobs``
    (when asked for) align with ``token_ids``."""

    token_ids: list[int]
    text: str
    finish_reason: FinishReason
    logprobs: list[float] | None = None


@dataclass
class DecodeTimings:
    """Wall times in seconds, taken when a step's token ids reach the host (so device work is done).

    ``first_token``: from the call to the first token (prefill + first pick): TTFT.
    ``steps``: one entry per later token (one decode forward + pick each): their mean is TPOT.
    """

    first_token: float = 0.0
    steps: list[float] = field(default_factory=list)

    @property
    def per_token(self) -> float:
        return sum(self.steps) / len(self.steps) if self.steps else math.nan


def end_of_turn_ids(tokenizer) -> set[int]:
    """The tokenizer's EOS and the chat end-of-turn tokens it knows (``<|im_end|>``, ``<|eot_id|>``, ...)."""
    vocab = tokenizer.get_vocab()
    ids = {vocab[t] for t in END_OF_TURN_TOKENS if t in vocab}
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


# ----------------------------------------------------------------------------------------- logits
def top_k_filter(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Logits ``[B, V]`` with everything below the k-th largest of each row set to -inf (ties kept)."""
    if k is None or k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Logits ``[B, V]`` restricted to each row's nucleus: the most probable tokens whose probabilities
    reach ``top_p`` together (the smallest such set; a token stays when the tokens more probable than
    it hold less than ``top_p``, so the top token always stays). The rest become -inf."""
    if top_p >= 1.0:
        return logits
    ordered, order = logits.sort(dim=-1, descending=True)
    probs = ordered.softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs  # mass of the more probable tokens
    drop = torch.zeros_like(before, dtype=torch.bool).scatter(-1, order, before >= top_p)
    return logits.masked_fill(drop, float("-inf"))


def repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty (HF's ``repetition_penalty``): logits of tokens already in the row (``seen``,
    bool ``[B, V]``, prompt included) are divided by ``penalty`` when positive, multiplied when negative."""
    return torch.where(seen, torch.where(logits > 0, logits / penalty, logits * penalty), logits)


def next_tokens(
    logits: torch.Tensor,
    params: SamplingParams,
    generator: torch.Generator | None = None,
    seen: torch.Tensor | None = None,
) -> torch.Tensor:
    """One token per row of ``logits [B, V]``: the arg-max at temperature 0, else a draw from the
    penalised, tempered, top-k and top-p filtered distribution (on the generator's device)."""
    if params.repetition_penalty != 1.0 and seen is not None:
        logits = repetition_penalty(logits, seen, params.repetition_penalty)
    if params.temperature == 0:
        return logits.argmax(dim=-1)
    z = top_p_filter(top_k_filter(logits / params.temperature, params.top_k), params.top_p)
    probs = z.softmax(dim=-1)
    if generator is not None and generator.device != probs.device:
        probs = probs.to(generator.device)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1).to(logits.device)


# ------------------------------------------------------------------------------------ stop strings
class _StopStrings:
    """lm-eval's stop strings: incremental detection on a window of trailing tokens, final cut."""

    def __init__(self, tokenizer, stops: tuple[str, ...]):
        self.tok, self.stops = tokenizer, stops
        # the window's first token may decode short (a stripped leading space, a partial UTF-8 character)
        self.need = max((len(s) for s in stops), default=0) + 4

    def hit(self, ids: list[int]) -> bool:
        if not self.stops:
            return False
        width = self.need
        while True:
            text = self.tok.decode(ids[-width:], skip_special_tokens=True)
            if len(text) >= self.need or width >= len(ids):  # special tokens decode to nothing: widen
                return any(s in text for s in self.stops)
            width *= 2

    def cut(self, text: str) -> tuple[str, bool]:
        at = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        return (text[:at], True) if at >= 0 else (text, False)


# ------------------------------------------------------------------------------------------- batch
class _Batch:
    """The live rows of a decode: their original indices, mask, next positions, cache, seen tokens."""

    def __init__(
        self, forward: ForwardFn, prompts: Sequence[Sequence[int]], pad_id: int, device, params: SamplingParams
    ):
        width = max(len(p) for p in prompts)
        # the last token is never fed back: the cache holds at most width + new_tokens - 1 positions;
        # lockstep ranks must run the same forwards: one prefill, not a number of length groups
        self.logits, self.cache, ids, mask = prefill(
            forward, prompts, pad_id, device, width + params.max_new_tokens - 1, grouped=not params.lockstep
        )
        self.mask = mask if any(len(p) < width for p in prompts) else None  # no padding: SDPA's causal path
        self.next_pos = mask.sum(-1)
        self.rows = list(range(len(prompts)))
        self.seen = None
        if params.repetition_penalty != 1.0:
            self.seen = torch.zeros(self.logits.shape, dtype=torch.bool, device=self.logits.device)
            b, j = mask.nonzero(as_tuple=True)
            self.seen[b, ids[b, j]] = True
        self.narrowable = hasattr(self.cache, "batch_select_indices")

    def narrow(self, keep: list[int]) -> None:
        idx = torch.tensor(keep, device=self.next_pos.device)
        self.cache.batch_select_indices(idx)
        self.next_pos, self.rows = self.next_pos[idx], [self.rows[r] for r in keep]
        if self.mask is not None:
            self.mask = self.mask[idx]
        if self.seen is not None:
            self.seen = self.seen[idx]

    def advance(self, forward: ForwardFn, toks: torch.Tensor) -> None:
        """One decode step on ``toks [B]`` (the last picked token of every batch row)."""
        if self.mask is not None:
            self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], dim=1)
        self.logits, self.cache = forward(toks[:, None], self.mask, self.next_pos[:, None], self.cache)
        self.next_pos = self.next_pos + 1


# ------------------------------------------------------------------------------------------ sample
@torch.no_grad()
def sample(
    model,
    prompts: Sequence[Sequence[int]],
    params: SamplingParams,
    tokenizer=None,
    *,
    pad_id: int = 0,
    generator: torch.Generator | None = None,
    timings: DecodeTimings | None = None,
    device: str | torch.device | None = None,
) -> list[Completion]:
    """Decode every prompt (a list of token ids; left-padded into one batch) and return one
    :class:`Completion` per prompt, in order.

    ``model``: an HF causal LM (also DDP/FSDP-wrapped) or a :data:`ForwardFn`. ``tokenizer`` decodes
    the text and is required for stop strings (without one, ``text`` is ""). ``pad_id`` fills the
    padding (masked, never attended). ``generator`` seeds the draws. ``timings`` is filled with TTFT
    and per-token decode times. ``device`` is where inputs go (default: the model's; CPU for a bare
    function). Batching is the caller's: the prompts form one batch.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise BielikError("sample: every prompt needs at least one token (start empty prompts with BOS)")
    if params.stop and tokenizer is None:
        raise BielikError("sample: stop strings need a tokenizer")
    forward = as_forward(model)
    device = torch.device(device or getattr(forward, "device", "cpu"))
    stops = _StopStrings(tokenizer, params.stop)
    out: list[list[int]] = [[] for _ in prompts]
    lps: list[list[float]] = [[] for _ in prompts]
    reasons: list[FinishReason | None] = [None] * len(prompts)
    t_prev = time.perf_counter()
    batch = _Batch(forward, prompts, pad_id, device, params)
    for step in range(params.max_new_tokens):
        toks = next_tokens(batch.logits, params, generator, batch.seen)
        picked = toks.tolist()
        logps = (
            batch.logits.log_softmax(-1).gather(1, toks[:, None]).squeeze(1).tolist()
            if params.return_logprobs
            else None
        )
        if timings is not None:
            now = time.perf_counter()
            if step == 0:
                timings.first_token = now - t_prev
            else:
                timings.steps.append(now - t_prev)
            t_prev = now
        if batch.seen is not None:
            batch.seen[torch.arange(len(picked), device=batch.seen.device), toks] = True
        live = _record(batch.rows, picked, logps, out, lps, reasons, params, stops)
        if step == params.max_new_tokens - 1 or not (live or params.lockstep):
            break
        keep = live or [0]  # lockstep: a finished row rides along so that every rank runs the same forwards
        if batch.narrowable and len(keep) < len(batch.rows):
            batch.narrow(keep)
            toks = toks[torch.tensor(keep, device=toks.device)]
        batch.advance(forward, toks)
    return _completions(out, lps, reasons, params, tokenizer, stops)


def _record(
    rows: list[int],
    picked: list[int],
    logps: list[float] | None,
    out,
    lps,
    reasons,
    params: SamplingParams,
    stops: _StopStrings,
) -> list[int]:
    """Append each live row's token; mark rows that stop. Returns the batch positions still live."""
    live = []
    for r, row in enumerate(rows):
        if reasons[row] is not None:  # a passenger (lockstep, or a cache that cannot drop rows)
            continue
        out[row].append(picked[r])
        if logps is not None:
            lps[row].append(logps[r])
        if picked[r] in params.stop_token_ids:
            reasons[row] = "eos"
        elif stops.hit(out[row]):
            reasons[row] = "stop"
        else:
            live.append(r)
    return live


def _completions(out, lps, reasons, params: SamplingParams, tokenizer, stops: _StopStrings) -> list[Completion]:
    result = []
    for ids, lp, reason in zip(out, lps, reasons):
        reason = reason or "length"
        text = ""
        if tokenizer is not None:
            text = tokenizer.decode(ids[:-1] if reason == "eos" else ids, skip_special_tokens=True)
            text, cut = stops.cut(text)
            reason = "stop" if cut else reason
        result.append(Completion(ids, text, reason, lp if params.return_logprobs else None))
    return result
