import gzip
import json

import pytest

from bielik.data.corpus import shipped_corpus_dir


@pytest.fixture(scope="session")
def shipped_pl_docs():
    """Polish documents of the shipped corpus, interleaved across sources (legal, news, books, wiki)."""
    per_file = []
    for name in ("pl_legal", "pl_ntrex_news", "pl_wikipedia", "pl_wolnelektury", "pl_ud_pud"):
        with gzip.open(shipped_corpus_dir() / f"{name}.jsonl.gz", "rt", encoding="utf-8") as fh:
            per_file.append([json.loads(line) for line in fh])
    out = []
    for i in range(max(len(f) for f in per_file)):
        out.extend(f[i] for f in per_file if i < len(f))
    return out
