import pytest
import torch

from bielik.generate import GenerateConfig, generate


def test_generate_tokenizes_like_the_saved_tokenizer_for_qwen2(tiny_tokenizer, tmp_path):
    """A Qwen2 model directory must not get transformers' Qwen2Tokenizer swapped in for bielik's own."""
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from bielik.model.factory import ModelInitConfig, init_model

    model_dir = init_model(
        ModelInitConfig(
            preset="tiny-qwen2",
            tokenizer=str(tiny_tokenizer),
            output=str(tmp_path / "qwen"),
            overrides={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2},
        )
    )
    prompt = "W 2024 r. kosztowało to 1234,56 zł (art. 15 ust. 2)."  # digits: Qwen2's pre-tokenizer splits them
    [sample] = generate(
        GenerateConfig(
            model=str(model_dir),
            prompts=[prompt],
            temperature=0.0,
            max_new_tokens=6,
            repetition_penalty=1.0,
            output=str(tmp_path / "samples"),
        )
    )
    tok = PreTrainedTokenizerFast.from_pretrained(str(tiny_tokenizer))
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(
            **ids, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id or tok.eos_token_id
        )
    assert sample["prompt_tokens"] == ids["input_ids"].shape[1]
    assert sample["completion"] == tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert (tmp_path / "samples" / "samples.json").is_file()


def test_chat_auto_wraps_only_instruct_templates_and_unrendered_prompts(tiny_tokenizer):
    from transformers import PreTrainedTokenizerFast

    from bielik.errors import ConfigError
    from bielik.generate import encode_prompts

    tok = PreTrainedTokenizerFast.from_pretrained(str(tiny_tokenizer))  # bielik's: ChatML template, EOS </s>
    prompts = ["Jaka jest stolica Polski?", "<|im_start|>user\nCześć<|im_end|>\n<|im_start|>assistant\n"]
    ids, used = encode_prompts(tok, prompts, "auto")
    assert used == [False, False] and ids[0] == tok.encode(prompts[0])  # a base checkpoint: plain continuation
    ids, used = encode_prompts(tok, prompts[:1], True)
    rendered = tok.apply_chat_template(
        [{"role": "user", "content": prompts[0]}], add_generation_prompt=True, tokenize=False
    )
    assert used == [True] and ids[0] == tok.encode(rendered, add_special_tokens=False)
    assert ids[0][0] == tok.bos_token_id and ids[0].count(tok.bos_token_id) == 1  # the template's BOS, not a second one
    tok.eos_token = "<|im_end|>"  # an instruct release: its assistant turns end with EOS
    _, used = encode_prompts(tok, prompts, "auto")
    assert used == [True, False]  # the second prompt is already rendered
    tok.chat_template = None
    assert encode_prompts(tok, prompts[:1], "auto")[1] == [False]
    with pytest.raises(ConfigError, match="chat template"):
        encode_prompts(tok, prompts[:1], True)


def test_generate_chat_records_the_rendered_prompt_and_stops(tiny_model, tmp_path):
    samples = generate(
        GenerateConfig(
            model=str(tiny_model),
            prompts=["Cześć!", "Litwo!"],
            chat=True,
            temperature=0.7,
            max_new_tokens=8,
            stop=["a"],
            output=str(tmp_path / "out"),
        )
    )
    again = generate(
        GenerateConfig(
            model=str(tiny_model),
            prompts=["Cześć!", "Litwo!"],
            chat=True,
            temperature=0.7,
            max_new_tokens=8,
            stop=["a"],
        )
    )
    assert samples == again  # seeded
    for s in samples:
        assert s["chat"] and s["prompt_tokens"] > 8 and "a" not in s["completion"]
        assert s["finish_reason"] in {"stop", "eos", "length"} and 1 <= s["completion_tokens"] <= 8
