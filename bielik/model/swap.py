"""``bielik model swap-tokenizer``: give a model a new tokenizer, initialising embeddings with FOCUS.

Bielik v3 replaced Mistral/Qwen's tokenizer with a Polish one and initialised the new embedding
rows with FOCUS (RECIPE §2.3). FOCUS (Dobler & de Melo, "FOCUS: Effective Embedding Initialization
for Monolingual Specialization of Multilingual Language Models", EMNLP 2023, §3):

1. **Shared tokens** O = tokens in both vocabularies (exact match of the surface form, with the
   word-start markers ``▁`` / ``Ġ`` normalised to ``▁`` and byte tokens to ``<0xHH>``) copy their
   source embedding: e_t = e^s_t.
2. **Auxiliary embeddings**: a fastText CBOW model is trained on the target-language corpus
   tokenised with the *target* tokenizer, so every target token t gets a static vector x_t.
3. **New tokens** n get a convex combination of shared tokens' source embeddings,
   e_n = Σ_{o∈O} w_{n,o} e^s_o with w_n = sparsemax(c_n), c_{n,o} = cos(x_n, x_o)   (Eq. 2–3),
   sparsemax (Martins & Astudillo, ICML 2016) keeping only the most similar shared tokens.
4. New tokens without an auxiliary vector (rarer than ``fasttext.min_count``) are drawn from
   N(μ, σ²) of the source embeddings, per dimension.

The same weights initialise the rows of an untied LM head. For ablations ``init=mean`` gives
every new token the mean source embedding (Hewitt, 2021) and ``init=random`` draws every new token
from N(μ, σ²); shared tokens are copied in all three. The ``deepfocus`` package (the authors' code)
was tried and not used: it pulls numba, fastdist, datasets and the unmaintained ``fasttext`` sdist
(compiled at install), caches tokenised corpora under ``~/.cache`` and reads token strings from
whitespace-split text (losing tokens that contain whitespace); this module implements the method
directly with ``fasttext-community`` wheels and identifies tokens by id. Checked against deepfocus
1.0.1 on the same fastText model (Mistral v0.1 -> a Polish 8k tokenizer): all 4,510 FOCUS rows but
one and all 2,997 shared rows but two are equal (|Δ| < 1e-5); the three differ because deepfocus
canonicalises tokens with ``decode().lstrip()``, which maps the NBSP and hair-space tokens onto
Mistral's ``\x85``.

With ``eval_inputs`` the stage measures the mean next-token loss of the new model on held-out
target-language text: a swap that went wrong shows as a high initial loss (RECIPE §2.3).
"""

from __future__ import annotations

import math
import tempfile
import unicodedata
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from bielik.artifacts import staged_dir, write_stage_record
from bielik.config import StageConfig
from bielik.errors import BielikError, DataError
from bielik.log import get_logger
from bielik.model.heldout import rolling_windows, window_nll
from bielik.progress import progress
from bielik.tokenizer.formats import tokenizer_style

log = get_logger(__name__)


class FastTextConfig(StageConfig):
    dim: int = Field(100, ge=8)
    epochs: int = Field(3, ge=1)
    min_count: int = Field(5, ge=1, description="tokens seen fewer times get no auxiliary vector (random init)")
    window: int = Field(5, ge=1)
    threads: int = Field(1, ge=1, description="fastText is deterministic only with one thread")


class SwapTokenizerConfig(StageConfig):
    model: str = Field("runs/pretrain/final", description="HF model directory (source)")
    source_tokenizer: str | None = Field(
        None, description="the model's tokenizer if not in the model directory (any format bielik reads)"
    )
    tokenizer: str = Field(
        "runs/tokenizer", description="new (target) tokenizer: HF directory or any format bielik reads"
    )
    output: str = "runs/swapped"
    init: Literal["focus", "mean", "random"] = "focus"
    corpus: list[str] = Field(
        default_factory=lambda: ["shipped"], description="target-language JSONL for the auxiliary fastText model"
    )
    langs: list[str] | None = Field(
        default_factory=lambda: ["pl"], description="keep only documents with these 'lang' values"
    )
    max_chars: int | None = Field(20_000_000, ge=1)
    fasttext: FastTextConfig = Field(default_factory=FastTextConfig)
    eval_inputs: list[str] = Field(default_factory=list, description="held-out JSONL: report the initial loss on it")
    eval_max_tokens: int = Field(50_000, ge=64)
    eval_seq_len: int = Field(256, ge=8)
    seed: int = 0
    overwrite: bool = False


# --------------------------------------------------------------------------------------------
# token matching


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (Radford et al., 2019)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


_BYTE_DECODER = {c: b for b, c in _bytes_to_unicode().items()}


def canonical_vocab(tok) -> dict[str, int]:
    """Canonical surface form -> id: spaces as ``▁``, lone non-UTF-8 bytes as ``<0xHH>``.

    Special tokens are keyed by role (``<special:bos>``, ...) or by content, so BOS matches BOS even
    when the two vocabularies spell it differently.
    """
    style = tokenizer_style(tok)
    specials = {}
    for role in ("bos", "eos", "unk", "pad"):
        t = getattr(tok, f"{role}_token", None)
        if t is not None:
            specials[t] = f"<special:{role}>"
    for t in tok.all_special_tokens:
        specials.setdefault(t, f"<special:{t}>")
    out: dict[str, int] = {}
    for token, idx in sorted(tok.get_vocab().items(), key=lambda kv: kv[1]):
        if token in specials:
            key = specials[token]
        elif style == "bytelevel" and all(c in _BYTE_DECODER for c in token):
            raw = bytes(_BYTE_DECODER[c] for c in token)
            try:
                key = raw.decode("utf-8").replace(" ", "\u2581")
            except UnicodeDecodeError:
                key = f"<0x{raw[0]:02X}>" if len(raw) == 1 else "<bytes:" + raw.hex() + ">"
        elif style == "metaspace":
            key = token
        else:
            key = token.replace(" ", "\u2581")
        out.setdefault(key, idx)
    return out


def match_tokens(source_tok, target_tok) -> tuple[dict[int, int], list[int]]:
    """(target id -> source id for shared tokens, target ids of new tokens)."""
    src = canonical_vocab(source_tok)
    shared: dict[int, int] = {}
    new: list[int] = []
    for key, tid in canonical_vocab(target_tok).items():
        if key in src:
            shared[tid] = src[key]
        else:
            new.append(tid)
    n_target = len(target_tok)
    covered = set(shared) | set(new)
    new.extend(i for i in range(n_target) if i not in covered)  # ids whose canonical key collided
    return shared, sorted(new)


# --------------------------------------------------------------------------------------------
# FOCUS


def sparsemax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Euclidean projection onto the simplex (Martins & Astudillo, 2016, Alg. 1).

    p_i = max(z_i − τ(z), 0) with τ chosen so that Σ p = 1; k(z) = max{k : 1 + k z_(k) > Σ_{j≤k} z_(j)}.
    """
    zs, _ = torch.sort(z, dim=dim, descending=True)
    cums = zs.cumsum(dim) - 1
    ks = torch.arange(1, z.shape[dim] + 1, device=z.device, dtype=z.dtype)
    shape = [1] * z.dim()
    shape[dim] = -1
    ks = ks.view(shape)
    support = (zs * ks > cums).to(z.dtype)
    k = support.sum(dim=dim, keepdim=True)
    tau = cums.gather(dim, (k - 1).long()) / k
    return torch.clamp(z - tau, min=0)


def _ft_word(token: str) -> str:
    """A whitespace-free spelling of a token for fastText's whitespace-split input."""
    return (
        "".join(
            c if not (c.isspace() or unicodedata.category(c).startswith("C")) else f"\\u{ord(c):04x}" for c in token
        )
        or "\\empty"
    )


def train_auxiliary(target_tok, cfg: SwapTokenizerConfig, workdir: Path) -> dict[int, Any]:
    """fastText CBOW vectors for target token ids, trained on the target-tokenised corpus."""
    try:
        import fasttext
    except ModuleNotFoundError:
        raise BielikError(
            "FOCUS needs fastText: pip install 'bielik-toolkit[tokenizer]' (fasttext-community)"
        ) from None
    from bielik.data.corpus import read_corpus

    id_to_word = {i: _ft_word(t) for t, i in target_tok.get_vocab().items()}
    corpus_file = workdir / "tokenized.txt"
    n_chars = n_tokens = 0
    with (
        open(corpus_file, "w", encoding="utf-8") as fh,
        progress("tokenize corpus for fastText", total=cfg.max_chars, unit="chars") as bar,
    ):
        batch: list[str] = []

        def flush() -> None:
            nonlocal n_tokens
            for ids in target_tok(batch, add_special_tokens=False).input_ids:
                fh.write(" ".join(id_to_word[i] for i in ids) + "\n")
                n_tokens += len(ids)
            batch.clear()

        for doc in read_corpus(cfg.corpus):
            if cfg.langs is not None and doc.lang not in cfg.langs:
                continue
            before = n_chars
            for para in doc.text.split("\n"):
                if para.strip():
                    batch.append(para)
                    n_chars += len(para)
            if len(batch) >= 512:
                flush()
            bar.advance(n_chars - before)
            if cfg.max_chars is not None and n_chars >= cfg.max_chars:
                break
        if batch:
            flush()
    if n_tokens == 0:
        raise DataError(
            f"no documents in {cfg.corpus} with lang in {cfg.langs}: nothing to train the auxiliary embeddings on"
        )
    ft = cfg.fasttext
    log.info(
        "fastText CBOW (dim %d, %d epochs) on %d target tokens (%.1fM characters)",
        ft.dim,
        ft.epochs,
        n_tokens,
        n_chars / 1e6,
    )
    model = fasttext.train_unsupervised(
        str(corpus_file),
        model="cbow",
        dim=ft.dim,
        epoch=ft.epochs,
        minCount=ft.min_count,
        ws=ft.window,
        neg=10,
        thread=ft.threads,
        verbose=0,
    )
    known = set(model.words)
    return {i: torch.from_numpy(model.get_word_vector(w).copy()) for i, w in id_to_word.items() if w in known}


def focus_weights(aux: dict[int, torch.Tensor], shared: dict[int, int], new: list[int], chunk: int = 1024):
    """Yield (new target id, source ids, weights) — sparsemax over cosine similarities (Eq. 2–3)."""
    anchors = [t for t in shared if t in aux]
    if not anchors:
        raise BielikError("no shared token has an auxiliary vector: the vocabularies do not overlap on the corpus")
    a = torch.nn.functional.normalize(torch.stack([aux[t] for t in anchors]), dim=1)
    src_ids = torch.tensor([shared[t] for t in anchors])
    todo = [t for t in new if t in aux]
    for start in range(0, len(todo), chunk):
        ids = todo[start : start + chunk]
        x = torch.nn.functional.normalize(torch.stack([aux[t] for t in ids]), dim=1)
        w = sparsemax(x @ a.T)
        for row, tid in enumerate(ids):
            nz = w[row].nonzero().squeeze(1)
            yield tid, src_ids[nz], w[row, nz]


def init_embeddings(
    src: torch.Tensor,
    n_target: int,
    shared: dict[int, int],
    new: list[int],
    init: str,
    weights: list[tuple[int, torch.Tensor, torch.Tensor]] | None,
    gen: torch.Generator,
) -> tuple[torch.Tensor, int]:
    """The target embedding matrix (returns it and the number of rows drawn at random)."""
    src = src.detach().float()
    mu, sigma = src.mean(0), src.std(0)
    out = torch.empty(n_target, src.shape[1])
    if shared:
        t_ids = torch.tensor(list(shared))
        out[t_ids] = src[torch.tensor([shared[t] for t in t_ids.tolist()])]
    done: set[int] = set()
    if init == "focus" and weights is not None:
        for tid, s_ids, w in weights:
            out[tid] = (w.unsqueeze(1) * src[s_ids]).sum(0)
            done.add(tid)
    rest = [t for t in new if t not in done]
    if init == "mean":
        out[rest] = mu
        return out, 0
    if rest:
        out[torch.tensor(rest)] = mu + sigma * torch.randn(len(rest), src.shape[1], generator=gen)
    return out, len(rest)


# --------------------------------------------------------------------------------------------
# evaluation and the stage


@torch.no_grad()
def heldout_loss(
    model, tokenizer, inputs: list[str], langs: list[str] | None, max_tokens: int, seq_len: int
) -> dict[str, float]:
    """Mean next-token cross-entropy (nats/token) and bits per character on held-out documents.

    Bits per character make models with different tokenizers comparable (loss per token is not). The
    token stream (documents joined by EOS) is scored in disjoint windows of ``seq_len`` predictions by
    :mod:`bielik.model.heldout`, the evaluator shared with the perplexity of :mod:`bielik.eval.lm`.
    """
    from bielik.data.corpus import read_corpus

    ids: list[int] = []
    chars = 0
    eos = tokenizer.eos_token_id
    for doc in read_corpus(inputs):
        if langs is not None and doc.lang not in langs:
            continue
        doc_ids = tokenizer(doc.text, add_special_tokens=False).input_ids
        room = max_tokens - len(ids)
        if room <= 0:
            break
        take = doc_ids[:room]
        # characters covered by the kept tokens (exact for whole documents, proportional for a cut one)
        chars += len(doc.text) if len(take) == len(doc_ids) else round(len(doc.text) * len(take) / max(len(doc_ids), 1))
        ids.extend(take + ([eos] if eos is not None and len(take) == len(doc_ids) else []))
    if len(ids) < 2:
        raise DataError(f"no held-out text in {inputs} (langs={langs}) to evaluate on")
    model.eval()
    # the stream's first token is context only; windows of seq_len predictions, each conditioned on the token before it
    windows = rolling_windows(ids, seq_len, prefix=None)
    total = float(sum(window_nll(model, windows, batch_tokens=max(8 * seq_len, 8192))))
    count = sum(len(t) for _, t in windows)
    loss = total / count
    return {"loss": loss, "tokens": count, "characters": chars, "bits_per_char": total / math.log(2) / max(chars, 1)}


def _load_tokenizer(spec: str):
    from bielik.tokenizer.formats import load_tokenizer

    return load_tokenizer(spec).hf()  # HF dirs via load_hf_tokenizer (safe in model dirs)


def swap_tokenizer(cfg: SwapTokenizerConfig) -> dict[str, Any]:
    """Write ``cfg.model`` with ``cfg.tokenizer`` and re-initialised embeddings to ``cfg.output``."""
    from bielik.model.loading import load_hf_model

    target_tok = _load_tokenizer(cfg.tokenizer)
    source_tok = _load_tokenizer(cfg.source_tokenizer or cfg.model)
    model = load_hf_model(cfg.model)
    emb = model.get_input_embeddings().weight
    if emb.shape[0] < len(source_tok):
        raise BielikError(
            f"model {cfg.model} has {emb.shape[0]} embedding rows but its tokenizer has {len(source_tok)} tokens: "
            "wrong source_tokenizer?"
        )
    shared, new = match_tokens(source_tok, target_tok)
    log.info(
        "vocabulary: %d target tokens, %d shared with the source (copied), %d new (%s init)",
        len(target_tok),
        len(shared),
        len(new),
        cfg.init,
    )
    weights = None
    n_aux = 0
    nnz: list[int] = []
    if cfg.init == "focus" and new:
        with tempfile.TemporaryDirectory(prefix="bielik-focus-") as tmp:
            aux = train_auxiliary(target_tok, cfg, Path(tmp))
        n_aux = len(aux)
        weights = list(focus_weights(aux, shared, new))
        nnz = [len(w) for _, _, w in weights]
    gen = torch.Generator().manual_seed(cfg.seed)
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    head = model.get_output_embeddings()
    new_in, n_random = init_embeddings(emb, len(target_tok), shared, new, cfg.init, weights, gen)
    new_out = None
    if head is not None and not tied:
        new_out, _ = init_embeddings(head.weight, len(target_tok), shared, new, cfg.init, weights, gen)
    model.resize_token_embeddings(len(target_tok), mean_resizing=False)
    with torch.no_grad():
        model.get_input_embeddings().weight.copy_(new_in.to(emb.dtype))
        if new_out is not None:
            model.get_output_embeddings().weight.copy_(new_out.to(emb.dtype))
    model.config.vocab_size = len(target_tok)
    for role in ("bos", "eos", "pad"):
        setattr(model.config, f"{role}_token_id", getattr(target_tok, f"{role}_token_id"))
        if getattr(model, "generation_config", None) is not None:
            setattr(model.generation_config, f"{role}_token_id", getattr(target_tok, f"{role}_token_id"))
    summary: dict[str, Any] = {
        "init": cfg.init,
        "source_vocab": len(source_tok),
        "target_vocab": len(target_tok),
        "shared": len(shared),
        "new": len(new),
        "new_focus": len(weights or []),
        "new_random": n_random,
        "aux_vectors": n_aux,
        "sparsemax_support_mean": sum(nnz) / len(nnz) if nnz else None,
        "tied_embeddings": tied,
    }
    if cfg.eval_inputs:
        summary["eval"] = heldout_loss(
            model, target_tok, cfg.eval_inputs, cfg.langs, cfg.eval_max_tokens, cfg.eval_seq_len
        )
        log.info(
            "initial loss on %s: %.4f nats/token, %.4f bits/char",
            cfg.eval_inputs,
            summary["eval"]["loss"],
            summary["eval"]["bits_per_char"],
        )
    with staged_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
        model.save_pretrained(tmp)
        target_tok.save_pretrained(tmp)
        write_stage_record(
            tmp, "model.swap_tokenizer", cfg, inputs={"model": cfg.model, "tokenizer": cfg.tokenizer}, metrics=summary
        )
    log.info("wrote %s with the new tokenizer to %s", cfg.model, cfg.output)
    return summary
