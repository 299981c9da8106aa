"""Config of the training engine, shared by every training stage."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from bielik.config import StageConfig


class AdaptiveLRConfig(StageConfig):
    """Adaptive learning rate (Bielik SFT, RECIPE §5.2): lr_t = schedule(t)·√(T_t / BS).

    T_t is the number of loss-carrying tokens in step t's *global* batch (all micro-batches, all
    ranks) and BS the configured baseline in tokens; a batch with fewer trained tokens than the
    baseline (short answers, heavy masking) takes a proportionally smaller step.
    """

    enabled: bool = False
    baseline_tokens: int = Field(
        4096, ge=1, description="BS: the global batch size in loss tokens at which lr_t = schedule(t)"
    )
    max_scale: float | None = Field(None, gt=0, description="cap on √(T_t/BS) (null: no cap, as in the paper)")


class OptimConfig(StageConfig):
    """AdamW with a warm-up + cosine schedule (RECIPE §4: β 0.9/0.95, wd 0.1, clip 1.0)."""

    lr: float = Field(1e-3, gt=0)
    min_lr: float = Field(1e-4, ge=0, description="floor of the cosine schedule")
    warmup_steps: int = Field(10, ge=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = Field(0.1, ge=0)
    fused: Literal["auto", "on", "off"] = Field("auto", description="fused AdamW kernel where the device supports it")
    clip_grad: float | None = Field(1.0, gt=0, description="max global grad norm; null disables clipping")
    alr: AdaptiveLRConfig = Field(default_factory=AdaptiveLRConfig)


class PrepareConfig(StageConfig):
    """The objective's no-grad preparation pass (reference log-probs, teacher logits)."""

    cache: str | None = Field(
        None, description="directory caching prepared values per example; 'auto' = <output>/prepared"
    )
    precompute: bool = Field(
        False, description="fill the cache over the whole training set before step 1 (needs cache)"
    )
    frozen_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="dtype of frozen models (reference, teacher); auto = bfloat16 unless precision is fp32"
    )


class CheckpointConfig(StageConfig):
    """Training checkpoints (layout and guarantees: :mod:`bielik.train.checkpoint`)."""

    every: int = Field(0, ge=0, description="save every N steps (0: only at the end)")
    keep_last: int = Field(2, ge=1)
    resume: str = Field("auto", description="'auto' (latest in output dir if any), 'never', or a checkpoint path")
    save_final: bool = Field(True, description="write the final HF model to <output>/final")
    hf_export: bool = Field(
        True,
        description="also write each checkpoint's weights as an HF model (model.safetensors): a full gather "
        "on rank 0 per checkpoint; switch off for large models (the sharded dcp/ state is always written)",
    )
    async_save: bool = Field(
        False,
        description="write the sharded state in a background thread (dcp.async_save); off by default "
        "because on CPU the write competes with training for the same cores",
    )


class EvalConfig(StageConfig):
    every: int = Field(50, ge=0, description="held-out evaluation every N steps (0: start and end only)")
    batches: int = Field(8, ge=1, description="micro-batches per evaluation")
    at_start: bool = True


class DistributedConfig(StageConfig):
    strategy: Literal["ddp", "fsdp2"] = "ddp"
    backend: Literal["auto", "nccl", "gloo"] = "auto"
    reshard_after_forward: bool = True


class LoggingConfig(StageConfig):
    every: int = Field(10, ge=1)
    tensorboard: bool = False
    wandb: bool = False
    wandb_project: str = "bielik"
    wandb_mode: Literal["offline", "online"] = Field("offline", description="online only when you ask for it")


class NanGuardConfig(StageConfig):
    max_consecutive: int = Field(5, ge=1, description="stop after this many non-finite steps in a row")


class EngineConfig(StageConfig):
    """Everything the engine needs besides the model, the objective and the data."""

    steps: int = Field(100, ge=1, description="optimizer steps")
    micro_batch_size: int = Field(8, ge=1, description="sequences per forward pass per process")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step per process")
    precision: Literal["fp32", "bf16-autocast", "bf16"] = Field(
        "fp32", description="bf16-autocast: fp32 weights, bf16 matmuls; bf16: bf16 weights and optimizer state"
    )
    compile: bool = False
    activation_checkpointing: bool = False
    lm_head_chunk: int = Field(2048, ge=0, description="tokens per LM-head/CE chunk; 0: full logits (HF loss)")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N | mps")
    seed: int = 0
    peak_flops: float | None = Field(
        None, gt=0, description="per-device peak FLOP/s for MFU; default: `bielik bench peak` cache"
    )
    optim: OptimConfig = Field(default_factory=OptimConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    nan_guard: NanGuardConfig = Field(default_factory=NanGuardConfig)
    prepare: PrepareConfig = Field(default_factory=PrepareConfig)

    @model_validator(mode="after")
    def _check(self) -> EngineConfig:
        if self.optim.min_lr > self.optim.lr:
            raise ValueError(f"optim.min_lr ({self.optim.min_lr}) must not exceed optim.lr ({self.optim.lr})")
        if self.prepare.precompute and not self.prepare.cache:
            raise ValueError("prepare.precompute needs prepare.cache (a directory, or 'auto')")
        return self


def engine_field(description: str = "engine settings", **defaults: Any):
    """An ``EngineConfig`` field whose defaults are a stage's own (e.g. SFT's LR and adaptive LR).

    A partial ``train:`` section (``train.steps=20``) is deep-merged over these defaults, not over
    ``EngineConfig``'s, so a user overriding one key keeps the stage's other defaults.
    """
    from bielik.config import deep_merge

    def merge(value: Any) -> Any:
        if isinstance(value, EngineConfig):
            return value
        return deep_merge(defaults, value or {})

    return Annotated[
        EngineConfig,
        BeforeValidator(merge),
        Field(default_factory=lambda: EngineConfig.model_validate(defaults), description=description),
    ]
