import torch

from bielik.generate import GenerateConfig, generate


def test_generate_tokenizes_like_the_saved_tokenizer_for_qwen2(tiny_tokenizer, tmp_path):
    """A Qwen2 model directory must not get transformers' Qwen2Tokenizer swapped in for bielik's own."""
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from bielik.model.factory import ModelInitConfig, init_model

    model_dir = init_model(ModelInitConfig(preset="tiny-qwen2", tokenizer=str(tiny_tokenizer), output=str(tmp_path / "qwen"),
                                           overrides={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}))
    prompt = "W 2024 r. kosztowało to 1234,56 zł (art. 15 ust. 2)."  # digits: Qwen2's pre-tokenizer splits them
    [sample] = generate(GenerateConfig(model=str(model_dir), prompts=[prompt], temperature=0.0, max_new_tokens=6,
                                       repetition_penalty=1.0, output=str(tmp_path / "samples")))
    tok = PreTrainedTokenizerFast.from_pretrained(str(tiny_tokenizer))
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id or tok.eos_token_id)
    assert sample["prompt_tokens"] == ids["input_ids"].shape[1]
    assert sample["completion"] == tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert (tmp_path / "samples" / "samples.json").is_file()
