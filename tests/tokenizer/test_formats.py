import pytest

from bielik.errors import BielikError
from bielik.tokenizer.formats import load_tokenizer
from tests.tokenizer.real import llama_cpp_models_dir, real_tokenizer


def _vectors(models, name):
    """llama.cpp's tokenizer test vectors: inputs and the token ids llama.cpp produces."""
    inputs = (models / f"ggml-vocab-{name}.gguf.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    outputs = (models / f"ggml-vocab-{name}.gguf.out").read_text(encoding="utf-8").split("\n")
    return [(i, [int(x) for x in o.split()]) for i, o in zip(inputs, outputs)]


@pytest.mark.parametrize("name, short", [("llama-spm", "llama2"), ("qwen2", "qwen2"), ("gpt-2", "gpt2")])
def test_gguf_vocab_reproduces_llama_cpp_test_vectors(name, short):
    models = llama_cpp_models_dir()
    tok = real_tokenizer(short)
    cases = _vectors(models, name)
    assert len(cases) > 40
    wrong = [(text, tok.encode(text), ids) for text, ids in cases if tok.encode(text) != ids]
    assert not wrong, wrong[:3]


def test_sentencepiece_file_and_hf_conversion():
    import sentencepiece as spm

    tok = real_tokenizer("mistral-v0.1")
    assert tok.kind == "sentencepiece" and tok.vocab_size == 32000
    sp = spm.SentencePieceProcessor(model_file=tok.source)
    text = "Rzeczpospolita Polska jest dobrem wspólnym wszystkich obywateli."
    assert tok.encode(text) == sp.encode(text)
    hf = tok.hf()
    assert len(hf) == 32000 and hf.convert_ids_to_tokens(1) == "<s>"
    assert hf(text, add_special_tokens=False).input_ids == sp.encode(text)


def test_hf_directory(tiny_tokenizer):
    tok = load_tokenizer(tiny_tokenizer)
    assert tok.kind == "hf" and tok.vocab_size == 2048
    bos = tok.hf().bos_token_id
    assert bos not in tok.encode("Dzień dobry")


def test_bad_inputs(tmp_path):
    with pytest.raises(BielikError, match="not found"):
        load_tokenizer(tmp_path / "missing")
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"\x00not a model")
    with pytest.raises(BielikError, match="not a SentencePiece model"):
        load_tokenizer(junk)
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    with pytest.raises(BielikError, match="not a readable GGUF"):
        load_tokenizer(fake)


def test_tokenizer_in_a_qwen2_model_dir_keeps_its_pipeline(tmp_path, tiny_tokenizer):
    """transformers 5 would load it as Qwen2Tokenizer (Qwen's pre-tokenizer) from config.json's model_type."""
    from transformers import AutoTokenizer

    from bielik.tokenizer.formats import load_hf_tokenizer
    from tests.model.tiny_models import save_tiny

    d = save_tiny(tmp_path / "q", "tiny-qwen2", tokenizer=tiny_tokenizer, vocab_size=2048)
    text = "Ala ma kota\n  x 2024"
    want = AutoTokenizer.from_pretrained(tiny_tokenizer)(text).input_ids
    assert load_hf_tokenizer(d)(text).input_ids == want
    assert (
        load_tokenizer(d).encode(text)
        == AutoTokenizer.from_pretrained(tiny_tokenizer)(text, add_special_tokens=False).input_ids
    )
