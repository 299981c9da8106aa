"""``bielik train sft``: supervised fine-tuning with Bielik's methods on the one engine (RECIPE §5).

* **Masked tokens** (``assistant_only``): the loss covers the assistant turns (content + closing
  ``<|im_end|>``) only; system/user text and control tokens are masked (the chat template's
  ``{% generation %}`` markers, :mod:`bielik.tokenizer.chat`). Off: every token but BOS is a target.
* **Packing** (``pack``): several dialogues per row, position ids restarting at every dialogue
  (block-diagonal attention, no label crossing a boundary). Off: one dialogue per row, padded.
* **Weighted Instruction Cross-Entropy** (``weighting``): l_i = −w_i·Σ_t log p(y_t), w from the
  record's quality (``quality_weights``, default high 1.0 / medium 0.7 / low 0.5) or its explicit
  ``weight``; normalised by the global batch's loss tokens (``normalize=tokens``) or by its
  weighted tokens (``normalize=weights``) — see :mod:`bielik.train.objectives.causal_lm`.
* **Adaptive learning rate** (``train.optim.alr``): lr_t = schedule(t)·√(T_t/BS), T_t = loss tokens of
  step t's global batch; both the scheduled and the applied LR are logged.

Inputs: an HF model directory (its tokenizer, or ``tokenizer=``) and chat data (``data``: JSONL,
Parquet, saved HF datasets, or ``shipped`` — the SFT mix in ``bielik/resources/post``). Outputs in
``output``: ``metrics.jsonl``, ``checkpoints/``, ``final/`` (HF model + tokenizer with the chat
template), ``data.json`` (what was trained on: dialogues, tokens, truncations, weight mix),
``config.yaml``, ``metrics.json``, ``lineage.json``. Resumes exactly like pretraining.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from bielik.artifacts import write_json, write_stage_record
from bielik.config import StageConfig
from bielik.errors import BielikError
from bielik.log import get_logger
from bielik.model.loading import load_hf_model
from bielik.train.config import engine_field
from bielik.train.distributed import init_distributed
from bielik.train.engine import Engine
from bielik.train.objectives import CausalLM

log = get_logger(__name__)


SFT_ENGINE = engine_field(
    "engine settings (SFT defaults: lr 3e-4 -> 3e-5, wd 0.05, adaptive LR on with BS = 2,048 tokens)",
    steps=200,
    micro_batch_size=4,
    optim={
        "lr": 3e-4,
        "min_lr": 3e-5,
        "warmup_steps": 10,
        "weight_decay": 0.05,
        "alr": {"enabled": True, "baseline_tokens": 2048},
    },
    eval={"every": 50, "batches": 8},
)


class SFTConfig(StageConfig):
    model: str = Field("runs/pretrain/final", description="HF model directory to fine-tune")
    tokenizer: str | None = Field(None, description="tokenizer directory (default: the model's)")
    data: list[str] = Field(
        default_factory=lambda: ["shipped"],
        description="chat JSONL/Parquet/HF-dataset paths; 'shipped' = shipped SFT mix",
    )
    output: str = "runs/sft"
    seq_len: int = Field(1024, ge=16, description="tokens per packed row")
    max_dialogues: int | None = Field(None, ge=1, description="use at most this many dialogues (seeded sample)")
    val_fraction: float = Field(
        0.02, ge=0.0, lt=1.0, description="dialogues held out (by hashed id) for the validation loss"
    )
    too_long: Literal["truncate", "drop"] = Field(
        "truncate", description="dialogues longer than seq_len: keep the start, or drop"
    )
    assistant_only: bool = Field(True, description="loss on assistant tokens only (off: on every token)")
    pack: bool = Field(True, description="several dialogues per row (off: one per row, padded)")
    weighting: bool = Field(True, description="Weighted Instruction CE (off: every dialogue weight 1)")
    normalize: Literal["tokens", "weights"] = Field(
        "tokens", description="WICE denominator: loss tokens, or weighted loss tokens"
    )
    quality_weights: dict[str, float] = Field(default_factory=lambda: {"high": 1.0, "medium": 0.7, "low": 0.5})
    seed: int = 0
    train: SFT_ENGINE


def save_instruct_tokenizer(tokenizer, model_dir: Path) -> None:
    """Save the tokenizer the model was trained with, ``<|im_end|>`` as EOS, into ``model_dir``; the model's
    ``config.json`` / ``generation_config.json`` get the same EOS id (so HF ``generate`` and GGUF stop there)."""
    import json

    from bielik.artifacts import atomic_write_text
    from bielik.tokenizer.chat import end_of_turn_as_eos

    end_of_turn_as_eos(tokenizer).save_pretrained(model_dir)
    for name in ("config.json", "generation_config.json"):
        path = Path(model_dir) / name
        if path.is_file():
            conf = json.loads(path.read_text(encoding="utf-8"))
            conf["eos_token_id"] = tokenizer.eos_token_id
            atomic_write_text(path, json.dumps(conf, indent=2) + "\n")


def sft(cfg: SFTConfig) -> dict:
    """Fine-tune; return the summary that is also written to ``metrics.json``."""
    from bielik.data.chat_rows import build_sft_data
    from bielik.tokenizer.chat import ensure_chat_template
    from bielik.tokenizer.formats import load_hf_tokenizer
    from bielik.train.batches import ChatRowBatches, eval_chat_batches

    tok_dir = Path(cfg.tokenizer or cfg.model)
    tokenizer = ensure_chat_template(load_hf_tokenizer(tok_dir))
    data = build_sft_data(  # validates every record before anything is written
        tokenizer,
        cfg.data,
        cfg.seq_len,
        cfg.val_fraction,
        cfg.seed,
        cfg.quality_weights,
        overflow=cfg.too_long,
        assistant_only=cfg.assistant_only,
        pack=cfg.pack,
        weighting=cfg.weighting,
        max_dialogues=cfg.max_dialogues,
    )
    model = load_hf_model(cfg.model)
    if model.config.vocab_size < len(tokenizer):
        raise BielikError(
            f"tokenizer {tok_dir} has {len(tokenizer)} tokens but model {cfg.model} has vocab_size "
            f"{model.config.vocab_size}"
        )
    e = cfg.train
    d = init_distributed(e.device, e.distributed)
    source = ChatRowBatches(data.train, e.micro_batch_size, e.grad_accum, d.rank, d.world_size, e.seed)
    val = data.val
    engine = Engine(
        e,
        model,
        CausalLM(chunk=e.lm_head_chunk, weighted=cfg.weighting, normalize=cfg.normalize),
        source,
        cfg.output,
        d,
        seq_len=cfg.seq_len,
        eval_batches=(lambda: eval_chat_batches(val, e.micro_batch_size, e.eval.batches, d.rank, d.world_size))
        if val is not None and len(val)
        else None,
        run_config=cfg,
    )
    if d.is_main:
        log.info(
            "SFT of %s on %s: %d dialogues in %d rows of %d tokens; %d steps; WICE %s, ALR %s, packing %s, "
            "assistant-only %s",
            cfg.model,
            cfg.data,
            data.stats["train_dialogues"],
            len(data.train),
            cfg.seq_len,
            e.steps,
            "on" if cfg.weighting else "off",
            "on" if e.optim.alr.enabled else "off",
            "on" if cfg.pack else "off",
            "on" if cfg.assistant_only else "off",
        )
        Path(cfg.output).mkdir(parents=True, exist_ok=True)
        write_json(Path(cfg.output) / "data.json", data.stats)
    summary = engine.fit()
    summary["data"] = data.stats
    if e.checkpoint.save_final:
        final = engine.export(Path(cfg.output) / "final", extra_dirs=[tok_dir])
        if d.is_main:
            save_instruct_tokenizer(tokenizer, final)
    if d.is_main:
        write_stage_record(
            cfg.output, "train.sft", cfg, inputs={"model": cfg.model, "data": ",".join(cfg.data)}, metrics=summary
        )
    return summary
