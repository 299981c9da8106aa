"""Fast scoring of an HF causal LM: shared-prefix log-likelihoods, batched greedy generation.

Tokenisation follows lm-eval's HF back end exactly, so per-example results can be compared with it:
``context_enc = encode(context)``, ``continuation_enc = encode(context + continuation)[len(context_enc):]``
(trailing spaces of the context move to the continuation; the tokenizer's own special tokens, e.g.
BOS, are added unless the text already starts with them); an empty context is the BOS (else EOS)
token; the model input is ``(context_enc + continuation_enc)[-(max_length + 1):][:-1]``.

What is faster than lm-eval (which runs every (context, choice) pair as its own row and a log-softmax
over the whole vocabulary at every position):

* **shared prefix** — a document's context runs once, with a KV cache; the cache is then expanded
  (``index_select`` on the batch axis) to one row per choice and only the choices' tokens run on top
  of it. A choice of one token needs no second pass at all.
* **LM head only where needed** — the decoder body gives hidden states; the vocabulary projection is
  applied to the positions that predict continuation tokens (in chunks), never to the context.
* **length-sorted batches under a token budget** — documents sorted by length, batched so that
  ``rows x padded length <= batch_tokens``.
* **batched greedy generation** through :func:`bielik.model.generation.sample` (the loop ``bielik
  generate``, ``bench speed`` and GRPO share): KV cache, left padding, per-row stop strings and EOS;
  finished rows leave the batch (the cache is narrowed with them); length-sorted batches under
  ``gen_batch_tokens``.

log p(continuation | context) = Σ_t log softmax(W h_t)[y_t] over the continuation's tokens, and
``is_greedy`` = every y_t is the arg-max at its position (lm-eval's second output).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from bielik.errors import BielikError
from bielik.model.generation import HFForward, SamplingParams, sample
from bielik.progress import progress


@dataclass
class Choices:
    """One multiple-choice document: a context and its candidate continuations (as tokens)."""

    context: list[int]
    continuations: list[list[int]]


def _pad(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    """Right padding (causal scoring: real tokens never see the padding)."""
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


class EvalLM:
    """An HF causal LM and its tokenizer, with lm-eval-compatible tokenisation and fast batched scoring."""

    def __init__(
        self,
        model,
        tokenizer,
        batch_tokens: int = 8192,
        max_batch: int = 64,
        max_length: int | None = None,
        head_chunk: int = 1024,
        gen_batch_tokens: int | None = None,
    ):
        self.model = model.eval()
        self.tok = tokenizer
        self.device = next(model.parameters()).device
        self.batch_tokens, self.max_batch, self.head_chunk = batch_tokens, max_batch, head_chunk
        # decoding is dominated by per-step overhead, not by the (small) KV cache: wider batches pay off
        self.gen_batch_tokens = gen_batch_tokens or 4 * batch_tokens
        cfg = model.config
        self.max_length = (
            max_length or getattr(cfg, "max_position_embeddings", None) or getattr(tokenizer, "model_max_length", 2048)
        )
        head = model.get_output_embeddings()
        self._softcap = getattr(cfg, "final_logit_softcapping", None)
        plain_head = isinstance(head, torch.nn.Linear) and getattr(cfg, "logit_scale", None) is None
        self._body = model.get_decoder() if plain_head and hasattr(model, "get_decoder") else None
        self._head_w = head.weight if self._body is not None else None
        self._head_b = head.bias if self._body is not None else None
        # transformers renamed `past_key_values` to `cache` in 5.2x; pass whichever the model takes
        params = inspect.signature((self._body or model).forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        self.eos_id = tokenizer.eos_token_id
        self.prefix_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        self._forward = HFForward(self.model)  # generation: the shared sampler's adapter
        self._prefix_text = tokenizer.decode([self.prefix_id]) if self.prefix_id is not None else None

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "auto", dtype: str = "float32", **kw) -> EvalLM:
        """Load an HF model directory. The tokenizer is opened as it was saved
        (:func:`bielik.tokenizer.formats.load_hf_tokenizer`: ``AutoTokenizer`` would swap in the model
        type's tokenizer class for some types, e.g. Qwen2's pre-tokenizer; identical for Llama/Mistral)."""
        from bielik.model.loading import load_hf_model
        from bielik.tokenizer.formats import load_hf_tokenizer
        from bielik.train.distributed import pick_device

        model = load_hf_model(path, dtype)  # BielikError when not an HF directory
        return cls(model.to(pick_device(device)), load_hf_tokenizer(Path(path)), **kw)

    # ------------------------------------------------------------------------- tokenisation
    def encode(self, text: str) -> list[int]:
        if self._prefix_text and text.startswith(self._prefix_text):
            return self.tok.encode(text, add_special_tokens=False)
        return self.tok.encode(text)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        if context == "":
            cont = self.tok.encode(continuation, add_special_tokens=False)
            return ([self.prefix_id], cont) if self.prefix_id != cont[0] else (cont[:1], cont[1:])
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self.encode(context + continuation)
        ctx = self.encode(context)
        if len(whole) <= len(ctx):  # the continuation merged into the context's last token(s)
            raise BielikError(
                f"continuation {continuation!r} adds no token after context ...{context[-40:]!r}: the tokenizer merges "
                "it into the context's last token; end the context at a word boundary (e.g. with a space)"
            )
        return ctx, whole[len(ctx) :]

    def encode_choices(self, context: str, continuations: Sequence[str]) -> Choices:
        """Token form of one document. lm-eval's context tokens do not depend on the continuation
        (``encode`` of the context without its trailing spaces, or the BOS/EOS token when it is empty),
        so every choice shares them."""
        pairs = [self.encode_pair(context, c) for c in continuations]
        return Choices(pairs[0][0], [p[1] for p in pairs])

    # ------------------------------------------------------------------------ model pieces
    def _hidden(self, input_ids, cache=None, attention_mask=None, position_ids=None):
        """Final hidden states (or logits when the head is not a plain linear layer) and the cache."""
        from transformers import DynamicCache

        cache = cache if cache is not None else DynamicCache(config=self.model.config)
        net = self._body if self._body is not None else self.model
        out = net(
            input_ids=input_ids.to(self.device),
            attention_mask=None if attention_mask is None else attention_mask.to(self.device),
            position_ids=None if position_ids is None else position_ids.to(self.device),
            use_cache=True,
            **{self._cache_kw: cache},
        )
        states = out.last_hidden_state if self._body is not None else out.logits
        return states, cache

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        if self._body is None:  # h already holds logits
            return h.float()
        z = (h @ self._head_w.T).float()
        if self._head_b is not None:
            z = z + self._head_b.float()
        if self._softcap:
            z = torch.tanh(z / self._softcap) * self._softcap
        return z

    def _token_scores(self, h: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(target), target is the arg-max) per row of ``h``, the head applied in chunks.

        :func:`bielik.model.lm_head.chunked_token_logprobs` gives the same log-probabilities but not the
        arg-max behind lm-eval's ``is_greedy``; one pass over each chunk's logits here gives both.
        """
        lps, greedy = [], []
        for s in range(0, h.shape[0], self.head_chunk):
            z = self._logits(h[s : s + self.head_chunk])
            t = targets[s : s + self.head_chunk].to(z.device)
            lps.append(z.gather(1, t[:, None]).squeeze(1) - torch.logsumexp(z, dim=-1))
            greedy.append(z.argmax(dim=-1) == t)
        return torch.cat(lps).cpu(), torch.cat(greedy).cpu()

    # --------------------------------------------------------------------- log-likelihood
    @torch.no_grad()
    def loglikelihood(self, docs: Sequence[Choices], desc: str = "log-likelihood") -> list[list[tuple[float, bool]]]:
        """For every document, (log p(choice | context), is_greedy) of each choice."""
        items: list[tuple[int, int, Choices]] = []  # (doc index, first choice index, piece)
        out: list[list[tuple[float, bool] | None]] = []
        for d, doc in enumerate(docs):
            j = 0
            for piece in self._truncated(doc):
                items.append((d, j, piece))
                j += len(piece.continuations)
            out.append([None] * j)
        order = sorted(
            range(len(items)), key=lambda i: -(len(items[i][2].context) + max(map(len, items[i][2].continuations)))
        )
        # a truncated document is one piece per choice, and its pieces may land in different batches:
        # the bar counts a document when its last piece is scored
        pending = [0] * len(docs)
        for d, _, _ in items:
            pending[d] += 1
        with progress(desc, total=len(docs), unit="doc") as bar:
            for batch in self._batches(
                order,
                lambda i: len(items[i][2].context) + max(map(len, items[i][2].continuations)),
                lambda i: len(items[i][2].continuations),
            ):
                results = self._score_batch([items[i][2] for i in batch])
                finished = 0
                for i, res in zip(batch, results):
                    d, j, _ = items[i]
                    for k, r in enumerate(res):
                        out[d][j + k] = r
                    pending[d] -= 1
                    finished += pending[d] == 0
                bar.advance(finished)
        return out  # type: ignore[return-value]

    def _truncated(self, doc: Choices) -> list[Choices]:
        """lm-eval keeps the last max_length + 1 tokens of context + continuation (per choice)."""
        limit = self.max_length + 1
        if all(len(doc.context) + len(c) <= limit for c in doc.continuations):
            return [doc]
        pieces = []
        for c in doc.continuations:
            if len(c) > self.max_length:
                raise BielikError(
                    f"a continuation of {len(c)} tokens does not fit the model's {self.max_length}-token window"
                )
            keep = limit - len(c)
            pieces.append(Choices(doc.context[-keep:] if keep < len(doc.context) else doc.context, [c]))
        return pieces

    def _batches(self, order: list[int], length, rows, budget: int | None = None) -> list[list[int]]:
        budget = budget or self.batch_tokens
        batches, cur, cur_len, cur_rows = [], [], 0, 0
        for i in order:
            n_len, n_rows = max(cur_len, length(i)), cur_rows + rows(i)
            # rows x length bounds both passes: the contexts and the per-choice expanded cache
            if cur and (n_len * max(len(cur) + 1, n_rows) > budget or len(cur) + 1 > self.max_batch):
                batches.append(cur)
                cur, n_len, n_rows = [], length(i), rows(i)
            cur.append(i)
            cur_len, cur_rows = n_len, n_rows
        if cur:
            batches.append(cur)
        return batches

    def _score_batch(self, pieces: list[Choices]) -> list[list[tuple[float, bool]]]:
        ctx_lens = [len(p.context) for p in pieces]
        # pass 1: every context once (right padding, causal: real tokens never see the padding)
        h1, cache = self._hidden(_pad([p.context for p in pieces], self.pad_id))
        last = h1[torch.arange(len(pieces)), torch.tensor(ctx_lens) - 1]
        rows = [(b, c) for b, p in enumerate(pieces) for c in p.continuations]
        row_doc = torch.tensor([b for b, _ in rows])
        first_lp, first_greedy = self._token_scores(
            last[row_doc.to(last.device)], torch.tensor([c[0] for _, c in rows])
        )
        lp = first_lp.tolist()
        greedy = first_greedy.tolist()
        multi = [r for r, (_, c) in enumerate(rows) if len(c) > 1]
        if multi:
            # pass 2: the tokens of the multi-token choices on top of their document's cached context
            cache.reorder_cache(row_doc[multi].to(self.device))
            t2 = max(len(rows[r][1]) - 1 for r in multi)
            inputs = _pad([rows[r][1][:-1] for r in multi], self.pad_id)
            width = h1.shape[1]
            mask = torch.zeros((len(multi), width + t2), dtype=torch.long)
            for i, r in enumerate(multi):
                mask[i, : ctx_lens[rows[r][0]]] = 1
            mask[:, width:] = 1
            pos = torch.tensor([ctx_lens[rows[r][0]] for r in multi])[:, None] + torch.arange(t2)[None, :]
            h2, _ = self._hidden(inputs, cache=cache, attention_mask=mask, position_ids=pos)
            sel_i, sel_t, targets = [], [], []
            for i, r in enumerate(multi):
                c = rows[r][1]
                for t in range(len(c) - 1):
                    sel_i.append(i)
                    sel_t.append(t)
                    targets.append(c[t + 1])
            lp2, g2 = self._token_scores(h2[torch.tensor(sel_i), torch.tensor(sel_t)], torch.tensor(targets))
            for i, v, g in zip(sel_i, lp2.tolist(), g2.tolist()):
                lp[multi[i]] += v
                greedy[multi[i]] = greedy[multi[i]] and g
        out, r = [], 0
        for p in pieces:
            out.append([(float(lp[r + k]), bool(greedy[r + k])) for k in range(len(p.continuations))])
            r += len(p.continuations)
        return out

    # ------------------------------------------------------------------------- generation
    @torch.no_grad()
    def generate_until(
        self,
        contexts: Sequence[str],
        until: Sequence[str],
        max_gen_toks: int,
        desc: str = "generate",
        stop_ids: set[int] | None = None,
    ) -> list[str]:
        """Greedy continuations of each context, cut at the first stop string (lm-eval's generate_until).

        A row also ends at a token of ``stop_ids`` (default: the tokenizer's EOS), which is not part of the text.
        """
        stop_ids = set(stop_ids) if stop_ids else {self.eos_id}
        max_ctx = self.max_length - max_gen_toks
        if max_ctx <= 0:
            raise BielikError(
                f"max_gen_toks {max_gen_toks} leaves no room in the model's {self.max_length}-token window"
            )
        encoded = [self.encode(c)[-max_ctx:] for c in contexts]
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        results: list[str | None] = [None] * len(encoded)
        with progress(desc, total=len(encoded), unit="doc") as bar:
            for batch in self._batches(
                order, lambda i: len(encoded[i]) + max_gen_toks, lambda i: 1, self.gen_batch_tokens
            ):
                for i, text in zip(
                    batch, self._generate_batch([encoded[i] for i in batch], list(until), max_gen_toks, stop_ids)
                ):
                    results[i] = text
                bar.advance(len(batch))
        return results  # type: ignore[return-value]

    def _generate_batch(
        self, prompts: list[list[int]], until: list[str], max_gen_toks: int, stop_ids: set[int]
    ) -> list[str]:
        params = SamplingParams(max_new_tokens=max_gen_toks, stop=tuple(until), stop_token_ids=frozenset(stop_ids))
        return [c.text for c in sample(self._forward, prompts, params, self.tok, pad_id=self.pad_id)]

    # ------------------------------------------------------------------------- perplexity
    @torch.no_grad()
    def loglikelihood_rolling(
        self, texts: Sequence[str], window: int | None = None, desc: str = "perplexity"
    ) -> list[tuple[float, int]]:
        """(Σ log p(token), number of tokens) of each text, scored in disjoint windows.

        lm-eval's ``loglikelihood_rolling`` windows: the text's tokens (no special tokens) are cut into
        windows of ``window`` predictions; the first is conditioned on BOS (else EOS), every other on the
        last token of the window before it. Windows and scoring are :mod:`bielik.model.heldout`'s (the one
        held-out NLL evaluator, shared with :func:`bielik.model.swap.heldout_loss`), batched under ``batch_tokens``.
        """
        from bielik.model.heldout import rolling_windows, window_nll

        window = min(window or self.max_length, self.max_length)
        out = []
        with progress(desc, total=len(texts), unit="doc") as bar:
            for text in texts:
                windows = rolling_windows(self.tok.encode(text, add_special_tokens=False), window, self.prefix_id)
                nll = window_nll(self.model, windows, self.batch_tokens, self.head_chunk, self.pad_id)
                out.append((-sum(nll), sum(len(t) for _, t in windows)))
                bar.advance(1)
        return out


def perplexity(results: Sequence[tuple[float, int]]) -> float:
    ll = sum(r[0] for r in results)
    n = sum(r[1] for r in results)
    return math.exp(-ll / n) if n else float("nan")
