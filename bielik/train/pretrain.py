"""``bielik train pretrain``: (continued) pretraining of an HF causal LM on packed token shards.

The stage function :func:`pretrain` is what the CLI, the Python API and recipes call. Inputs: an HF
model directory (from ``bielik model init`` or any Llama/Mistral/Qwen2 checkpoint) and a packed
dataset (``bielik data pack``). Outputs in ``output``: ``metrics.jsonl``, ``checkpoints/``,
``final/`` (HF model + tokenizer), ``config.yaml``, ``metrics.json``, ``lineage.json``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from bielik.artifacts import write_stage_record
from bielik.config import StageConfig
from bielik.data.pack import TokenShards
from bielik.errors import BielikError
from bielik.log import get_logger
from bielik.model.loading import load_hf_model
from bielik.train.batches import PackedRowBatches, eval_batches
from bielik.train.config import EngineConfig
from bielik.train.distributed import init_distributed
from bielik.train.engine import Engine
from bielik.train.objectives import CausalLM

log = get_logger(__name__)


class PretrainConfig(StageConfig):
    model: str = Field("runs/model-init", description="HF model directory to start from")
    data: str = Field("runs/data", description="packed dataset directory (bielik data pack)")
    output: str = "runs/pretrain"
    train: EngineConfig = Field(default_factory=EngineConfig)


def pretrain(cfg: PretrainConfig) -> dict:
    """Run continued pretraining; return the summary that is also written to ``metrics.json``."""
    train_rows = TokenShards(cfg.data, "train")  # validates inputs before anything is written
    val_rows = TokenShards(cfg.data, "val")
    model = load_hf_model(cfg.model)
    if model.config.vocab_size < train_rows.vocab_size:
        raise BielikError(
            f"data {cfg.data} was packed with a {train_rows.vocab_size}-token tokenizer but model {cfg.model} "
            f"has vocab_size {model.config.vocab_size}"
        )
    e = cfg.train
    d = init_distributed(e.device, e.distributed)
    source = PackedRowBatches(train_rows, e.micro_batch_size, e.grad_accum, d.rank, d.world_size, e.seed)
    engine = Engine(
        e,
        model,
        CausalLM(chunk=e.lm_head_chunk),
        source,
        cfg.output,
        d,
        seq_len=train_rows.seq_len,
        eval_batches=(lambda: eval_batches(val_rows, e.micro_batch_size, e.eval.batches, d.rank, d.world_size))
        if len(val_rows)
        else None,
        run_config=cfg,
    )
    if d.is_main:
        log.info(
            "pretraining %s on %s: %d steps x %d tokens, precision %s, %d process(es)",
            cfg.model,
            cfg.data,
            e.steps,
            source.tokens_per_step,
            e.precision,
            d.world_size,
        )
    summary = engine.fit()
    if e.checkpoint.save_final:
        engine.export(Path(cfg.output) / "final", extra_dirs=[cfg.model])
    if d.is_main:
        write_stage_record(
            cfg.output, "train.pretrain", cfg, inputs={"model": cfg.model, "data": cfg.data}, metrics=summary
        )
    return summary
