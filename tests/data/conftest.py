import gzip
import json

import pytest

from bielik.data.corpus import shipped_corpus_dir
from bielik.data.curate.quality_data import DEFAULT_SOURCES


@pytest.fixture(scope="session")
def shipped_pl_docs():
    """Polish documents of the shipped corpus, interleaved across sources (legal, news, books, wiki)."""
    per_file = []
    for name in DEFAULT_SOURCES:
        with gzip.open(shipped_corpus_dir() / f"{name}.jsonl.gz", "rt", encoding="utf-8") as fh:
            per_file.append([json.loads(line) for line in fh])
    out = []
    for i in range(max(len(f) for f in per_file)):
        out.extend(f[i] for f in per_file if i < len(f))
    return out
