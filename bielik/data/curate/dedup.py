"""Exact and near-duplicate detection.

* **Exact**: SHA-1 of the normalised text (NFKC, lower-cased, punctuation and digits dropped,
  whitespace collapsed), so copies differing only in formatting collide.
* **Near**: MinHash (Broder 1997) over word ``ngram``-shingles of the normalised text with
  ``num_perm`` permutations, and locality-sensitive hashing with ``b`` bands of ``r`` rows chosen by
  datasketch to minimise false positives + negatives around the Jaccard ``threshold``: two
  documents become candidates with probability 1 − (1 − s^r)^b for Jaccard similarity s. The first
  document of a cluster (in input order) is kept; later ones are dropped with ``duplicate_of``.

With ``engine="datasketch"`` the index lives in one process (a few hundred bytes per document:
fine for tens of millions of documents on one machine). With ``engine="datatrove"`` the same
banding runs as datatrove's four sharded stages (``MinhashDedupSignature`` → ``Buckets`` →
``Cluster`` → ``Filter``, see :func:`bielik.data.curate.pipeline.run_minhash`) on the configured
executor; ``b`` and ``r`` are the ones datasketch would pick for ``threshold`` and ``num_perm``, and
exact copies fall out as Jaccard-1 near-duplicates. Both use :func:`normalize` and word shingles.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Literal

from pydantic import Field

from bielik.config import StageConfig

_NON_WORD = re.compile(r"[\W\d_]+", re.UNICODE)


class DedupConfig(StageConfig):
    engine: Literal["datasketch", "datatrove"] = Field(
        "datasketch",
        description="datasketch: one global in-process index; datatrove: its 4-stage sharded MinHash (clusters)",
    )
    exact: bool = True
    near: bool = True
    threshold: float = Field(
        0.8, gt=0, lt=1, description="Jaccard similarity of shingle sets counted as near-duplicate"
    )
    num_perm: int = Field(128, ge=16)
    ngram: int = Field(5, ge=1, description="words per shingle")
    seed: int = 1


def normalize(text: str) -> str:
    t = unicodedata.normalize("NFKC", text).lower()
    return " ".join(_NON_WORD.sub(" ", t).split())


def exact_key(text: str) -> str:
    return hashlib.sha1(normalize(text).encode("utf-8")).hexdigest()


def shingles(text: str, n: int) -> list[bytes]:
    words = normalize(text).split()
    if len(words) <= n:
        return [" ".join(words).encode("utf-8")] if words else []
    return [" ".join(words[i : i + n]).encode("utf-8") for i in range(len(words) - n + 1)]


class Deduplicator:
    """Streaming dedup: ``check(doc_id, text)`` → ``None`` (keep) or ``(reason, first_id)``."""

    def __init__(self, cfg: DedupConfig | None = None):
        self.cfg = cfg or DedupConfig()
        self._exact: dict[str, str] = {}
        self._lsh = None
        if self.cfg.near:
            from datasketch import MinHashLSH

            self._lsh = MinHashLSH(threshold=self.cfg.threshold, num_perm=self.cfg.num_perm)
        self.counts = {"exact": 0, "near": 0, "kept": 0}

    def minhash(self, text: str):
        from datasketch import MinHash

        m = MinHash(num_perm=self.cfg.num_perm, seed=self.cfg.seed)
        sh = shingles(text, self.cfg.ngram)
        if sh:
            m.update_batch(sh)
        return m

    def check(self, doc_id: str, text: str) -> tuple[str, str] | None:
        if self.cfg.exact:
            key = exact_key(text)
            first = self._exact.get(key)
            if first is not None:
                self.counts["exact"] += 1
                return "duplicate_exact", first
            self._exact[key] = doc_id
        if self._lsh is not None:
            m = self.minhash(text)
            hits = self._lsh.query(m)
            if hits:
                self.counts["near"] += 1
                return "duplicate_near", sorted(hits)[0]
            if doc_id in self._lsh:  # ids must be unique in the index; `kept` grows with every insert
                doc_id = f"{doc_id}#{self.counts['kept']}"
            self._lsh.insert(doc_id, m)
        self.counts["kept"] += 1
        return None


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands b, rows r) minimising false positives + negatives at ``threshold`` (datasketch's choice)."""
    from datasketch.lsh import _optimal_param

    return _optimal_param(threshold, num_perm, 0.5, 0.5)


def jaccard(a: str, b: str, ngram: int = 5) -> float:
    """Exact Jaccard similarity of two texts' shingle sets (the quantity MinHash estimates)."""
    sa, sb = set(shingles(a, ngram)), set(shingles(b, ngram))
    return len(sa & sb) / max(len(sa | sb), 1)
