"""``bielik tokenizer train``: a BPE tokenizer trained with HF ``tokenizers`` (RECIPE §2).

Two styles, both covering every string (no unknown tokens):

* ``bytelevel`` (default): GPT-2/Qwen-style byte-level BPE (``Ġ`` space marker, 256 byte symbols as
  the alphabet).
* ``sentencepiece``: the Llama/Mistral/APT format: whitespace marked ``▁`` and prepended to the
  first word (Metaspace), BPE over characters, and **byte fallback**: a character outside the
  learnt alphabet (``limit_alphabet`` most frequent characters) is encoded as its UTF-8 bytes
  ``<0x00>``..``<0xFF>``. Tokens are spelled like Mistral's, which is what vocabulary merging and
  embedding transfer (FOCUS) match on. A newline is always a token of its own (as in Llama/Mistral,
  where it is the byte ``<0x0A>``): without that rule BPE learns pieces such as ``\\nT``, which
  straddle the ``<|im_start|>assistant\\n`` header and the first word of a reply, so the assistant
  mask could not end exactly at the header (see :mod:`bielik.tokenizer.chat`).

The saved directory is a regular HF tokenizer (``AutoTokenizer.from_pretrained`` opens it) carrying
BOS/EOS/PAD/UNK, the ChatML control tokens used by Bielik's instruct models and the ChatML chat
template with assistant-mask markers. BOS convention (:mod:`bielik.tokenizer.chat`): plain-text
encoding adds one BOS (the saved post-processor; the in-memory ``add_bos_token`` flag agrees with
it); the chat template writes BOS itself, so a rendered chat holds exactly one.

Training documents that share a word n-gram with the evaluation texts named in ``decontaminate``
(by default the Constitution preambles that ``bielik tokenizer stats`` measures on) are dropped, so
the efficiency comparison is not won by memorising the test text.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import Field

from bielik.artifacts import staged_dir, write_stage_record
from bielik.config import StageConfig
from bielik.data.corpus import expand_inputs, read_corpus, text_pieces
from bielik.log import get_logger
from bielik.tokenizer.chat import CHATML_TEMPLATE

log = get_logger(__name__)


class TokenizerTrainConfig(StageConfig):
    inputs: list[str] = Field(
        default_factory=lambda: ["shipped"], description="JSONL files/folders; 'shipped' = bundled corpus"
    )
    output: str = "runs/tokenizer"
    vocab_size: int = Field(8192, ge=300, le=1_000_000)
    min_frequency: int = Field(2, ge=1)
    max_chars: int | None = Field(6_000_000, description="train on at most this many characters (sampled documents)")
    langs: list[str] | None = Field(None, description="keep only documents with these 'lang' values")
    seed: int = 0
    bos_token: str = "<s>"
    eos_token: str = "</s>"
    unk_token: str = "<unk>"
    pad_token: str = "<pad>"
    extra_special_tokens: list[str] = Field(default_factory=lambda: ["<|im_start|>", "<|im_end|>"])
    model_max_length: int = 4096
    style: Literal["bytelevel", "sentencepiece"] = Field(
        "bytelevel", description="bytelevel (GPT-2 style) or sentencepiece (Llama/Mistral style, byte fallback)"
    )
    limit_alphabet: int = Field(
        1000, ge=50, description="sentencepiece style: characters kept in the alphabet; rarer ones fall back to bytes"
    )
    decontaminate: list[str] = Field(
        default_factory=lambda: ["preamble-pl", "preamble-en"],
        description="texts (preamble-pl/-en or .txt paths) whose word n-grams exclude a training document",
    )
    decontaminate_ngram: int = Field(8, ge=3)
    overwrite: bool = False


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = text.lower().split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _contamination_filter(cfg: TokenizerTrainConfig):
    """``clean(text) -> bool``: False when ``text`` shares a word ``decontaminate_ngram``-gram with the
    evaluation texts.

    The text is read in pieces of :data:`~bielik.data.corpus.PIECE_CHARS` characters (cut at the start
    of a whitespace run, so no word is split) and the last ``n - 1`` words of a piece are carried into
    the next, so every n-gram of the whole text is checked while only one piece's words are held: the
    set of all n-grams of a 200 MB document would take many GB."""
    from bielik.tokenizer.stats import read_texts

    n = cfg.decontaminate_ngram
    grams: set[tuple[str, ...]] = set()
    for spec in cfg.decontaminate:
        for text in read_texts(spec)[1]:
            grams |= _ngrams(text, n)

    def clean(text: str) -> bool:
        if not grams:
            return True
        carry: list[str] = []
        for piece in text_pieces(text):
            words = carry + piece.lower().split()
            if not grams.isdisjoint(tuple(words[i : i + n]) for i in range(len(words) - n + 1)):
                return False
            carry = words[len(words) - (n - 1) :] if len(words) > n - 1 else words
        return True

    return clean


def _sample_texts(cfg: TokenizerTrainConfig) -> tuple[list[str], int]:
    """The training texts: documents of the wanted languages that pass decontamination, in seeded random
    order, until ``max_chars`` characters are reached; and their total length.

    Memory stays bounded by the sample, not the corpus: a first pass keeps only each document's
    position and length, the seeded shuffle permutes those (``random.shuffle`` draws the same
    permutation for any list of the same length, so the sample is the one a shuffle of the documents
    themselves would give), and a second pass reads the texts of the chosen documents only. A single
    document longer than ``max_chars`` contributes its first ``max_chars`` characters (cut at the start
    of a whitespace run), so one huge document cannot blow the sample up."""
    clean = _contamination_filter(cfg)

    def wanted():
        return (d for d in read_corpus(cfg.inputs) if cfg.langs is None or d.lang in cfg.langs)

    kept: list[tuple[int, int]] = []  # (position among wanted documents, characters)
    dropped: list[str] = []
    pos = -1
    for d in wanted():  # no enumerate(): its cached tuple would keep the last document alive
        pos += 1
        if clean(d.text):
            kept.append((pos, len(d.text)))
        else:
            dropped.append(d.id)
        del d
    if dropped:
        log.info(
            "decontamination: dropped %d document(s) sharing a %d-gram with %s: %s",
            len(dropped),
            cfg.decontaminate_ngram,
            cfg.decontaminate,
            ", ".join(dropped)[:200],
        )
    random.Random(cfg.seed).shuffle(kept)
    chosen: dict[int, int] = {}  # position -> rank in the sample
    total = 0
    for pos, n_chars in kept:
        if cfg.max_chars is not None and total >= cfg.max_chars:
            break
        chosen[pos] = len(chosen)
        total += n_chars if cfg.max_chars is None else min(n_chars, cfg.max_chars)
    texts: list[str] = [""] * len(chosen)
    pos = -1
    for d in wanted():
        pos += 1
        if pos in chosen:
            texts[chosen[pos]] = d.text if cfg.max_chars is None else next(text_pieces(d.text, max(cfg.max_chars, 2)))
        del d
    return texts, sum(len(t) for t in texts)


def train_tokenizer(cfg: TokenizerTrainConfig) -> Path:
    """Train, save to ``cfg.output`` (atomically) and return the directory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    expand_inputs(cfg.inputs)  # fail on a missing input before any work
    texts, n_chars = _sample_texts(cfg)
    if not texts:
        raise_empty(cfg)
    specials = [cfg.unk_token, cfg.bos_token, cfg.eos_token, cfg.pad_token, *cfg.extra_special_tokens]
    log.info(
        "training %s BPE (vocab %d) on %d documents, %.1fM characters",
        cfg.style,
        cfg.vocab_size,
        len(texts),
        n_chars / 1e6,
    )

    def batches() -> Iterator[list[str]]:
        # long texts go to the trainer in pieces cut at whitespace runs: the same words, so the same
        # counts and merges, without one huge sequence in the trainer (bielik.data.corpus.text_pieces)
        for i in range(0, len(texts), 64):
            yield [piece for text in texts[i : i + 64] for piece in text_pieces(text)]

    if cfg.style == "bytelevel":
        tok = Tokenizer(models.BPE(unk_token=cfg.unk_token))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=cfg.vocab_size,
            min_frequency=cfg.min_frequency,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,  # its progress bar panics on a closed stdout pipe
        )
        tok.train_from_iterator(batches(), trainer=trainer, length=len(texts))
    else:
        tok = _train_sentencepiece_style(cfg, specials, batches, len(texts))
    bos_id = tok.token_to_id(cfg.bos_token)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cfg.bos_token} $A",
        pair=f"{cfg.bos_token} $A {cfg.bos_token} $B",
        special_tokens=[(cfg.bos_token, bos_id)],
    )
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=cfg.bos_token,
        eos_token=cfg.eos_token,
        unk_token=cfg.unk_token,
        pad_token=cfg.pad_token,
        add_bos_token=True,  # the flag agrees with the post-processor (bielik.tokenizer.chat: the BOS trap)
        add_eos_token=False,
        additional_special_tokens=list(cfg.extra_special_tokens),
        model_max_length=cfg.model_max_length,
        clean_up_tokenization_spaces=False,
    )
    hf.chat_template = CHATML_TEMPLATE
    with staged_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
        hf.save_pretrained(tmp)
        write_stage_record(
            tmp,
            "tokenizer.train",
            cfg,
            metrics={"vocab_size": tok.get_vocab_size(), "documents": len(texts), "characters": n_chars},
        )
    log.info("saved tokenizer (%d tokens) to %s", tok.get_vocab_size(), cfg.output)
    return Path(cfg.output)


def _train_sentencepiece_style(cfg: TokenizerTrainConfig, specials: list[str], batches, n_texts: int):
    """Metaspace BPE with byte fallback: train on characters, then insert the 256 byte tokens.

    ``tokenizers``' trainer has no byte-fallback option, so the byte tokens ``<0x00>``..``<0xFF>``
    are placed after the special tokens (as in Llama/Mistral vocabularies) once the merges are
    learnt; the merges only involve learnt symbols, so they stay valid under the new ids. The
    trainer is asked for ``vocab_size - 256`` entries so the final vocabulary has ``vocab_size``.
    """
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    metaspace = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split("\n", behavior="isolated"),  # no piece crosses a newline (module docstring)
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True),
        ]
    )
    tok = Tokenizer(models.BPE(unk_token=cfg.unk_token))
    tok.pre_tokenizer = metaspace
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size - 256,
        min_frequency=cfg.min_frequency,
        special_tokens=specials,
        limit_alphabet=cfg.limit_alphabet,
        show_progress=False,
    )
    tok.train_from_iterator(batches(), trainer=trainer, length=n_texts)
    model = json.loads(tok.to_str())["model"]
    learnt = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    vocab = {t: i for i, t in enumerate(specials)}
    for b in range(256):
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    for t, _ in learnt:
        vocab.setdefault(t, len(vocab))
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    out = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=cfg.unk_token, byte_fallback=True, fuse_unk=True))
    out.pre_tokenizer = metaspace
    out.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    # special tokens must stay whole in text (Tokenizer.add_special_tokens keeps their ids)
    out.add_special_tokens(specials)
    return out


def raise_empty(cfg: TokenizerTrainConfig) -> None:
    from bielik.errors import DataError

    raise DataError(f"no documents to train on in {cfg.inputs} (langs={cfg.langs})")
