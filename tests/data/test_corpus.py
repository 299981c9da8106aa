"""Corpus readers and the text splitter: bounded memory on huge single-line documents (issue 14.4)."""

import collections
import json
import tracemalloc

import pytest

from bielik.data.corpus import iter_jsonl_records, read_jsonl, text_pieces
from bielik.data.curate.io import iter_input_records


def test_text_pieces_cut_only_at_the_start_of_a_whitespace_run():
    text = "Ala ma kota,  a kot\tma Alę.\n\nZażółć gęślą jaźń   " * 50
    for max_chars in (20, 64, 1000):  # every window of these sizes holds a space after a non-space
        pieces = list(text_pieces(text, max_chars))
        assert "".join(pieces) == text and len(pieces) >= len(text) // max_chars
        assert all(0 < len(p) <= max_chars for p in pieces)
        cuts = [sum(map(len, pieces[:k])) for k in range(1, len(pieces))]
        assert all(text[c] == " " and not text[c - 1].isspace() for c in cuts)
    assert list(text_pieces("krótki tekst", 100)) == ["krótki tekst"]


def test_text_pieces_without_spaces_fall_back_to_a_hard_cut():
    text = "ź" * 25 + " " + "a" * 10
    assert list(text_pieces(text, 10)) == ["ź" * 10, "ź" * 10, "ź" * 5, " " + "a" * 9, "a"]
    assert list(text_pieces(" " * 12, 5)) == [" " * 5, " " * 5, "  "]  # only whitespace: hard cuts
    with pytest.raises(ValueError):
        list(text_pieces("abc", 1))


def _big_jsonl(path, n_chars: int, n_docs: int = 3):
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n_docs):
            fh.write(json.dumps({"id": str(i), "text": "ab cd " * (n_chars // 6)}) + "\n")


def _peak_over_size(make_iter, n_chars: int) -> float:
    """Peak traced Python memory while draining ``make_iter()``, in units of one document's text."""
    tracemalloc.start()
    try:
        collections.deque(make_iter(), maxlen=0)  # a consumer that keeps nothing
        return tracemalloc.get_traced_memory()[1] / n_chars
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("reader", ["read_jsonl", "iter_jsonl_records", "curate.iter_input_records", "curate.parquet"])
def test_readers_hold_one_line_at_a_time(tmp_path, reader):
    """A reader of single-line documents holds about two forms of the current line (raw + decoded), not
    the previous line or document too (before: 4x the document for the pack reader, 5x for curation,
    3x for Parquet, whose batches of 1024 rows went to Python whole)."""
    n = 2_000_000
    src = tmp_path / "big.jsonl"
    _big_jsonl(src, n)
    if reader == "curate.parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = [json.loads(line) for line in src.read_text().splitlines()]
        src = tmp_path / "big.parquet"
        pq.write_table(pa.Table.from_pylist(rows), src)
        del rows
    make = {
        "read_jsonl": lambda: read_jsonl(src),
        "iter_jsonl_records": lambda: iter_jsonl_records(src),
        "curate.iter_input_records": lambda: iter_input_records(src),
        "curate.parquet": lambda: iter_input_records(src),
    }[reader]
    assert sum(1 for _ in make()) == 3
    assert _peak_over_size(make, n) < 2.5
