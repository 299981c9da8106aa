import json

from bielik.data.corpus import shipped_corpus_dir
from bielik.tokenizer.stats import DEFINITIONS, TokenizerStatsConfig, tokenizer_stats
from tests.tokenizer.real import real_tokenizer


def test_counts_follow_the_definitions(tmp_path, tiny_tokenizer):
    from transformers import AutoTokenizer

    txt = tmp_path / "t.txt"
    txt.write_text("Ala ma kota,  a kot ma Alę.\nKoniec.", encoding="utf-8")
    res = tokenizer_stats(
        TokenizerStatsConfig(
            tokenizers={"tiny": str(tiny_tokenizer)}, texts=[str(txt), "preamble-pl"], output=str(tmp_path / "s")
        )
    )
    hf = AutoTokenizer.from_pretrained(tiny_tokenizer)
    row = next(r for r in res["rows"] if r["text"] == "t")
    n = len(hf("Ala ma kota,  a kot ma Alę.\nKoniec.", add_special_tokens=False).input_ids)
    assert (row["characters"], row["words"], row["tokens"]) == (35, 8, n)
    assert row["cpt"] == 35 / n and row["tpw"] == n / 8
    pre = (shipped_corpus_dir() / "constitution_preamble_pl.txt").read_text(encoding="utf-8")
    row = next(r for r in res["rows"] if r["text"] == "preamble-pl")
    assert row["characters"] == len(pre) and row["words"] == len(pre.split())
    out = tmp_path / "s"
    assert (out / "chart.png").stat().st_size > 5000
    md = (out / "stats.md").read_text(encoding="utf-8")
    assert "| tiny | 2,048 |" in md and DEFINITIONS in md
    assert json.loads((out / "stats.json").read_text())[0]["tokenizer"] == "tiny"


def test_real_tokenizers_on_both_preambles(tmp_path):
    import sentencepiece as spm

    mistral = real_tokenizer("mistral-v0.1")
    res = tokenizer_stats(TokenizerStatsConfig(tokenizers=["mistral-v0.1"], output=str(tmp_path / "s"), chart=False))
    for row in res["rows"]:
        text = (shipped_corpus_dir() / f"constitution_{row['text'].replace('-', '_')}.txt").read_text(encoding="utf-8")
        assert row["tokens"] == len(spm.SentencePieceProcessor(model_file=mistral.source).encode(text))
    pl, en = res["rows"]
    assert pl["cpt"] < en["cpt"] and pl["tpw"] > 2 * en["tpw"]  # an English-centric vocabulary fragments Polish


def test_bad_text_fails_before_work(tmp_path):
    import pytest

    from bielik.errors import DataError

    with pytest.raises(DataError, match="nope.txt does not exist"):
        tokenizer_stats(TokenizerStatsConfig(texts=[str(tmp_path / "nope.txt")], output=str(tmp_path / "s")))
    assert not (tmp_path / "s").exists()
