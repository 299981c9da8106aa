"""Held-out next-token negative log-likelihood: one piece of code for every scorer of plain text.

* :func:`rolling_windows` cuts a token sequence into disjoint prediction windows (lm-eval's
  ``loglikelihood_rolling`` scheme): window k predicts tokens ``[k·w, (k+1)·w)`` and is conditioned
  only on the token before it (the prefix token for the first window), so every token is predicted
  exactly once and no window sees more than ``w`` tokens.
* :func:`window_nll` runs the windows through an HF causal LM in batches and returns
  −Σ_t log p(y_t | x_<t) per window: the decoder body gives hidden states and the LM head is applied
  in chunks of ``chunk`` positions (:func:`bielik.model.lm_head.chunked_token_logprobs`), so no
  (batch, seq, vocab) logits exist; a head that is not a plain bias-free linear map (logit soft-capping,
  logit scale, bias) runs through the model's own forward instead.

Users: :meth:`bielik.eval.lm.EvalLM.loglikelihood_rolling` (perplexity, lm-eval parity) and
:func:`bielik.model.swap.heldout_loss` (nats/token and bits/char after a tokenizer swap). The
engine's held-out evaluation (:meth:`bielik.train.engine.Engine.evaluate`) scores *objectives* (DPO,
GRPO, KD losses as well as NLL) on training-shaped batches through the wrapped (DDP/FSDP2) root
module, whose forward gathers FSDP2 shards; for a causal-LM objective its ``val_ce`` equals
:func:`token_nll` on the same batch (tests/train/test_heldout.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from bielik.errors import BielikError
from bielik.model.lm_head import IGNORE_INDEX, chunked_token_logprobs


def rolling_windows(tokens: Sequence[int], window: int, prefix: int | None) -> list[tuple[list[int], list[int]]]:
    """(inputs, targets) of each disjoint window: targets ``tokens[s:s+window]``, inputs the token before each.

    With ``prefix=None`` the first token is context only (it has nothing to be conditioned on).
    """
    if window < 1:
        raise BielikError(f"rolling window must be at least 1 token, got {window}")
    tokens = list(tokens)
    if prefix is None:
        if not tokens:
            return []
        prefix, tokens = tokens[0], tokens[1:]
    out, prev = [], prefix
    for s in range(0, len(tokens), window):
        targets = tokens[s : s + window]
        out.append(([prev] + targets[:-1], targets))
        prev = targets[-1]
    return out


def _plain_head(model) -> bool:
    head = model.get_output_embeddings()
    cfg = model.config
    return (
        isinstance(head, torch.nn.Linear)
        and head.bias is None
        and getattr(cfg, "final_logit_softcapping", None) is None
        and getattr(cfg, "logit_scale", None) is None
        and hasattr(model, "base_model_prefix")
    )


@torch.no_grad()
def token_nll(model, input_ids: torch.Tensor, targets: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """−log p(targets[b, t] | input_ids[b, :t+1]) per position, (B, T) fp32; 0 where the target is ``IGNORE_INDEX``.

    ``input_ids`` are right-padded (causal attention: padding never influences real positions).
    """
    device = next(model.parameters()).device
    input_ids, targets = input_ids.to(device), targets.to(device)
    if _plain_head(model):
        body = getattr(model, model.base_model_prefix)
        hidden = body(input_ids=input_ids, use_cache=False).last_hidden_state
        return -chunked_token_logprobs(hidden, model.get_output_embeddings().weight, targets, chunk=chunk)
    logits = model(input_ids=input_ids, use_cache=False).logits.float()
    nll = F.cross_entropy(logits.flatten(0, 1), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none")
    return nll.reshape(targets.shape)


@torch.no_grad()
def window_nll(
    model,
    windows: Sequence[tuple[Sequence[int], Sequence[int]]],
    batch_tokens: int = 8192,
    chunk: int = 1024,
    pad_id: int = 0,
) -> list[float]:
    """Σ −log p over each window's targets (float64 sums); windows batched under ``rows x length <= batch_tokens``.

    Right padding, so a batch equals its windows scored one at a time up to float summation order.
    """
    out: list[float] = []
    i = 0
    while i < len(windows):
        width = len(windows[i][0])
        rows = max(1, batch_tokens // max(width, 1))
        batch = windows[i : i + rows]
        width = max(len(w[0]) for w in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        tgt = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        for r, (x, y) in enumerate(batch):
            if len(x) != len(y):
                raise BielikError(f"window {i + r}: {len(x)} inputs for {len(y)} targets")
            ids[r, : len(x)] = torch.as_tensor(list(x), dtype=torch.long)
            tgt[r, : len(y)] = torch.as_tensor(list(y), dtype=torch.long)
        out.extend(token_nll(model, ids, tgt, chunk).double().sum(-1).tolist())
        i += len(batch)
    return out
