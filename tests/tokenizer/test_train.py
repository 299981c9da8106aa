import pytest

from bielik.data.corpus import shipped_corpus_dir
from bielik.tokenizer.train import TokenizerTrainConfig
from tests.conftest import polish_sp_tokenizer
from tests.tokenizer.real import real_tokenizer

PREAMBLE = (shipped_corpus_dir() / "constitution_preamble_pl.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def sp_tokenizer(tmp_path_factory):
    return polish_sp_tokenizer(tmp_path_factory, vocab_size=8192, max_chars=3_000_000)


def test_sentencepiece_style_format(sp_tokenizer):
    import json

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(sp_tokenizer)
    assert len(tok) == 8192
    vocab = tok.get_vocab()
    assert [vocab[f"<0x{b:02X}>"] for b in (0, 255)] == [6, 261]  # after <unk> <s> </s> <pad> + 2 ChatML tokens
    text = "Zażółć gęślą jaźń 🦙 中文 ✓"
    ids = tok(text, add_special_tokens=False).input_ids
    pieces = tok.convert_ids_to_tokens(ids)
    assert "<0xF0>" in pieces and tok.unk_token_id not in ids  # byte fallback, never <unk>
    assert tok.decode(ids) == text
    chat = tok.apply_chat_template([{"role": "user", "content": "Cześć"}], tokenize=False, add_generation_prompt=True)
    chat_ids = tok(chat, add_special_tokens=False).input_ids
    assert (
        chat_ids.count(tok.convert_tokens_to_ids("<|im_start|>")) == 2
        and tok.convert_tokens_to_ids("<|im_end|>") in chat_ids
    )
    assert json.loads((sp_tokenizer / "metrics.json").read_text())["vocab_size"] == 8192


def test_polish_tokenizer_beats_mistral_and_llama2_on_preamble(sp_tokenizer):
    from bielik.tokenizer.formats import load_tokenizer

    ours = len(load_tokenizer(sp_tokenizer).encode(PREAMBLE))
    for name in ("mistral-v0.1", "llama2"):
        theirs = len(real_tokenizer(name).encode(PREAMBLE))
        assert len(PREAMBLE) / ours > 1.2 * len(PREAMBLE) / theirs, (name, ours, theirs)


def test_decontamination_drops_the_constitution(tmp_path):
    from bielik.tokenizer.train import _contamination_filter, _sample_texts

    cfg = TokenizerTrainConfig(output=str(tmp_path / "x"), langs=["pl"], max_chars=None)
    texts, _ = _sample_texts(cfg)
    clean = _contamination_filter(cfg)
    assert not clean("Wstęp: " + PREAMBLE) and clean("Ala ma kota i psa, a kot ma Alę oraz mysz w domu.")
    assert not any("odzyskawszy w 1989 roku możliwość suwerennego" in " ".join(t.split()) for t in texts)
    texts_all, _ = _sample_texts(cfg.model_copy(update={"decontaminate": []}))
    assert len(texts_all) == len(texts) + 1


def _shipped_polish_text(n_docs: int) -> str:
    from bielik.data.corpus import read_jsonl

    docs = [d.text for d in read_jsonl(shipped_corpus_dir() / "pl_wolnelektury.jsonl.gz")][:n_docs]
    docs += [d.text for d in read_jsonl(shipped_corpus_dir() / "pl_legal.jsonl.gz")][:n_docs]
    return "\n\n".join(docs)


def test_piecewise_encoding_equals_whole_text_for_both_styles(sp_tokenizer, tiny_tokenizer):
    """Issue 14.4: cutting a long text with ``text_pieces`` (at the start of a whitespace run) and encoding
    the pieces gives exactly the ids of encoding the whole text, for the SentencePiece style (Metaspace,
    byte fallback) and the byte-level style, on real Polish text (hundreds of cuts)."""
    from bielik.data.corpus import text_pieces
    from bielik.tokenizer.formats import load_hf_tokenizer

    text = _shipped_polish_text(60)
    pieces = list(text_pieces(text, 1000))
    assert "".join(pieces) == text and len(pieces) > 300
    for path in (sp_tokenizer, tiny_tokenizer):
        tok = load_hf_tokenizer(path)
        whole = tok(text, add_special_tokens=False)["input_ids"]
        joined = [i for ids in tok(pieces, add_special_tokens=False)["input_ids"] for i in ids]
        assert joined == whole, path


def _jsonl(path, docs):
    import json

    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    return path


def test_sample_caps_one_huge_document_and_reads_only_the_sample(tmp_path):
    """Issue 14.4 for the tokenizer-training reader: a document longer than ``max_chars`` contributes at
    most ``max_chars`` characters (cut at a whitespace run), and only the sampled texts are held."""
    import tracemalloc

    from bielik.tokenizer.train import _sample_texts

    text = _shipped_polish_text(30)
    huge = (text + "\n\n") * (2_000_000 // len(text) + 1)
    src = _jsonl(
        tmp_path / "docs.jsonl",
        [{"id": "huge", "text": huge, "lang": "pl"}]
        + [{"id": f"d{i}", "text": f"Dokument numer {i}. " * 50, "lang": "pl"} for i in range(20)],
    )
    cfg = TokenizerTrainConfig(inputs=[str(src)], output=str(tmp_path / "x"), max_chars=50_000, decontaminate=[])
    tracemalloc.start()
    try:
        texts, total = _sample_texts(cfg)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == sum(map(len, texts)) and max(map(len, texts)) <= 50_000
    assert any(huge.startswith(t) and len(t) > 49_000 for t in texts)  # the huge document, cut short
    assert total < 50_000 + 1000 + 50_000
    # the sample is ~100k characters; the huge document (2M characters) is decoded once per pass but
    # never kept alongside the sample or another copy of itself
    assert peak < 2.5 * len(huge) * 2


def test_sample_is_the_same_as_shuffling_the_documents(tmp_path):
    """The two-pass sample equals the one-pass definition: shuffle the documents, take until max_chars."""
    import random

    from bielik.data.corpus import read_corpus
    from bielik.tokenizer.train import _sample_texts

    cfg = TokenizerTrainConfig(output=str(tmp_path / "x"), langs=["pl"], max_chars=300_000, decontaminate=[], seed=3)
    texts, total = _sample_texts(cfg)
    docs = [d.text for d in read_corpus(["shipped"]) if d.lang == "pl"]
    random.Random(3).shuffle(docs)
    want, n = [], 0
    for t in docs:
        if n >= 300_000:
            break
        want.append(t)
        n += len(t)
    assert texts == want and total == n


def test_decontamination_finds_an_ngram_across_a_piece_boundary(tmp_path):
    """The filter reads long texts piece by piece (bounded memory) but still sees an n-gram that straddles
    two pieces."""
    from bielik.data.corpus import PIECE_CHARS, text_pieces
    from bielik.tokenizer.train import _contamination_filter

    clean = _contamination_filter(TokenizerTrainConfig(output=str(tmp_path / "x")))
    words = PREAMBLE.split()[:8]  # exactly one 8-gram of the preamble
    start = PIECE_CHARS - 25
    filler = ("słowo " * (start // 6 + 1))[: start - 1] + " "
    text = filler + " ".join(words) + " " + "słowo " * 100
    first = next(text_pieces(text))
    assert words[0] in first[start:] and words[-1] not in first[start:]  # the 8-gram straddles the first cut
    assert not clean(text)
    assert clean(filler + " ".join(words[:7]) + " " + "słowo " * 100)
