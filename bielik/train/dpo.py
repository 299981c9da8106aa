"""``bielik train dpo``: DPO-Positive on preference pairs, on the one engine (RECIPE §6.1).

Inputs: an HF model directory (normally an SFT output; its tokenizer, or ``tokenizer=``), the
reference (``reference``, default: a separate copy of the same model) and preference data
(``data``: JSONL, Parquet, saved HF datasets, or ``shipped`` — ``bielik/resources/post/preferences
.jsonl.gz``; see :mod:`bielik.data.preferences`). Every record is read, validated and rendered
before anything is written.

A micro-batch is ``micro_batch_size`` pairs laid out as shared-prompt rows (``share_prompt``,
``pack``, rows of at most ``seq_len`` tokens; :mod:`bielik.train.group_rows`). The reference's
log-probs are computed once over the training pairs and cached on disk (``train.prepare.cache=auto
precompute=true``, the default; ``train.prepare.cache=null`` runs the reference next to the policy
at every step instead). Outputs in ``output``: ``final/`` (HF model + the tokenizer with the chat
template), ``metrics.jsonl``, ``checkpoints/``, ``prepared/`` (the reference's log-probs),
``data.json``, ``config.yaml``, ``metrics.json``, ``lineage.json``. Resumes exactly like
pretraining (``train.checkpoint.resume=auto``).
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from bielik.artifacts import write_json, write_stage_record
from bielik.config import StageConfig
from bielik.errors import DataError
from bielik.log import get_logger
from bielik.train.batches import RowBatches
from bielik.train.config import engine_field
from bielik.train.group_rows import Group, group_batch, plan_rows

log = get_logger(__name__)

DPO_ENGINE = engine_field(
    "engine settings (DPO-P defaults: lr 1e-4 -> 1e-5, reference log-probs precomputed and cached)",
    steps=100,
    micro_batch_size=8,
    optim={"lr": 1e-4, "min_lr": 1e-5, "warmup_steps": 10, "weight_decay": 0.0},
    eval={"every": 50, "batches": 8},
    prepare={"cache": "auto", "precompute": True},
)


class DPOConfig(StageConfig):
    model: str = Field("runs/sft/final", description="HF model directory to align (the policy's starting point)")
    reference: str | None = Field(None, description="frozen reference model directory (default: a copy of `model`)")
    tokenizer: str | None = Field(None, description="tokenizer directory (default: the model's)")
    data: list[str] = Field(
        default_factory=lambda: ["shipped"],
        description="preference JSONL/Parquet/HF-dataset paths; 'shipped', 'shipped:pl'",
    )
    output: str = "runs/dpo"
    beta: float = Field(0.1, gt=0, description="β: inverse temperature of the implicit reward")
    lam: float = Field(
        5.0, ge=0, description="λ of DPO-P: weight of the penalty on lost chosen likelihood (0: sigmoid DPO)"
    )
    seq_len: int = Field(1024, ge=32, description="tokens per row; a pair (prompt + chosen + rejected) must fit in one")
    too_long: Literal["truncate", "drop"] = Field(
        "truncate", description="pairs longer than seq_len: cut both replies, or drop"
    )
    share_prompt: bool = Field(
        True, description="run the prompt once per pair (off: prompt+chosen and prompt+rejected separately)"
    )
    pack: bool = Field(True, description="several pairs per row (off: one pair or sequence per row, padded)")
    max_pairs: int | None = Field(None, ge=1, description="use at most this many pairs (seeded sample)")
    val_fraction: float = Field(
        0.05, ge=0.0, lt=1.0, description="pairs held out (by hashed id) for validation metrics"
    )
    weighting: bool = Field(True, description="scale each pair's loss by its weight/quality (off: weight 1)")
    normalize: Literal["pairs", "weights"] = Field("pairs", description="loss denominator: pairs, or Σ pair weights")
    quality_weights: dict[str, float] = Field(default_factory=lambda: {"high": 1.0, "medium": 0.7, "low": 0.5})
    seed: int = 0
    train: DPO_ENGINE


# ------------------------------------------------------------------------------------------- data
def content_id(*arrays: np.ndarray) -> int:
    """A 63-bit id of token arrays: the key of the reference log-probs in the preparation cache, so a
    cached value is found again only for exactly the same tokens (whatever the data order, sampling,
    held-out split or truncation)."""
    h = hashlib.blake2b(digest_size=8)
    for a in arrays:
        h.update(np.asarray(a, dtype=np.int64).tobytes())
        h.update(b"|")
    return int.from_bytes(h.digest(), "little") >> 1


class PairBatches(RowBatches):
    """Preference pairs served ``micro_batch_size`` pairs per micro-batch (shuffled every epoch, resumable),
    each micro-batch laid out as shared-prompt rows when it is built."""

    what = "preference pairs"

    def __init__(
        self,
        pairs,
        micro_batch_size: int,
        grad_accum: int,
        pad_id: int,
        seq_len: int,
        share_prompt: bool = True,
        pack: bool = True,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        for_training: bool = True,
    ):
        self.pairs, self.pad_id, self.share, self.pack = pairs, pad_id, share_prompt, pack
        self.ids = np.array([content_id(p.prompt, p.chosen, p.rejected) for p in pairs], dtype=np.int64)
        super().__init__(
            len(pairs), seq_len, micro_batch_size, grad_accum, rank, world_size, seed, "DPO data", for_training
        )

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        pairs = [self.pairs[i] for i in idx]
        if self.share:
            groups = [Group(p.prompt, (p.chosen, p.rejected)) for p in pairs]
        else:
            groups = [Group(p.prompt, (c,)) for p in pairs for c in (p.chosen, p.rejected)]
        out = group_batch(groups, plan_rows(groups, self.seq_len, self.pack), self.pad_id)
        if self.share:
            out["seq_pair"], out["seq_side"] = out["seq_group"], out["seq_part"]
        else:
            out["seq_pair"], out["seq_side"] = out["seq_group"] // 2, out["seq_group"] % 2
        out["example_ids"] = torch.from_numpy(self.ids[np.asarray(idx, dtype=np.int64)])
        out["pair_weight"] = torch.tensor([p.weight for p in pairs], dtype=torch.float32)
        return out


def build_pairs(tokenizer, cfg: DPOConfig) -> tuple[list, list, dict]:
    """Read, validate, sample, split and render the pairs: (train, held out, stats). Raises before
    anything is written."""
    from bielik.data.chat_rows import UnusableDialogue
    from bielik.data.preferences import (
        encode_pair,
        fit_pair,
        read_preferences,
        split_heldout,
    )

    pairs = list(read_preferences(cfg.data, cfg.quality_weights))
    if cfg.max_pairs is not None and len(pairs) > cfg.max_pairs:
        pairs = [pairs[i] for i in sorted(random.Random(cfg.seed).sample(range(len(pairs)), cfg.max_pairs))]
    counts = {"read": len(pairs), "identical": 0, "truncated": 0, "dropped_too_long": 0, "unusable": 0}
    encoded = []
    for p in pairs:
        if p.chosen == p.rejected:
            counts["identical"] += 1
            continue
        try:
            e = encode_pair(tokenizer, p)
        except UnusableDialogue as exc:
            counts["unusable"] += 1
            if counts["unusable"] <= 3:
                log.warning("skipping a pair: %s", exc)
            continue
        fitted = fit_pair(e, cfg.seq_len, cfg.too_long)
        if fitted is None:
            counts["dropped_too_long"] += 1
            continue
        counts["truncated"] += fitted is not e
        encoded.append(
            fitted if cfg.weighting else type(fitted)(fitted.prompt, fitted.chosen, fitted.rejected, 1.0, fitted.key)
        )
    train, val = split_heldout(encoded, cfg.val_fraction, cfg.seed)
    if not train:
        raise DataError(f"no training pairs in {cfg.data} ({counts})")
    tokens = sum(len(e.prompt) + len(e.chosen) + len(e.rejected) for e in train)
    stats = {
        "inputs": list(cfg.data),
        **counts,
        "train_pairs": len(train),
        "val_pairs": len(val),
        "train_tokens": tokens,
        "weights": {str(w): sum(1 for e in train if e.weight == w) for w in sorted({e.weight for e in train})},
    }
    return train, val, stats


# ------------------------------------------------------------------------------------------ stage
def dpo(cfg: DPOConfig) -> dict:
    """Align ``cfg.model`` with DPO-P; return the summary also written to ``metrics.json``."""
    from bielik.errors import BielikError
    from bielik.model.loading import load_hf_model
    from bielik.tokenizer.chat import ensure_chat_template
    from bielik.tokenizer.formats import load_hf_tokenizer
    from bielik.train.distributed import init_distributed
    from bielik.train.engine import Engine
    from bielik.train.objectives.dpo import DPOPositive
    from bielik.train.sft import save_instruct_tokenizer

    tok_dir = Path(cfg.tokenizer or cfg.model)
    tokenizer = ensure_chat_template(load_hf_tokenizer(tok_dir))
    train, val, stats = build_pairs(tokenizer, cfg)
    model = load_hf_model(cfg.model)
    if model.config.vocab_size < len(tokenizer):
        raise BielikError(
            f"tokenizer {tok_dir} has {len(tokenizer)} tokens but model {cfg.model} has vocab_size "
            f"{model.config.vocab_size}"
        )
    reference = load_hf_model(cfg.reference or cfg.model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    e = cfg.train
    d = init_distributed(e.device, e.distributed)

    def source(pairs, for_training=True):
        return PairBatches(
            pairs,
            e.micro_batch_size,
            e.grad_accum if for_training else 1,
            pad,
            cfg.seq_len,
            cfg.share_prompt,
            cfg.pack,
            d.rank,
            d.world_size,
            e.seed,
            for_training,
        )

    objective = DPOPositive(reference, cfg.beta, cfg.lam, chunk=e.lm_head_chunk or 2048, normalize=cfg.normalize)
    engine = Engine(
        e,
        model,
        objective,
        source(train),
        cfg.output,
        d,
        seq_len=cfg.seq_len,
        eval_batches=(lambda: source(val, False).eval_batches(e.eval.batches)) if val else None,
        run_config=cfg,
    )
    if d.is_main:
        log.info(
            "DPO-P (beta %g, lambda %g) of %s against %s on %s: %d pairs (%d held out); %d steps of %d pairs",
            cfg.beta,
            cfg.lam,
            cfg.model,
            cfg.reference or "a copy of it",
            cfg.data,
            len(train),
            len(val),
            e.steps,
            e.micro_batch_size * e.grad_accum * d.world_size,
        )
        Path(cfg.output).mkdir(parents=True, exist_ok=True)
        write_json(Path(cfg.output) / "data.json", stats)
    summary = engine.fit()
    summary["data"] = stats
    if e.checkpoint.save_final:
        final = engine.export(Path(cfg.output) / "final", extra_dirs=[tok_dir])
        if d.is_main:
            save_instruct_tokenizer(tokenizer, final)  # <|im_end|> as EOS, as after SFT
    if d.is_main:
        inputs = {"model": cfg.model, "data": ",".join(cfg.data)}
        if cfg.reference:
            inputs["reference"] = cfg.reference
        write_stage_record(cfg.output, "train.dpo", cfg, inputs=inputs, metrics=summary)
    return summary
