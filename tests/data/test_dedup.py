import random

import pytest

from bielik.data.curate.dedup import DedupConfig, Deduplicator, exact_key, jaccard


def _docs(shipped_pl_docs, n=40):
    return [d for d in shipped_pl_docs if len(d["text"]) > 2000][:n]


def test_exact_duplicates_modulo_formatting():
    a = "Rzeczpospolita Polska jest dobrem wspólnym wszystkich obywateli."
    assert exact_key(a) == exact_key("  RZECZPOSPOLITA polska jest\n dobrem wspólnym, wszystkich obywateli!! ")
    assert exact_key(a) != exact_key(a.replace("wspólnym", "wspólnotowym"))


def test_near_duplicates_found_and_distinct_documents_kept(shipped_pl_docs):
    docs = _docs(shipped_pl_docs)
    rng = random.Random(0)
    d = Deduplicator(DedupConfig(exact=True, near=True, threshold=0.8))
    for doc in docs:
        assert d.check(doc["id"], doc["text"]) is None  # real distinct documents
    # a copy with ~1% of the words changed is a near duplicate of its original
    src = docs[3]
    words = src["text"].split()
    for i in rng.sample(range(len(words)), len(words) // 100):
        words[i] = "zmienione"
    edited = " ".join(words)
    assert jaccard(src["text"], edited) > 0.85
    assert d.check("copy", edited) == ("duplicate_near", src["id"])
    assert d.check("exact-copy", src["text"]) == ("duplicate_exact", src["id"])
    assert d.counts == {"exact": 1, "near": 1, "kept": len(docs)}


def test_minhash_estimates_jaccard(shipped_pl_docs):
    # MinHash agreement rate is an unbiased estimate of the exact Jaccard similarity (the reference)
    docs = _docs(shipped_pl_docs, 5)
    d = Deduplicator(DedupConfig(num_perm=256))
    a = docs[0]["text"]
    b = a[: len(a) // 2] + docs[1]["text"][: len(a) // 2]
    est = d.minhash(a).jaccard(d.minhash(b))
    assert est == pytest.approx(jaccard(a, b), abs=0.08)


@pytest.mark.parametrize("exact", [True, False])
def test_a_reused_id_is_kept_every_time(shipped_pl_docs, exact):
    """Distinct documents that share an id (inputs are not always clean) all stay in the index."""
    d = Deduplicator(DedupConfig(exact=exact, near=True, threshold=0.8))
    for doc in _docs(shipped_pl_docs, n=3):
        assert d.check("same-id", doc["text"]) is None
    assert d.counts["kept"] == 3
