"""``bielik generate``: sample continuations from an HF checkpoint (a quick look at a model)."""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import Field

from bielik.artifacts import staged_dir, write_json, write_stage_record
from bielik.config import StageConfig
from bielik.errors import BielikError


class GenerateConfig(StageConfig):
    model: str = Field("runs/pretrain/final", description="HF model directory (with tokenizer)")
    prompts: list[str] = Field(default_factory=lambda: ["Litwo! Ojczyzno moja!"])
    max_new_tokens: int = Field(48, ge=1)
    temperature: float = Field(0.8, ge=0.0, description="0: greedy")
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    repetition_penalty: float = Field(1.1, ge=1.0)
    seed: int = 0
    device: str = "auto"
    output: str | None = Field(None, description="directory for samples.json (optional)")
    overwrite: bool = True


def generate(cfg: GenerateConfig) -> list[dict[str, str]]:
    from transformers import AutoModelForCausalLM

    from bielik.tokenizer.formats import load_hf_tokenizer
    from bielik.train.distributed import pick_device

    path = Path(cfg.model)
    if not (path / "config.json").is_file():
        raise BielikError(f"model {path} is not an HF model directory (no config.json)")
    device = pick_device(cfg.device)
    tok = load_hf_tokenizer(path)  # not AutoTokenizer: see its docstring (Qwen2 model dirs)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device).eval()
    torch.manual_seed(cfg.seed)
    samples = []
    for prompt in cfg.prompts:
        enc = tok(prompt, return_tensors="pt").to(device)
        with torch.no_grad():
            out = model.generate(
                **enc, max_new_tokens=cfg.max_new_tokens, do_sample=cfg.temperature > 0,
                temperature=cfg.temperature if cfg.temperature > 0 else None, top_p=cfg.top_p if cfg.temperature > 0 else None,
                repetition_penalty=cfg.repetition_penalty, pad_token_id=tok.pad_token_id or tok.eos_token_id,
            )
        n_prompt = enc["input_ids"].shape[1]
        completion = tok.decode(out[0, n_prompt:], skip_special_tokens=True)
        samples.append({"prompt": prompt, "completion": completion, "prompt_tokens": n_prompt, "completion_tokens": out.shape[1] - n_prompt})
    if cfg.output:
        with staged_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
            write_json(tmp / "samples.json", samples)
            write_stage_record(tmp, "generate", cfg, inputs={"model": cfg.model}, metrics={"samples": len(samples)})
    return samples
