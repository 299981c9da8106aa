import gzip
import json

import numpy as np
import pytest

from bielik.data.corpus import read_jsonl, shipped_corpus_dir
from bielik.data.pack import PackConfig, TokenShards, pack
from bielik.errors import ConfigError, DataError


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


MIX = {"pl": 0.75, "en": 0.25}


@pytest.fixture(scope="module")
def mixed_data(tiny_tokenizer, tmp_path_factory):
    out = tmp_path_factory.mktemp("mixed") / "packed"
    return pack(
        PackConfig(
            tokenizer=str(tiny_tokenizer), output=str(out), seq_len=64, max_tokens=400_000, val_fraction=0.03, mix=MIX
        )
    )


def test_pack_mix_eos_split_and_determinism(tiny_tokenizer, mixed_data, tmp_path):
    from transformers import AutoTokenizer

    idx = json.loads((mixed_data / "index.json").read_text())
    metrics = json.loads((mixed_data / "metrics.json").read_text())
    share = metrics["train"]["share_by_lang"]
    assert abs(share["pl"] - 0.75) < 0.03 and abs(share["en"] - 0.25) < 0.03
    assert metrics["mix"] == MIX
    train, val = TokenShards(mixed_data, "train"), TokenShards(mixed_data, "val")
    assert len(train) > 100 and len(val) > 0 and train.seq_len == 64
    eos = AutoTokenizer.from_pretrained(tiny_tokenizer).eos_token_id
    rows = train.rows(np.arange(len(train)))
    assert (rows == eos).sum() > 0  # every document ends with EOS
    assert rows.max() < idx["vocab_size"]
    kw = dict(tokenizer=str(tiny_tokenizer), seq_len=64, max_tokens=400_000, val_fraction=0.03, mix=MIX)
    again = pack(PackConfig(output=str(tmp_path / "again"), **kw))
    assert np.array_equal(TokenShards(again, "train").rows(np.arange(len(train))), rows)
    other = pack(PackConfig(output=str(tmp_path / "seed1"), seed=1, **kw))
    assert not np.array_equal(TokenShards(other, "train").rows(np.arange(min(len(train), 50))), rows[:50])


def _polish_only(tmp_path):
    """A Polish-only JSONL (two small shipped files) and its number of documents."""
    src = tmp_path / "pl.jsonl"
    lines = []
    for name in ("pl_tatoeba", "pl_ud_pud"):
        with gzip.open(shipped_corpus_dir() / f"{name}.jsonl.gz", "rt", encoding="utf-8") as fh:
            lines.extend(line.rstrip("\n") for line in fh if line.strip())
    _write_jsonl(src, lines)
    return src, len(lines)


def test_default_takes_documents_as_they_come(tiny_tokenizer, tmp_path):
    """Issue 14.3: the default packs a Polish-only file (no mix asked) and records the shares it got."""
    src, n_docs = _polish_only(tmp_path)
    extra = tmp_path / "und.jsonl"  # a document without 'lang' is kept too, as 'und'
    _write_jsonl(extra, [json.dumps({"id": "x", "text": "Zażółć gęślą jaźń. " * 200})])
    out = pack(
        PackConfig(inputs=[str(src), str(extra)], tokenizer=str(tiny_tokenizer), output=str(tmp_path / "o"), seq_len=32)
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mix"] == "as-they-come" and metrics["documents"] == n_docs + 1 and metrics["skipped_by_lang"] == {}
    by_lang = metrics["train"]["tokens_by_lang"]
    assert set(by_lang) == {"pl", "und"} and by_lang["pl"] > 10 * by_lang["und"] > 0
    assert metrics["train"]["share_by_lang"] == {k: round(v / sum(by_lang.values()), 4) for k, v in by_lang.items()}
    held = json.loads((out / "metrics.json").read_text())["val"]["tokens_by_lang"]
    total_tokens = sum(by_lang.values()) + sum(held.values())
    assert len(TokenShards(out, "train")) == sum(by_lang.values()) // 32  # nothing resampled or dropped but the tail
    assert total_tokens > len(TokenShards(out, "train")) * 32


def test_explicit_mix_that_cannot_be_met_is_a_config_error(tiny_tokenizer, tmp_path):
    src, _ = _polish_only(tmp_path)
    with pytest.raises(ConfigError, match=r"mix: .*asks for languages \['en'\].*pl.jsonl.*'pl': \d+"):
        pack(
            PackConfig(
                inputs=[str(src)], tokenizer=str(tiny_tokenizer), output=str(tmp_path / "o"), mix={"pl": 0.5, "en": 0.5}
            )
        )
    assert not (tmp_path / "o").exists()


def test_long_document_is_tokenised_in_bounded_calls_with_the_same_ids(tiny_tokenizer, tmp_path, monkeypatch):
    """Issue 14.4: a long document goes to the tokenizer in pieces and batches of bounded size, and the
    packed rows equal those of whole-document tokenisation (pieces are cut at whitespace runs)."""
    import bielik.data.pack as packing
    from bielik.tokenizer import formats

    docs = list(read_jsonl(shipped_corpus_dir() / "pl_wolnelektury.jsonl.gz"))[:40]
    src = tmp_path / "long.jsonl"
    book = "\n\n".join(d.text for d in docs)
    _write_jsonl(
        src,
        [
            json.dumps({"id": "book", "lang": "pl", "text": book}, ensure_ascii=False),
            json.dumps({"id": "short", "lang": "pl", "text": docs[0].text[:3000]}, ensure_ascii=False),
        ],
    )
    calls: list[int] = []
    load = formats.load_hf_tokenizer

    def spying_loader(path):
        tok = load(path)

        class Spy(type(tok)):
            def __call__(self, text, *a, **kw):
                calls.append(sum(map(len, text)) if isinstance(text, list) else len(text))
                return super().__call__(text, *a, **kw)

        tok.__class__ = Spy
        return tok

    monkeypatch.setattr(formats, "load_hf_tokenizer", spying_loader)
    kw = dict(inputs=[str(src)], tokenizer=str(tiny_tokenizer), seq_len=64, val_fraction=0.0)
    monkeypatch.setattr(packing, "PIECE_CHARS", 1 << 40)
    monkeypatch.setattr(packing, "BATCH_CHARS", 1 << 40)
    whole = pack(PackConfig(output=str(tmp_path / "whole"), **kw))
    assert len(calls) == 1 and calls[0] > 100_000  # before: the whole document in one call
    calls.clear()
    monkeypatch.setattr(packing, "PIECE_CHARS", 2000)
    monkeypatch.setattr(packing, "BATCH_CHARS", 5000)
    pieces = pack(PackConfig(output=str(tmp_path / "pieces"), **kw))
    assert len(calls) > 20 and max(calls) < 5000 + 2000
    a, b = TokenShards(whole, "train"), TokenShards(pieces, "train")
    assert len(a) == len(b) > 100
    assert np.array_equal(a.rows(np.arange(len(a))), b.rows(np.arange(len(b))))


@pytest.mark.parametrize("shard_rows", [1, 3, 7, 1000])
def test_streamed_shards_equal_the_concatenated_stream(tmp_path, shard_rows):
    from bielik.data.pack import _write_rows

    rng = np.random.default_rng(0)
    chosen = [rng.integers(0, 60000, size=n).astype(np.uint16) for n in (5, 17, 0, 40, 3, 29)]
    seq_len = 8
    stream = np.concatenate(chosen)
    n_rows, shards = _write_rows(chosen, "train", seq_len, shard_rows, np.uint16, tmp_path)
    assert n_rows == len(stream) // seq_len == sum(s["rows"] for s in shards)
    got = np.concatenate([np.load(tmp_path / s["file"]) for s in shards])
    assert got.dtype == np.uint16 and np.array_equal(got, stream[: n_rows * seq_len].reshape(n_rows, seq_len))
    assert all(s["rows"] == min(shard_rows, n_rows - k * shard_rows) for k, s in enumerate(shards))


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
    _write_jsonl(
        src,
        [
            json.dumps({"id": "a", "text": "Ala ma kota.", "lang": "pl"}),
            '{"id": "b", "text": "urwany',
            json.dumps({"id": "c", "text": "x"}),
        ],
    )
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
        pack(
            PackConfig(inputs=[str(tmp_path / "nope.jsonl")], tokenizer=str(tiny_tokenizer), output=str(tmp_path / "o"))
        )
    assert not (tmp_path / "o").exists()
