"""The chat template (assistant masks) and the BOS convention of bielik tokenizers, after save + reload."""

import pytest

from bielik.errors import BielikError
from bielik.tokenizer.chat import CHATML_TEMPLATE, LEGACY_TEMPLATES, ensure_chat_template, has_generation_markers
from bielik.tokenizer.formats import load_hf_tokenizer

DIALOGUE = [
    {"role": "system", "content": "Jesteś pomocnym asystentem."},
    {"role": "user", "content": "Ile to 2 + 2?"},
    {"role": "assistant", "content": "To 4."},
    {"role": "user", "content": "A 3 + 3?"},
    {"role": "assistant", "content": "Tak, to 6!\nWszystko jasne."},
]


@pytest.fixture(scope="module")
def sp_small(tmp_path_factory):
    from bielik.tokenizer.train import TokenizerTrainConfig, train_tokenizer

    out = tmp_path_factory.mktemp("sp_small") / "tok"
    train_tokenizer(
        TokenizerTrainConfig(output=str(out), style="sentencepiece", vocab_size=1200, max_chars=400_000, langs=["pl"])
    )
    return out


def _loaders(path):
    from transformers import AutoTokenizer

    return {"load_hf_tokenizer": load_hf_tokenizer(path), "AutoTokenizer": AutoTokenizer.from_pretrained(path)}


@pytest.mark.parametrize("style", ["bytelevel", "sentencepiece"])
def test_plain_encoding_has_one_bos_after_reload(style, tiny_tokenizer, sp_small):
    path = tiny_tokenizer if style == "bytelevel" else sp_small
    for name, tok in _loaders(path).items():
        ids = tok("Zażółć gęślą jaźń.").input_ids
        assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1, name
        assert tok.eos_token_id not in ids, name
        chat = tok.apply_chat_template(DIALOGUE, tokenize=True, return_dict=True)["input_ids"]
        assert chat[0] == tok.bos_token_id and chat.count(tok.bos_token_id) == 1, name


def test_bos_survives_a_flag_change_with_load_hf_tokenizer(tiny_tokenizer):
    """The trap: transformers rebuilds the post-processor from add_bos_token (False after any reload)."""
    from transformers import PreTrainedTokenizerFast

    bare = PreTrainedTokenizerFast.from_pretrained(tiny_tokenizer)
    assert bare("Ala").input_ids[0] == bare.bos_token_id and bare.add_bos_token is False
    bare.add_eos_token = True
    assert bare("Ala").input_ids[0] != bare.bos_token_id  # the BOS is gone: the root cause, still present
    tok = load_hf_tokenizer(tiny_tokenizer)
    assert tok.add_bos_token is True
    tok.add_eos_token = True
    ids = tok("Ala").input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id and ids.count(tok.bos_token_id) == 1


@pytest.mark.parametrize("style", ["bytelevel", "sentencepiece"])
def test_assistant_mask_is_exactly_content_and_im_end(style, tiny_tokenizer, sp_small):
    tok = load_hf_tokenizer(tiny_tokenizer if style == "bytelevel" else sp_small)
    assert has_generation_markers(tok.chat_template)
    for first_word in ("To", "Tak", "Nie", "Oto", "The", "1.", "„Ala"):
        msgs = [{"role": "user", "content": "Pytanie?"}, {"role": "assistant", "content": f"{first_word} odpowiedź."}]
        enc = tok.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        ids, mask = enc["input_ids"], enc["assistant_masks"]
        trained = [i for i, m in zip(ids, mask) if m]
        # the trained tokens spell exactly the reply and its end marker: no token straddles the header
        assert tok.decode(trained) == f"{first_word} odpowiedź.<|im_end|>", (first_word, tok.convert_ids_to_tokens(ids))
        header = tok("<|im_start|>assistant\n", add_special_tokens=False).input_ids
        start = mask.index(1)
        assert ids[start - len(header) : start] == header


def test_generation_prompt_is_the_masked_prefix_of_a_trained_turn(tiny_tokenizer):
    tok = load_hf_tokenizer(tiny_tokenizer)
    prompt = tok.apply_chat_template(DIALOGUE[:2], tokenize=True, return_dict=True, add_generation_prompt=True)[
        "input_ids"
    ]
    full = tok.apply_chat_template(DIALOGUE[:3], tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    assert full["input_ids"][: len(prompt)] == prompt
    assert not any(full["assistant_masks"][: len(prompt)]) and full["assistant_masks"][len(prompt)] == 1
    assert tok.apply_chat_template(DIALOGUE[:2], tokenize=False, add_generation_prompt=True).endswith(
        "<|im_start|>assistant\n"
    )


def test_sentencepiece_style_never_merges_across_a_newline(sp_small):
    tok = load_hf_tokenizer(sp_small)
    assert [t for t in tok.get_vocab() if "\n" in t] == ["\n"]
    pieces = tok.convert_ids_to_tokens(tok("Ala ma kota.\nTak.", add_special_tokens=False).input_ids)
    assert (
        "\n" in pieces
        and tok.decode(tok("Ala ma kota.\nTak.", add_special_tokens=False).input_ids) == "Ala ma kota.\nTak."
    )


def test_ensure_chat_template(tiny_tokenizer):
    tok = load_hf_tokenizer(tiny_tokenizer)
    legacy = LEGACY_TEMPLATES[0]
    tok.chat_template = legacy
    before = tok.apply_chat_template(DIALOGUE, tokenize=False)
    assert ensure_chat_template(tok) is tok and tok.chat_template == CHATML_TEMPLATE
    assert tok.apply_chat_template(DIALOGUE, tokenize=False) == before  # the upgrade renders identically

    tok.chat_template = None
    assert ensure_chat_template(tok).chat_template == CHATML_TEMPLATE

    foreign = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    tok.chat_template = foreign
    with pytest.raises(BielikError, match=r"has no \{% generation %\}"):
        ensure_chat_template(tok)
    assert ensure_chat_template(tok, require_generation=False).chat_template == foreign
    with_markers = "{% for m in messages %}{% generation %}{{ m['content'] }}{% endgeneration %}{% endfor %}"
    tok.chat_template = with_markers
    assert ensure_chat_template(tok).chat_template == with_markers


def test_ensure_chat_template_needs_chatml_tokens():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"<unk>": 0, "ala": 1, "ma": 2}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    with pytest.raises(BielikError, match=r"lacks the ChatML control token\(s\) \['<\|im_start\|>', '<\|im_end\|>'\]"):
        ensure_chat_template(tok)
