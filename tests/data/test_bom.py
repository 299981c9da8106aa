"""A UTF-8 byte-order mark at the start of a JSONL file (Windows tools write one) is accepted by every
reader of JSONL: corpus (pack, tokenizer training), curation, evaluation data, chat, preferences, tasks."""

from __future__ import annotations

import codecs
import gzip
import json
from pathlib import Path

import pytest

BOM = codecs.BOM_UTF8


def _write(path: Path, rows: list[dict]) -> Path:
    data = BOM + "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", ["docs.jsonl", "docs.jsonl.gz"])
def test_corpus_and_curation_readers_accept_a_bom(tmp_path, name):
    from bielik.data.corpus import read_corpus
    from bielik.data.curate.io import iter_input_records

    path = _write(tmp_path / name, [{"id": "a", "text": "Ala ma kota."}, {"id": "b", "text": "Drugi."}])
    assert [d.text for d in read_corpus([path])] == ["Ala ma kota.", "Drugi."]
    assert [r["id"] for _, r in iter_input_records(path)] == ["a", "b"]


def test_eval_data_reader_accepts_a_bom(tmp_path):
    from bielik.eval.data import read_records

    path = _write(tmp_path / "test.jsonl", [{"sentence": "Dobry film.", "target": "1"}])
    assert read_records(path) == [{"sentence": "Dobry film.", "target": "1"}]


def test_post_training_readers_accept_a_bom(tmp_path):
    from bielik.data.chat import iter_records
    from bielik.data.preferences import read_math_tasks, read_preferences

    chat = _write(
        tmp_path / "chat.jsonl",
        [{"messages": [{"role": "user", "content": "Cześć"}, {"role": "assistant", "content": "Dzień dobry."}]}],
    )
    assert [obj["messages"][0]["content"] for _, obj in iter_records(chat)] == ["Cześć"]
    prefs = _write(tmp_path / "pairs.jsonl", [{"prompt": "2+2?", "chosen": "4", "rejected": "5"}])
    assert [p.chosen for p in read_preferences([prefs])] == ["4"]
    tasks = _write(tmp_path / "math.jsonl", [{"question": "Ile to 2+2?", "answer": "4"}])
    assert [t.answer for t in read_math_tasks([tasks])] == ["4"]
