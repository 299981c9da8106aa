"""``bielik tokenizer train``: a byte-level BPE tokenizer trained with HF ``tokenizers``.

Byte-level BPE covers every string (no unknown tokens, no byte-fallback needed) and the saved
directory is a regular HF tokenizer (``AutoTokenizer.from_pretrained`` opens it) carrying BOS/EOS/
PAD/UNK, the ChatML control tokens used by Bielik's instruct models and a ChatML chat template.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Iterator

from pydantic import Field

from bielik.artifacts import staged_dir, write_stage_record
from bielik.config import StageConfig
from bielik.data.corpus import expand_inputs, read_corpus
from bielik.log import get_logger

log = get_logger(__name__)

CHATML_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class TokenizerTrainConfig(StageConfig):
    inputs: list[str] = Field(default_factory=lambda: ["shipped"], description="JSONL files/folders; 'shipped' = bundled corpus")
    output: str = "runs/tokenizer"
    vocab_size: int = Field(8192, ge=300, le=1_000_000)
    min_frequency: int = Field(2, ge=1)
    max_chars: int | None = Field(6_000_000, description="train on at most this many characters (sampled documents)")
    langs: list[str] | None = Field(None, description="keep only documents with these 'lang' values")
    seed: int = 0
    bos_token: str = "<s>"
    eos_token: str = "</s>"
    unk_token: str = "<unk>"
    pad_token: str = "<pad>"
    extra_special_tokens: list[str] = Field(default_factory=lambda: ["<|im_start|>", "<|im_end|>"])
    model_max_length: int = 4096
    overwrite: bool = False


def _sample_texts(cfg: TokenizerTrainConfig) -> tuple[list[str], int]:
    docs = [d for d in read_corpus(cfg.inputs) if cfg.langs is None or d.lang in cfg.langs]
    random.Random(cfg.seed).shuffle(docs)
    texts, total = [], 0
    for d in docs:
        if cfg.max_chars is not None and total >= cfg.max_chars:
            break
        texts.append(d.text)
        total += len(d.text)
    return texts, total


def train_tokenizer(cfg: TokenizerTrainConfig) -> Path:
    """Train, save to ``cfg.output`` (atomically) and return the directory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    expand_inputs(cfg.inputs)  # fail on a missing input before any work
    texts, n_chars = _sample_texts(cfg)
    if not texts:
        raise_empty(cfg)
    specials = [cfg.unk_token, cfg.bos_token, cfg.eos_token, cfg.pad_token, *cfg.extra_special_tokens]
    tok = Tokenizer(models.BPE(unk_token=cfg.unk_token))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,  # its progress bar panics on a closed stdout pipe
    )
    log.info("training BPE (vocab %d) on %d documents, %.1fM characters", cfg.vocab_size, len(texts), n_chars / 1e6)

    def batches() -> Iterator[list[str]]:
        for i in range(0, len(texts), 64):
            yield texts[i : i + 64]

    tok.train_from_iterator(batches(), trainer=trainer, length=len(texts))
    bos_id = tok.token_to_id(cfg.bos_token)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cfg.bos_token} $A", pair=f"{cfg.bos_token} $A {cfg.bos_token} $B", special_tokens=[(cfg.bos_token, bos_id)]
    )
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=cfg.bos_token,
        eos_token=cfg.eos_token,
        unk_token=cfg.unk_token,
        pad_token=cfg.pad_token,
        additional_special_tokens=list(cfg.extra_special_tokens),
        model_max_length=cfg.model_max_length,
        clean_up_tokenization_spaces=False,
    )
    hf.chat_template = CHATML_TEMPLATE
    with staged_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
        hf.save_pretrained(tmp)
        write_stage_record(
            tmp,
            "tokenizer.train",
            cfg,
            metrics={"vocab_size": tok.get_vocab_size(), "documents": len(texts), "characters": n_chars},
        )
    log.info("saved tokenizer (%d tokens) to %s", tok.get_vocab_size(), cfg.output)
    return Path(cfg.output)


def raise_empty(cfg: TokenizerTrainConfig) -> None:
    from bielik.errors import DataError

    raise DataError(f"no documents to train on in {cfg.inputs} (langs={cfg.langs})")
