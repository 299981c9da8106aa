import pytest

from bielik.data.corpus import shipped_corpus_dir
from bielik.tokenizer.train import TokenizerTrainConfig, train_tokenizer
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
    assert chat_ids.count(tok.convert_tokens_to_ids("<|im_start|>")) == 2 and tok.convert_tokens_to_ids("<|im_end|>") in chat_ids
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
