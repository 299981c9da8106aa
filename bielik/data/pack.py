"""``bielik data pack``: documents -> fixed-length token rows in ``.npy`` shards, optionally language-mixed.

Steps (all deterministic for a seed), one function each:

1. **Read** documents (JSONL) and split them into train / held-out *by document* (a seeded hash of
   the document id, so no document straddles the split) -- :func:`_tokenize_corpus`.
2. **Tokenise** (``add_special_tokens=False``) and append EOS to every document. A document is cut
   into pieces of at most :data:`~bielik.data.corpus.PIECE_CHARS` characters at the start of a
   whitespace run (:func:`bielik.data.corpus.text_pieces`, which explains why the ids are the same
   as for the whole document) and the pieces are encoded in batches of about ``BATCH_CHARS``
   characters; ids are kept as ``uint16``/``uint32`` arrays. So memory per document is its text plus
   2-4 bytes per token, whatever its length. ``benchmarks/pack_memory.py`` (one single-line Polish
   document): 1.36 GB peak RSS at 200 MB, 0.57 GB at 52 MB; whole-document tokenisation took 1.85 GB
   at 10 MB and ~10 GB at 52 MB. What is left at 200 MB is mostly the JSON line and its decoded text
   (Polish text is stored by Python at 2 bytes per character) while ``json.loads`` runs; text with
   characters outside the BMP (emoji) is stored at 4 bytes per character and needs about twice that.
3. **Mix** -- :func:`_mix`. Without ``mix`` (the default) documents are taken *as they come*: every
   language keeps its natural token share (under ``max_tokens`` each language is cut in proportion)
   and the shares obtained are logged and recorded in ``metrics.json``. With ``mix`` weights ``w_l``
   (normalised) and available tokens ``A_l`` the budget is ``B_l = w_l * min_k(A_k / w_k)``; each
   language's documents are taken in seeded random order until its budget is met (no language is
   repeated). A ``mix`` naming a language no training document has is a :class:`ConfigError`.
4. **Write** -- :func:`_write_rows`: shuffle the chosen documents together, stream them through a
   buffer of one shard and cut the stream into rows of ``seq_len`` tokens (the tail shorter than a
   row is dropped); ``{split}-NNNNN.npy`` shards (memory-mappable with ``np.load(mmap_mode="r")``)
   and ``index.json`` land atomically in ``output``.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator

from bielik.artifacts import path_digest, read_json, staged_dir, write_json, write_stage_record
from bielik.config import StageConfig
from bielik.data.corpus import PIECE_CHARS, Document, expand_inputs, read_corpus, text_pieces
from bielik.errors import ConfigError, DataError
from bielik.log import get_logger
from bielik.progress import progress

log = get_logger(__name__)

INDEX = "index.json"
#: characters handed to the tokenizer per call (pieces of several documents are batched)
BATCH_CHARS = 1 << 20
BATCH_DOCS = 256


class PackConfig(StageConfig):
    inputs: list[str] = Field(
        default_factory=lambda: ["shipped"], description="JSONL files/folders; 'shipped' = bundled corpus"
    )
    tokenizer: str = Field("runs/tokenizer", description="HF tokenizer directory")
    output: str = "runs/data"
    seq_len: int = Field(512, ge=8)
    mix: dict[str, float] | None = Field(
        None,
        description="token share per 'lang' value, e.g. {pl: 0.75, en: 0.25} (other languages are skipped); "
        "null (default) takes the documents as they come and records the shares obtained",
    )
    val_fraction: float = Field(0.02, ge=0.0, lt=1.0, description="share of documents held out")
    max_tokens: int | None = Field(None, ge=1, description="cap on packed training tokens")
    shard_rows: int = Field(16384, ge=1)
    seed: int = 0
    overwrite: bool = False

    @field_validator("mix")
    @classmethod
    def _positive(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is not None and (not v or any(w <= 0 for w in v.values())):
            raise ValueError("mix weights must be positive, e.g. {pl: 0.75, en: 0.25}")
        return v


def _is_heldout(doc_id: str, seed: int, fraction: float) -> bool:
    h = hashlib.blake2b(f"{seed}:{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2**64 < fraction


# ---------------------------------------------------------------------------------------------- read + tokenise
@dataclass
class _Corpus:
    """Token arrays (EOS-terminated, one per document) by split and language, plus reading counts."""

    by_split: dict[str, dict[str, list[np.ndarray]]] = field(
        default_factory=lambda: {"train": defaultdict(list), "val": defaultdict(list)}
    )
    documents: int = 0
    skipped_by_lang: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class _PieceEncoder:
    """Encode documents piece by piece in batches of about ``BATCH_CHARS`` characters.

    A document's pieces may be spread over several tokenizer calls; its ids are gathered as
    arrays and joined (plus EOS) once its last piece is encoded, then filed by split and language.
    Documents are filed in reading order, so the result does not depend on the batching.
    """

    def __init__(self, tokenizer, eos: int, dtype, seed: int, val_fraction: float, out: _Corpus):
        self.tokenizer, self.eos, self.dtype = tokenizer, eos, dtype
        self.seed, self.val_fraction, self.out = seed, val_fraction, out
        self._pieces: list[tuple[int, str]] = []  # (slot in self._open, piece)
        self._open: list[tuple[Document, list[np.ndarray]]] = []  # documents not yet filed, in order
        self._chars = 0

    def add(self, doc: Document) -> None:
        slot = len(self._open)
        self._open.append((Document(doc.id, "", doc.lang, doc.source), []))  # keep the metadata, not the text
        for piece in text_pieces(doc.text, PIECE_CHARS):
            self._pieces.append((slot, piece))
            self._chars += len(piece)
            if self._chars >= BATCH_CHARS:
                self._encode()
        if len(self._open) >= BATCH_DOCS:
            self.flush()

    def _encode(self) -> None:
        if self._pieces:
            ids = self.tokenizer([p for _, p in self._pieces], add_special_tokens=False)["input_ids"]
            for (slot, _), toks in zip(self._pieces, ids):
                self._open[slot][1].append(np.asarray(toks, dtype=self.dtype))
        self._pieces.clear()
        self._chars = 0

    def flush(self) -> None:
        """Encode what is pending and file every document added so far."""
        self._encode()
        for doc, parts in self._open:
            parts.append(np.asarray([self.eos], dtype=self.dtype))
            split = "val" if _is_heldout(doc.id, self.seed, self.val_fraction) else "train"
            self.out.by_split[split][doc.lang or "und"].append(np.concatenate(parts))
            parts.clear()
        self._open.clear()


def _tokenize_corpus(cfg: PackConfig, files: list[Path], tokenizer, eos: int, dtype) -> _Corpus:
    """Read every document of ``files`` (skipping languages outside an explicit ``mix``) and tokenise it."""
    corpus = _Corpus()
    encoder = _PieceEncoder(tokenizer, eos, dtype, cfg.seed, cfg.val_fraction, corpus)
    with progress("tokenizing", unit="docs") as bar:
        for doc in read_corpus(files):
            lang = doc.lang or "und"
            if cfg.mix is not None and lang not in cfg.mix:
                corpus.skipped_by_lang[lang] += 1
            else:
                encoder.add(doc)
                corpus.documents += 1
                bar.advance(1)
            del doc  # the loop variable would keep this text alive while the next line is read
        encoder.flush()
    return corpus


def _check_mix(cfg: PackConfig, corpus: _Corpus) -> None:
    """An explicit ``mix`` must be satisfiable: every language it names needs training documents."""
    if cfg.mix is None:
        return
    missing = [lang for lang in cfg.mix if not corpus.by_split["train"].get(lang)]
    if missing:
        found = {lang: len(d) for lang, d in sorted(corpus.by_split["train"].items())}
        found.update({f"{lang} (skipped)": n for lang, n in sorted(corpus.skipped_by_lang.items())})
        raise ConfigError(
            f"mix: {cfg.mix} asks for languages {missing} but no training documents in {cfg.inputs} have them "
            f"(training documents by 'lang': {found or 'none'}); drop mix (mix=null) to take the documents as they come"
        )


# ---------------------------------------------------------------------------------------------- mix
def _mix(docs: dict[str, list[np.ndarray]], weights: dict[str, float] | None, rng: random.Random, cap: int | None):
    """Choose documents per language to meet the token shares; return (chosen arrays, tokens per lang).

    ``weights=None`` takes each language's natural share (its available tokens), so with no cap every
    document is chosen."""
    langs = sorted(docs) if weights is None else sorted(weights)
    if weights is None:
        w = {lang: float(sum(len(a) for a in docs[lang])) for lang in langs}
    else:
        w = {lang: weights[lang] for lang in langs}
    total_w = sum(w.values()) or 1.0
    w = {k: v / total_w for k, v in w.items()}
    avail = {lang: sum(len(a) for a in docs.get(lang, [])) for lang in langs}
    scale = min(avail[lang] / w[lang] for lang in langs if w[lang] > 0)
    if cap is not None:
        scale = min(scale, cap)
    chosen, used = [], {}
    for lang in langs:
        budget, got = w[lang] * scale, 0
        order = list(docs.get(lang, []))
        rng.shuffle(order)
        for arr in order:
            if got >= budget:
                break
            chosen.append(arr)
            got += len(arr)
        used[lang] = got
    rng.shuffle(chosen)
    return chosen, used


# ---------------------------------------------------------------------------------------------- write
def _write_rows(
    chosen: list[np.ndarray], split: str, seq_len: int, shard_rows: int, dtype, out: Path
) -> tuple[int, list[dict]]:
    """Concatenate ``chosen`` into rows of ``seq_len`` and save them as ``{split}-NNNNN.npy`` shards of
    ``shard_rows`` rows (the tail shorter than a row is dropped); return (rows, shard entries).

    The stream passes through one shard-sized buffer instead of being concatenated whole, so writing
    needs no second copy of the tokens."""
    n_rows = sum(len(a) for a in chosen) // seq_len
    shards: list[dict] = []
    if n_rows == 0:
        return 0, shards
    buf = np.empty(min(shard_rows, n_rows) * seq_len, dtype=dtype)
    fill, left = 0, n_rows * seq_len  # tokens in the buffer; tokens still to write

    def save(n_tokens: int) -> None:
        name = f"{split}-{len(shards):05d}.npy"
        np.save(out / name, buf[:n_tokens].reshape(-1, seq_len))
        shards.append({"file": name, "rows": n_tokens // seq_len})

    for arr in chosen:
        pos = 0
        while pos < len(arr) and left > 0:
            take = min(len(arr) - pos, len(buf) - fill, left)
            buf[fill : fill + take] = arr[pos : pos + take]
            fill, pos, left = fill + take, pos + take, left - take
            if fill == len(buf) or left == 0:
                save(fill)
                fill = 0
        if left == 0:
            break
    return n_rows, shards


def _split_cap(cfg: PackConfig, split: str) -> int | None:
    if split == "train" or cfg.max_tokens is None:
        return cfg.max_tokens
    return max(cfg.seq_len, int(cfg.max_tokens * cfg.val_fraction))


def _load_tokenizer(tok_dir: Path):
    from bielik.tokenizer.formats import load_hf_tokenizer

    if not (tok_dir / "tokenizer.json").is_file() and not (tok_dir / "tokenizer_config.json").is_file():
        raise DataError(f"tokenizer {tok_dir} is not an HF tokenizer directory (no tokenizer.json)")
    tokenizer = load_hf_tokenizer(tok_dir)
    if tokenizer.eos_token_id is None:
        raise DataError(f"tokenizer {tok_dir} has no EOS token")
    return tokenizer


def pack(cfg: PackConfig) -> Path:
    """Run the packing stage (read, tokenise, mix, write; module docstring) and return the output directory."""
    files = expand_inputs(cfg.inputs)
    tok_dir = Path(cfg.tokenizer)
    tokenizer = _load_tokenizer(tok_dir)
    eos, vocab = tokenizer.eos_token_id, len(tokenizer)
    dtype = np.uint16 if vocab <= np.iinfo(np.uint16).max + 1 else np.uint32
    corpus = _tokenize_corpus(cfg, files, tokenizer, eos, dtype)
    _check_mix(cfg, corpus)

    rng = random.Random(cfg.seed)
    metrics: dict = {
        "documents": corpus.documents,
        "skipped_by_lang": dict(corpus.skipped_by_lang),
        "vocab_size": vocab,
        "seq_len": cfg.seq_len,
        "mix": cfg.mix if cfg.mix is not None else "as-they-come",
    }
    shards: dict[str, list[dict]] = {}
    with staged_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
        for split in ("train", "val"):
            docs = corpus.by_split[split]
            chosen, used = _mix(docs, cfg.mix, rng, _split_cap(cfg, split)) if docs else ([], {})
            n_rows, shards[split] = _write_rows(chosen, split, cfg.seq_len, cfg.shard_rows, dtype, tmp)
            del chosen
            if split == "train" and n_rows == 0:
                raise DataError(f"not enough text for one training row of {cfg.seq_len} tokens in {cfg.inputs}")
            total = sum(used.values()) or 1
            metrics[split] = {
                "rows": int(n_rows),
                "tokens": int(n_rows * cfg.seq_len),
                "tokens_by_lang": {k: int(v) for k, v in used.items()},
                "share_by_lang": {k: round(v / total, 4) for k, v in used.items()},
            }
            log.info(
                "%s: %d rows x %d tokens; token share by language %s (%s)",
                split,
                n_rows,
                cfg.seq_len,
                metrics[split]["share_by_lang"],
                "as they come" if cfg.mix is None else f"asked {cfg.mix}",
            )
        write_json(
            tmp / INDEX,
            {
                "format": "bielik-token-shards/1",
                "seq_len": cfg.seq_len,
                "dtype": np.dtype(dtype).name,
                "vocab_size": vocab,
                "eos_token_id": eos,
                "tokenizer": str(tok_dir.resolve()),
                "tokenizer_sha256": path_digest(tok_dir),
                "shards": shards,
            },
        )
        write_stage_record(tmp, "data.pack", cfg, inputs={"tokenizer": tok_dir}, metrics=metrics)
    return Path(cfg.output)


class TokenShards:
    """Random access to the rows of one split of a packed dataset (memory-mapped, read-only)."""

    def __init__(self, root: str | Path, split: str = "train"):
        self.root = Path(root)
        index = read_json(self.root / INDEX) if (self.root / INDEX).is_file() else None
        if index is None:
            raise DataError(f"{self.root} is not a packed dataset (no {INDEX}); run `bielik data pack` first")
        if split not in index["shards"]:
            raise DataError(f"{self.root}/{INDEX} has no split '{split}'")
        self.index = index
        self.seq_len: int = index["seq_len"]
        self.vocab_size: int = index["vocab_size"]
        self._arrays = []
        for entry in index["shards"][split]:
            path = self.root / entry["file"]
            if not path.is_file():
                raise DataError(f"shard {path} listed in {INDEX} is missing")
            self._arrays.append(np.load(path, mmap_mode="r"))
        self._offsets = np.cumsum([0] + [len(a) for a in self._arrays])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def rows(self, indices: np.ndarray | list[int]) -> np.ndarray:
        """Gather rows by global index into an ``int64`` array of shape (len(indices), seq_len)."""
        out = np.empty((len(indices), self.seq_len), dtype=np.int64)
        for k, i in enumerate(indices):
            s = int(np.searchsorted(self._offsets, i, side="right") - 1)
            out[k] = self._arrays[s][i - self._offsets[s]]
        return out
