"""``bielik generate``: sample continuations (or chat answers) from an HF checkpoint — a quick look at a model.

Decoding is :func:`bielik.model.generation.sample`, the loop evaluation, ``bench speed`` and GRPO use:
all prompts form one left-padded batch; ``seed`` seeds a ``torch.Generator``, so a rerun with the same
config gives the same samples.

``chat`` decides whether a prompt is wrapped as a user turn of the tokenizer's chat template:

* ``true``: always (an error when the tokenizer has no template); ``false``: never (plain continuation);
* ``"auto"`` (default): only when the tokenizer has a chat template **whose assistant turn ends with the
  tokenizer's EOS token** and the prompt is not already rendered (does not contain the special token
  that opens the template's first turn, e.g. ``<|im_start|>``). Instruct releases set EOS to the end-of-turn token so
  that generation stops after one answer (Bielik-Instruct, Qwen2.5-Instruct: ``<|im_end|>``); bielik's own
  tokenizers carry a ChatML template from the start but keep ``</s>`` as EOS, so a base checkpoint keeps
  getting plain continuations.

A chat prompt is rendered with ``apply_chat_template([{"role": "user", "content": prompt}],
add_generation_prompt=True, tokenize=False)`` and tokenised without special tokens (the template emits
BOS itself); a plain prompt is tokenised with the tokenizer's special tokens (BOS). Every row stops at
EOS or at an end-of-turn token the tokenizer knows (``<|im_end|>``, ``<|eot_id|>``, ``<end_of_turn>``:
also right for a prompt the user rendered in the chat format).
``repetition_penalty`` is HF's (CTRL's) penalty over prompt + completion tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from pydantic import Field

from bielik.artifacts import staged_dir, write_json, write_stage_record
from bielik.config import StageConfig
from bielik.errors import BielikError, ConfigError

_PROBE = "\x00bielik-probe\x00"


class GenerateConfig(StageConfig):
    model: str = Field("runs/pretrain/final", description="HF model directory (with tokenizer)")
    prompts: list[str] = Field(default_factory=lambda: ["Litwo! Ojczyzno moja!"], min_length=1)
    max_new_tokens: int = Field(48, ge=1)
    temperature: float = Field(0.8, ge=0.0, description="0: greedy")
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=1, description="keep the k most probable tokens (None: off)")
    repetition_penalty: float = Field(1.1, ge=1.0)
    stop: list[str] = Field(default_factory=list, description="stop strings: the completion is cut at the first one")
    chat: Literal["auto"] | bool = Field(
        "auto", description="wrap prompts in the chat template: true, false or auto (see docs)"
    )
    seed: int = 0
    device: str = "auto"
    output: str | None = Field(None, description="directory for samples.json (optional)")
    overwrite: bool = True


def _turn_marker(tok) -> str | None:
    """The special token that opens the template's first turn (``<|im_start|>`` for ChatML), or None."""
    if not getattr(tok, "chat_template", None):
        return None
    head = tok.apply_chat_template([{"role": "user", "content": _PROBE}], tokenize=False).split(_PROBE)[0]
    if tok.bos_token and head.startswith(tok.bos_token):
        head = head[len(tok.bos_token) :]
    ids = tok.encode(head.lstrip(), add_special_tokens=False)
    if ids and (ids[0] in tok.all_special_ids or ids[0] in tok.added_tokens_decoder):
        return tok.convert_ids_to_tokens(ids[0])
    return None


def is_instruct_template(tok) -> bool:
    """True when the tokenizer's chat template ends an assistant turn with its EOS token (see the module docstring)."""
    if not getattr(tok, "chat_template", None) or not tok.eos_token:
        return False
    try:
        rendered = tok.apply_chat_template(
            [{"role": "user", "content": "x"}, {"role": "assistant", "content": _PROBE}], tokenize=False
        )
    except Exception:  # templates may reject a probe conversation (jinja raise_exception): no chat then
        return False
    return tok.eos_token in rendered.split(_PROBE)[-1]


def encode_prompts(tok, prompts: list[str], chat: Literal["auto"] | bool) -> tuple[list[list[int]], list[bool]]:
    """Token ids of every prompt and whether each was wrapped in the chat template."""
    if chat is True and not getattr(tok, "chat_template", None):
        raise ConfigError("generate: chat=true but the model's tokenizer has no chat template")
    marker = _turn_marker(tok) if chat == "auto" else None
    auto_ok = chat == "auto" and is_instruct_template(tok)
    ids, used = [], []
    for p in prompts:
        wrap = chat is True or (auto_ok and not (marker and marker in p))
        if wrap:
            text = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
            ids.append(tok.encode(text, add_special_tokens=False))
        else:
            ids.append(tok.encode(p))
        if not ids[-1]:
            raise BielikError(f"generate: prompt {p!r} has no tokens")
        used.append(wrap)
    return ids, used


def generate(cfg: GenerateConfig) -> list[dict]:
    from bielik.model.generation import SamplingParams, end_of_turn_ids, sample
    from bielik.model.loading import load_hf_model
    from bielik.tokenizer.formats import load_hf_tokenizer
    from bielik.train.distributed import pick_device

    path = Path(cfg.model)
    model = load_hf_model(path)  # BielikError when not an HF model directory
    device = pick_device(cfg.device)
    tok = load_hf_tokenizer(path)  # not AutoTokenizer: see its docstring (Qwen2 model dirs)
    model = model.to(device).eval()
    ids, chat = encode_prompts(tok, cfg.prompts, cfg.chat)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    params = SamplingParams(
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        top_k=cfg.top_k,
        repetition_penalty=cfg.repetition_penalty,
        stop=tuple(cfg.stop),
        stop_token_ids=frozenset(end_of_turn_ids(tok)),
    )
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    outs = sample(model, ids, params, tok, pad_id=pad_id, generator=generator)
    samples = [
        {
            "prompt": p,
            "chat": chat[i],
            "completion": outs[i].text,
            "finish_reason": outs[i].finish_reason,
            "prompt_tokens": len(ids[i]),
            "completion_tokens": len(outs[i].token_ids),
        }
        for i, p in enumerate(cfg.prompts)
    ]
    if cfg.output:
        with staged_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
            write_json(tmp / "samples.json", samples)
            write_stage_record(tmp, "generate", cfg, inputs={"model": cfg.model}, metrics={"samples": len(samples)})
    return samples
