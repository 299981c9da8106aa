"""``bielik data pack``: documents -> language-mixed, fixed-length token rows in ``.npy`` shards.

Steps (all deterministic for a seed):

1. Read documents (JSONL), split them into train / held-out *by document* (a seeded hash of the
   document id, so no document straddles the split).
2. Tokenize (``add_special_tokens=False``) and append EOS to every document.
3. Mix languages at the configured *token* ratio: with weights ``w_l`` (normalised) and available
   tokens ``A_l`` the budget is ``B_l = w_l * min_k(A_k / w_k)``; each language's documents are
   taken in seeded random order until its budget is met (no language is repeated).
4. Shuffle the chosen documents together, concatenate them and cut the stream into rows of
   ``seq_len`` tokens (the tail shorter than a row is dropped).
5. Write ``{split}-NNNNN.npy`` shards (memory-mappable with ``np.load(mmap_mode="r")``) and
   ``index.json``; everything lands atomically in ``output``.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator

from bielik.artifacts import path_digest, read_json, staged_dir, write_json, write_stage_record
from bielik.config import StageConfig
from bielik.data.corpus import Document, expand_inputs, read_corpus
from bielik.errors import DataError
from bielik.log import get_logger
from bielik.progress import progress

log = get_logger(__name__)

INDEX = "index.json"


class PackConfig(StageConfig):
    inputs: list[str] = Field(default_factory=lambda: ["shipped"], description="JSONL files/folders; 'shipped' = bundled corpus")
    tokenizer: str = Field("runs/tokenizer", description="HF tokenizer directory")
    output: str = "runs/data"
    seq_len: int = Field(512, ge=8)
    mix: dict[str, float] | None = Field(
        default_factory=lambda: {"pl": 0.75, "en": 0.25},
        description="token share per 'lang' value; null keeps every document",
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


def _mix(docs: dict[str, list[np.ndarray]], weights: dict[str, float] | None, rng: random.Random, cap: int | None):
    """Choose documents per language to meet the token shares; return (chosen arrays, tokens per lang)."""
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


def pack(cfg: PackConfig) -> Path:
    """Run the packing stage and return the output directory."""
    from bielik.tokenizer.formats import load_hf_tokenizer

    files = expand_inputs(cfg.inputs)
    tok_dir = Path(cfg.tokenizer)
    if not (tok_dir / "tokenizer.json").is_file() and not (tok_dir / "tokenizer_config.json").is_file():
        raise DataError(f"tokenizer {tok_dir} is not an HF tokenizer directory (no tokenizer.json)")
    tokenizer = load_hf_tokenizer(tok_dir)
    eos = tokenizer.eos_token_id
    if eos is None:
        raise DataError(f"tokenizer {tok_dir} has no EOS token")
    vocab = len(tokenizer)
    dtype = np.uint16 if vocab <= np.iinfo(np.uint16).max + 1 else np.uint32

    by_split: dict[str, dict[str, list[np.ndarray]]] = {"train": defaultdict(list), "val": defaultdict(list)}
    n_docs = 0
    skipped_lang: dict[str, int] = defaultdict(int)
    batch: list[Document] = []

    def flush() -> None:
        ids = tokenizer([d.text for d in batch], add_special_tokens=False)["input_ids"]
        for d, toks in zip(batch, ids):
            split = "val" if _is_heldout(d.id, cfg.seed, cfg.val_fraction) else "train"
            by_split[split][d.lang or "und"].append(np.asarray(toks + [eos], dtype=dtype))
        batch.clear()

    with progress("tokenizing", unit="docs") as bar:
        for doc in read_corpus(files):
            lang = doc.lang or "und"
            if cfg.mix is not None and lang not in cfg.mix:
                skipped_lang[lang] += 1
                continue
            batch.append(doc)
            n_docs += 1
            if len(batch) == 256:
                flush()
                bar.advance(256)
        if batch:
            bar.advance(len(batch))
            flush()
    if cfg.mix is not None:
        missing = [lang for lang in cfg.mix if not by_split["train"].get(lang)]
        if missing:
            raise DataError(f"mix asks for languages {missing} but no training documents in {cfg.inputs} have them")

    rng = random.Random(cfg.seed)
    metrics: dict = {"documents": n_docs, "skipped_by_lang": dict(skipped_lang), "vocab_size": vocab, "seq_len": cfg.seq_len}
    shards: dict[str, list[dict]] = {}
    with staged_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
        for split in ("train", "val"):
            cap = cfg.max_tokens if split == "train" else (None if cfg.max_tokens is None else max(cfg.seq_len, int(cfg.max_tokens * cfg.val_fraction)))
            chosen, used = _mix(by_split[split], cfg.mix, rng, cap) if by_split[split] else ([], {})
            stream = np.concatenate(chosen) if chosen else np.zeros(0, dtype=dtype)
            n_rows = len(stream) // cfg.seq_len
            rows = stream[: n_rows * cfg.seq_len].reshape(n_rows, cfg.seq_len)
            if split == "train" and n_rows == 0:
                raise DataError(f"not enough text for one training row of {cfg.seq_len} tokens in {cfg.inputs}")
            shards[split] = []
            for k, start in enumerate(range(0, n_rows, cfg.shard_rows)):
                name = f"{split}-{k:05d}.npy"
                np.save(tmp / name, rows[start : start + cfg.shard_rows])
                shards[split].append({"file": name, "rows": int(min(cfg.shard_rows, n_rows - start))})
            total = sum(used.values()) or 1
            metrics[split] = {
                "rows": int(n_rows),
                "tokens": int(n_rows * cfg.seq_len),
                "tokens_by_lang": {k: int(v) for k, v in used.items()},
                "share_by_lang": {k: round(v / total, 4) for k, v in used.items()},
            }
            log.info("%s: %d rows x %d tokens; share by language %s", split, n_rows, cfg.seq_len, metrics[split]["share_by_lang"])
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
