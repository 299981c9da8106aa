"""Bielik's chat format (ChatML) and the BOS convention every bielik tokenizer follows.

ChatML renders each turn as ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` (roles ``system``,
``user``, ``assistant``; the system turn is optional). Decisions:

* **What is trained.** The template wraps each assistant turn's *content and its closing*
  ``<|im_end|>`` in Jinja ``{% generation %}...{% endgeneration %}``, so
  ``tokenizer.apply_chat_template(..., return_assistant_tokens_mask=True)`` (the transformers
  convention) marks exactly those tokens. ``<|im_end|>`` is trained because it is how the model
  learns to stop; the ``<|im_start|>assistant\\n`` header, the ``\\n`` after ``<|im_end|>``, system
  and user turns and BOS are not (RECIPE §5.1: loss on assistant content only, control tokens and
  instructions masked). ``add_generation_prompt=True`` appends the bare header, which is exactly
  the masked prefix of a trained assistant turn, so generation starts where training did. The
  markers are a transformers extension; llama.cpp's template engine and llama-cpp-python (0.3.36)
  ignore them, so the template survives GGUF export.
* **BOS.** Plain-text encoding adds one BOS (``tok(text).input_ids[0] == bos_token_id``): the
  ``TemplateProcessing`` post-processor stored in ``tokenizer.json`` adds it, and that file is what
  persists it (transformers 5 neither writes ``add_bos_token`` to ``tokenizer_config.json`` nor
  reads it back when a ``tokenizer.json`` exists). The chat template writes ``{{ bos_token }}``
  itself, so a rendered chat is tokenized *without* adding special tokens again (which
  ``apply_chat_template`` does): exactly one BOS per dialogue.

  The BOS trap (measured with transformers 5.24): after a reload, ``add_bos_token`` reads
  ``False`` while the stored post-processor still adds BOS. A plain reload (``AutoTokenizer`` or
  :func:`bielik.tokenizer.formats.load_hf_tokenizer`) keeps the BOS, but the first time anything
  touches the flags (``tok.add_eos_token = ...``, ``from_pretrained(..., add_eos_token=True)``)
  transformers rebuilds the post-processor from them and the BOS silently disappears.
  ``load_hf_tokenizer`` therefore sets the flag to what the post-processor does
  (:func:`sync_bos_flag`); with bare ``AutoTokenizer`` do not pass ``add_eos_token``/``add_bos_token``.
* **Older tokenizers.** :func:`ensure_chat_template` installs this template on a tokenizer that
  has none, upgrades the earlier bielik template (identical rendering, no generation markers) and
  refuses, with a clear error, a foreign template without ``{% generation %}`` when masks are
  needed. It does not fall back to prefix-diff masking (render turns 1..k, diff the strings):
  that silently mis-masks templates whose rendering of a prefix is not a prefix of the whole
  (templates that drop earlier reasoning, move the system prompt or stamp a date).
"""

from __future__ import annotations

import re

from bielik.errors import BielikError
from bielik.log import get_logger

log = get_logger(__name__)

IM_START, IM_END = "<|im_start|>", "<|im_end|>"

CHATML_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# templates earlier bielik versions saved; they render exactly like CHATML_TEMPLATE
LEGACY_TEMPLATES = (
    (
        "{{ bos_token }}{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
)

_GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")


def has_generation_markers(template: str | None) -> bool:
    """Whether a chat template marks assistant text with ``{% generation %}`` (needed for masks)."""
    return bool(template) and bool(_GENERATION.search(template))


def ensure_chat_template(tokenizer, require_generation: bool = True):
    """Make ``tokenizer`` render chats with assistant masks; return it (changed in place).

    * no template: install :data:`CHATML_TEMPLATE` (the tokenizer must hold ``<|im_start|>`` and
      ``<|im_end|>`` as single tokens);
    * an earlier bielik template: replace it by :data:`CHATML_TEMPLATE` (same text, plus markers);
    * a template with ``{% generation %}``: keep it;
    * any other template: keep it when ``require_generation`` is false, else raise
      :class:`BielikError` (see the module docstring for why there is no prefix-diff fallback).
    """
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # several named templates: the default one is what chats use
        template = template.get("default")
    name = getattr(tokenizer, "name_or_path", "") or "the tokenizer"
    if not template or template in LEGACY_TEMPLATES:
        missing = [t for t in (IM_START, IM_END) if _single_token_id(tokenizer, t) is None]
        if missing:
            raise BielikError(
                f"{name} has no chat template and lacks the ChatML control token(s) {missing} that bielik's "
                "template needs; add them as special tokens (and resize the model's embeddings) or give the "
                "tokenizer a chat template with {% generation %} markers"
            )
        if template:
            log.info("%s: upgrading bielik's earlier ChatML template to the one with generation markers", name)
        tokenizer.chat_template = CHATML_TEMPLATE
        return tokenizer
    if require_generation and not has_generation_markers(template):
        raise BielikError(
            f"the chat template of {name} has no {{% generation %}}...{{% endgeneration %}} block, so the assistant "
            "tokens to train on cannot be told apart; wrap assistant content (and its end-of-turn token) in "
            "{% generation %} markers, or set tokenizer.chat_template = bielik.tokenizer.chat.CHATML_TEMPLATE"
        )
    return tokenizer


def _single_token_id(tokenizer, token: str) -> int | None:
    ids = tokenizer(token, add_special_tokens=False).input_ids
    return ids[0] if len(ids) == 1 else None


def sync_bos_flag(tokenizer):
    """Set ``add_bos_token`` to ``True`` on a tokenizer whose post-processor adds BOS but whose flag
    says ``False`` (bielik tokenizers saved before the flag was written; see the module docstring).

    Only the flag changes: the encodings of one and of two texts are compared before and after, and
    the old post-processor is put back if transformers' rebuilt one would encode differently.
    Other tokenizers are returned untouched.
    """
    bos = getattr(tokenizer, "bos_token_id", None)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if bos is None or backend is None or getattr(tokenizer, "add_bos_token", None) is not False:
        return tokenizer
    single, pair = tokenizer("a").input_ids, tokenizer("a", "b").input_ids
    if not single or single[0] != bos:
        return tokenizer
    before = backend.post_processor
    tokenizer.add_bos_token = True
    if tokenizer("a").input_ids != single or tokenizer("a", "b").input_ids != pair:
        tokenizer.add_bos_token = False  # the setter rebuilds a post-processor: put the stored one back
        backend.post_processor = before
    return tokenizer


def end_of_turn_as_eos(tokenizer):
    """Make ``<|im_end|>`` the tokenizer's EOS, as instruct releases do (Bielik-Instruct, Qwen2.5-Instruct).

    After SFT the model ends every answer with ``<|im_end|>``; with it as EOS, generation stops after
    one answer everywhere EOS is what stops it (HF ``generate``, llama.cpp / GGUF, ``bielik generate``'s
    ``chat=auto``, which wraps prompts in the template exactly for such tokenizers). Encoding is
    unchanged (the BOS post-processor is not touched). Returns the tokenizer.
    """
    if IM_END not in tokenizer.get_vocab():
        raise BielikError(f"the tokenizer has no {IM_END} token to end turns with")
    tokenizer.eos_token = IM_END
    return tokenizer
