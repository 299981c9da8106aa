"""Calibration and held-out text for quantisation, drawn from a document corpus (default: the shipped one).

The importance matrix must be computed on text the quantised models are *not* compared on, or the
comparison flatters the imatrix. Every document is assigned once and for all to one side by a hash
of its source and id: :data:`HELDOUT_PERCENT` % of the documents are held out (``compare``'s
default text), the rest form the calibration pool (``imatrix``'s text). The assignment depends on
the document alone, so it holds for any corpus, order or sample size.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from pydantic import Field, field_validator

from bielik.config import StageConfig
from bielik.data.corpus import Document, read_corpus
from bielik.errors import DataError

HELDOUT_PERCENT = 10


def is_heldout(doc: Document) -> bool:
    """True for the documents reserved for evaluation (never used for calibration)."""
    key = f"{doc.source or ''}\x00{doc.id}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % 100 < HELDOUT_PERCENT


class TextConfig(StageConfig):
    """Which text to use: corpus inputs, language mix by character share, and size."""

    inputs: list[str] = Field(
        default_factory=lambda: ["shipped"], description="JSONL files/folders; 'shipped' = bundled corpus"
    )
    mix: dict[str, float] = Field(
        default_factory=lambda: {"pl": 0.5, "en": 0.5}, description="language -> share of characters"
    )
    chars: int = Field(200_000, ge=1_000, description="total characters to take")
    seed: int = 0
    file: str | None = Field(None, description="use this plain-text file instead of the corpus")

    @field_validator("mix")
    @classmethod
    def _mix_positive(cls, v: dict[str, float]) -> dict[str, float]:
        if not v or any(w < 0 for w in v.values()) or sum(v.values()) <= 0:
            raise ValueError("mix needs at least one language with a positive share, e.g. {pl: 0.5, en: 0.5}")
        return v


def select_text(cfg: TextConfig, heldout: bool) -> tuple[str, dict[str, int]]:
    """Text from one side of the split, mixed by language; returns (text, characters per language).

    Documents are shuffled with ``seed`` and taken whole (the last one cut) until each language has
    its share of ``chars``. A language that runs short is an error naming it.
    """
    if cfg.file is not None:
        path = Path(cfg.file)
        if not path.is_file():
            raise DataError(f"text file {path} does not exist")
        text = path.read_text(encoding="utf-8", errors="strict")[: cfg.chars]
        return text, {"file": len(text)}
    total = sum(cfg.mix.values())
    want = {lang: int(cfg.chars * w / total) for lang, w in cfg.mix.items() if w > 0}
    pools: dict[str, list[Document]] = {lang: [] for lang in want}
    for doc in read_corpus(cfg.inputs):
        if doc.lang in pools and is_heldout(doc) == heldout:
            pools[doc.lang].append(doc)
    rng = random.Random(cfg.seed)
    parts: list[tuple[str, str]] = []
    got: dict[str, int] = {}
    for lang, need in want.items():
        docs = pools[lang]
        rng.shuffle(docs)
        n = 0
        for d in docs:
            if n >= need:
                break
            piece = d.text.strip()[: need - n]
            parts.append((lang, piece))
            n += len(piece)
        side = "held-out" if heldout else "calibration"
        if n < need:
            raise DataError(
                f"{cfg.inputs}: only {n:,} characters of '{lang}' {side} text, {need:,} requested "
                f"(lower chars or change mix)"
            )
        got[lang] = n
    rng.shuffle(parts)  # interleave languages so every chunk of the text sees both
    return "\n\n".join(p for _, p in parts), got
