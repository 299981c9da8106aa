import json

import pytest

from bielik.errors import BielikError
from bielik.tokenizer.merge import TokenizerMergeConfig, merge_tokenizers, merge_vocabularies
from tests.conftest import polish_sp_tokenizer
from tests.tokenizer.real import real_tokenizer


@pytest.fixture(scope="module")
def polish_sp(tmp_path_factory):
    return polish_sp_tokenizer(tmp_path_factory, vocab_size=6000, max_chars=2_000_000)


def test_mistral_plus_polish_merge_is_ambiguous(tmp_path, polish_sp):
    from bielik.tokenizer.formats import load_hf_tokenizer

    mistral = real_tokenizer("mistral-v0.1").hf()
    out = tmp_path / "merged"
    s = merge_tokenizers(
        TokenizerMergeConfig(base="mistral-v0.1", extra=str(polish_sp), output=str(out), sample_docs=20)
    )
    merged = load_hf_tokenizer(out)
    # the base vocabulary is kept id for id; new tokens are appended
    mv, bv = merged.get_vocab(), mistral.get_vocab()
    assert all(mv[t] == i for t, i in bv.items())
    assert len(merged) == s["merged_vocab"] == 32000 + s["added_tokens"] and s["added_tokens"] > 1000
    # the ambiguity Bielik v0.1 ran into is detected and quantified
    assert s["non_canonical_words"] > 0 and s["unreachable_tokens"] > 0 and s["conflicting_merges"] > 0
    rep = json.loads((out / "report.json").read_text())
    extra = load_hf_tokenizer(polish_sp)
    for ex in rep["examples"]["non_canonical"][:5]:  # re-check each example independently
        m = merged.convert_ids_to_tokens(merged(ex["word"], add_special_tokens=False).input_ids)
        e = extra.convert_ids_to_tokens(extra(ex["word"], add_special_tokens=False).input_ids)
        assert m == ex["merged"] and e == ex["extra"] and len(m) > len(e) and all(t in mv for t in e)
    word_initial = [u["token"] for u in rep["examples"]["unreachable"] if u["token"].startswith("▁")]
    assert word_initial
    for t in word_initial[:5]:  # an unreachable token is not produced even for its own spelling
        assert merged(t[1:], add_special_tokens=False).input_ids != [mv[t]]
    for c in rep["examples"]["conflicting_merges"][:5]:
        assert "".join(c["merge"]) == c["token"] == "".join(c["base_merge"]) and c["merge"] != c["base_merge"]
    assert s["cpt"]["extra"] > s["cpt"]["merged"] > s["cpt"]["base"]  # merging helps, but far less than it should
    assert "non-canonical words" in (out / "report.md").read_text()


def test_spelling_mismatch_is_refused(tiny_tokenizer):
    from transformers import AutoTokenizer

    mistral = real_tokenizer("mistral-v0.1").hf()
    with pytest.raises(BielikError, match="spelled differently"):
        merge_vocabularies(mistral, AutoTokenizer.from_pretrained(tiny_tokenizer))


def test_byte_level_merge(tmp_path, tiny_tokenizer):
    from bielik.tokenizer.formats import load_hf_tokenizer
    from bielik.tokenizer.train import TokenizerTrainConfig, train_tokenizer

    extra = tmp_path / "pl"
    train_tokenizer(TokenizerTrainConfig(output=str(extra), vocab_size=3000, max_chars=1_000_000, langs=["pl"], seed=1))
    s = merge_tokenizers(
        TokenizerMergeConfig(base=str(tiny_tokenizer), extra=str(extra), output=str(tmp_path / "m"), sample_docs=20)
    )
    merged, base = load_hf_tokenizer(tmp_path / "m"), load_hf_tokenizer(tiny_tokenizer)
    assert all(merged.get_vocab()[t] == i for t, i in base.get_vocab().items())
    assert s["added_tokens"] > 300 and s["added_tokens_used_by_extra"] > 100  # words carry their leading space (Ġ)
    text = "Rzeczpospolita Polska jest dobrem wspólnym wszystkich obywateli."
    assert merged.decode(merged(text, add_special_tokens=False).input_ids) == text
