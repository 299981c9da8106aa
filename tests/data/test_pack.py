import gzip
import json

import numpy as np
import pytest

from bielik.data.corpus import read_jsonl, shipped_corpus_dir
from bielik.data.pack import PackConfig, TokenShards, pack
from bielik.errors import DataError


def test_shipped_corpus_is_licensed_for_shipping():
    allowed = {"public-domain", "CC-BY-SA-4.0", "CC-BY-SA-3.0", "CC-BY-2.0-FR"}
    root = shipped_corpus_dir()
    assert (root / "SOURCES.md").is_file()
    files = sorted(root.glob("*.jsonl.gz"))
    assert {f.name.split(".")[0] for f in files} >= {"pl_wolnelektury", "pl_legal", "en_gutenberg"}
    for f in files:
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            licences = {json.loads(line)["license"] for line in fh}
        assert licences <= allowed, (f.name, licences)


def test_pack_mix_eos_split_and_determinism(tiny_tokenizer, tiny_data, tmp_path):
    from transformers import AutoTokenizer

    idx = json.loads((tiny_data / "index.json").read_text())
    metrics = json.loads((tiny_data / "metrics.json").read_text())
    share = metrics["train"]["share_by_lang"]
    assert abs(share["pl"] - 0.75) < 0.03 and abs(share["en"] - 0.25) < 0.03
    train, val = TokenShards(tiny_data, "train"), TokenShards(tiny_data, "val")
    assert len(train) > 100 and len(val) > 0 and train.seq_len == 64
    eos = AutoTokenizer.from_pretrained(tiny_tokenizer).eos_token_id
    rows = train.rows(np.arange(len(train)))
    assert (rows == eos).sum() > 0  # every document ends with EOS
    assert rows.max() < idx["vocab_size"]
    again = pack(PackConfig(tokenizer=str(tiny_tokenizer), output=str(tmp_path / "again"), seq_len=64, max_tokens=400_000, val_fraction=0.03))
    assert np.array_equal(TokenShards(again, "train").rows(np.arange(len(train))), rows)
    other = pack(PackConfig(tokenizer=str(tiny_tokenizer), output=str(tmp_path / "seed1"), seq_len=64, max_tokens=400_000, val_fraction=0.03, seed=1))
    assert not np.array_equal(TokenShards(other, "train").rows(np.arange(min(len(train), 50))), rows[:50])


def test_heldout_documents_are_disjoint(tiny_tokenizer, tmp_path):
    from bielik.data.pack import _is_heldout

    ids = [f"doc{i}" for i in range(2000)]
    held = [i for i in ids if _is_heldout(i, 0, 0.1)]
    assert 150 < len(held) < 250
    assert held == [i for i in ids if _is_heldout(i, 0, 0.1)]


def _write_jsonl(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_malformed_jsonl_line_is_named_and_leaves_no_output(tiny_tokenizer, tmp_path):
    src = tmp_path / "docs.jsonl"
    _write_jsonl(src, [json.dumps({"id": "a", "text": "Ala ma kota.", "lang": "pl"}), '{"id": "b", "text": "urwany', json.dumps({"id": "c", "text": "x"})])
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"docs\.jsonl:2: not a valid JSON object"):
        pack(PackConfig(inputs=[str(src)], tokenizer=str(tiny_tokenizer), output=str(out), mix=None))
    assert not out.exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_missing_field_and_missing_file(tiny_tokenizer, tmp_path):
    src = tmp_path / "docs.jsonl"
    _write_jsonl(src, [json.dumps({"id": "a", "body": "no text key"})])
    with pytest.raises(DataError, match=r"docs\.jsonl:1: field 'text' is missing"):
        list(read_jsonl(src))
    with pytest.raises(DataError, match="nope.jsonl does not exist"):
        pack(PackConfig(inputs=[str(tmp_path / "nope.jsonl")], tokenizer=str(tiny_tokenizer), output=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()
