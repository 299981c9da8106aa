"""The training engine: one loop for every objective.

Per optimizer step (all of it lives here, once):

1. learning rate from the schedule (:func:`bielik.train.optim.lr_at`);
2. this rank's micro-batches from the batch source; the number of loss units in the *global* batch
   (all micro-batches, all ranks) is counted first, so each micro-batch back-propagates
   ``loss_sum · world / units_global`` — the exact gradient of the global mean, whatever the split;
3. forward/backward under the chosen precision (fp32, bf16 autocast, bf16 weights), with DDP
   gradient sync (or FSDP2 reduce-scatter) only on the last micro-batch;
4. global gradient norm, clipping, NaN/inf guard (a non-finite loss or norm skips the update and is
   counted; ``nan_guard.max_consecutive`` in a row stops the run), AdamW step;
5. metrics (loss, lr, grad-norm, tokens/s, MFU) every ``logging.every`` steps, held-out loss and
   perplexity every ``eval.every`` steps, an atomic checkpoint every ``checkpoint.every`` steps.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from bielik.artifacts import config_digest, staged_dir
from bielik.config import StageConfig
from bielik.errors import BielikError
from bielik.log import get_logger
from bielik.model.tensors import copy_side_files
from bielik.progress import progress
from bielik.train import checkpoint as ckpt
from bielik.train.batches import BatchSource
from bielik.train.config import EngineConfig
from bielik.train.distributed import Dist, all_reduce_sum, barrier, wrap
from bielik.train.metrics import MetricsWriter, cached_peak, flops_per_token
from bielik.train.objectives.base import Objective, ObjectiveOutput
from bielik.train.optim import build_adamw, lr_at, set_lr

log = get_logger(__name__)


class ObjectiveModule(nn.Module):
    """The trained model and its objective as one module, so DDP/FSDP2 hooks see the whole step.

    FSDP2 gathers the root's parameters (embeddings, final norm, LM head) in the root's forward;
    objectives that run the decoder and the LM head separately (chunked CE) therefore need the
    objective *inside* the root module's forward.
    """

    def __init__(self, model: nn.Module, objective: Objective):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        return self.objective(self.model, batch)


def _decoder_layers(model: nn.Module) -> list[nn.Module]:
    base = getattr(model, model.base_model_prefix, model)
    layers = getattr(base, "layers", None)
    if layers is None:
        raise BielikError(f"{type(model).__name__}: cannot find decoder layers (expected <base>.layers)")
    return list(layers)


class Engine:
    """Trains ``model`` with ``objective`` on ``train`` batches; writes into ``out_dir``."""

    def __init__(
        self,
        cfg: EngineConfig,
        model: nn.Module,
        objective: Objective,
        train: BatchSource,
        out_dir: str | Path,
        dist: Dist,
        tokens_per_step: int,
        seq_len: int,
        eval_batches: Callable[[], Iterable[dict[str, torch.Tensor]]] | None = None,
        run_config: StageConfig | None = None,
    ):
        self.cfg = cfg
        self.objective = objective
        self.train = train
        self.out_dir = Path(out_dir)
        self.dist = dist
        self.tokens_per_step = tokens_per_step
        self.eval_batches = eval_batches
        self.run_config = run_config
        self.device = dist.device
        self.compute_dtype = torch.float32 if cfg.precision == "fp32" else torch.bfloat16
        self.step = 0
        self.tokens = 0
        self.nan_skipped = 0
        self._consecutive_bad = 0

        torch.manual_seed(cfg.seed)
        if self.device.type == "cpu":
            # Adam moments of never-updated rows (unseen tokens) decay geometrically into denormals,
            # which are ~100x slower on x86; flushing them to zero changes nothing that matters.
            torch.set_flush_denormal(True)
        model.to(device=self.device, dtype=torch.bfloat16 if cfg.precision == "bf16" else torch.float32)
        model.train()
        if cfg.activation_checkpointing:
            if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x
                model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
        self.hf_model = model
        self.flops_per_token = flops_per_token(model, seq_len)
        layers = _decoder_layers(model)
        if cfg.compile:
            for layer in layers:  # per-layer compile: quick to build, keeps state-dict names unchanged
                layer.compile()
        self.module = wrap(ObjectiveModule(model, objective), layers, dist, cfg.distributed, mp_dtype=None)
        self.optimizer = build_adamw(self.module, cfg.optim, self.device.type)
        self.peak = cfg.peak_flops or cached_peak(self.device, self.compute_dtype)
        self.ckpt_root = self.out_dir / "checkpoints"
        self.metrics = MetricsWriter(
            self.out_dir, dist.is_main, cfg.logging.tensorboard, cfg.logging.wandb, cfg.logging.wandb_project,
            cfg.logging.wandb_mode, run_config.model_dump(mode="json") if run_config else None,
        )

    # --- pieces of a step -----------------------------------------------------------------------
    def _autocast(self):
        if self.cfg.precision == "bf16-autocast" and self.device.type in ("cpu", "cuda"):
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _sync_context(self, last: bool):
        """Skip the gradient all-reduce / reduce-scatter on all but the last micro-batch."""
        if not self.dist.enabled:
            return contextlib.nullcontext()
        if hasattr(self.module, "no_sync"):  # DDP
            return contextlib.nullcontext() if last else self.module.no_sync()
        self.module.set_requires_gradient_sync(last)  # FSDP2
        return contextlib.nullcontext()

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}

    def _grad_norm(self) -> torch.Tensor:
        max_norm = self.cfg.optim.clip_grad if self.cfg.optim.clip_grad is not None else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), max_norm, foreach=True)
        if hasattr(norm, "full_tensor"):  # DTensor under FSDP2
            norm = norm.full_tensor()
        return norm

    def train_step(self) -> dict[str, float]:
        lr = lr_at(self.step, self.cfg.steps, self.cfg.optim)
        set_lr(self.optimizer, lr)
        micro = [self._to_device(b) for b in self.train.next_step()]
        units = torch.tensor([float(sum(self.objective.loss_units(b) for b in micro))], dtype=torch.float64, device=self.device)
        units_global = float(all_reduce_sum(units, self.dist).item())
        if units_global <= 0:
            raise BielikError(f"step {self.step}: the global batch has no loss units (every target masked?)")
        scale = self.dist.world_size / units_global
        sums: dict[str, torch.Tensor] = {}
        for i, batch in enumerate(micro):
            with self._sync_context(last=i == len(micro) - 1), self._autocast():
                out = self.module(batch)
            (out.loss_sum * scale).backward()
            for k, v in {"loss_sum": out.loss_sum, **out.metrics}.items():
                sums[k] = sums.get(k, 0) + v.detach().float()
        keys = sorted(sums)
        vec = all_reduce_sum(torch.stack([sums[k].reshape(()) for k in keys]).double(), self.dist).cpu()
        stats = {k: float(v) / units_global for k, v in zip(keys, vec)}
        grad_norm = float(self._grad_norm())
        finite = math.isfinite(stats["loss_sum"]) and math.isfinite(grad_norm)
        if finite:
            self.optimizer.step()
            self._consecutive_bad = 0
        else:
            self.nan_skipped += 1
            self._consecutive_bad += 1
            log.warning("step %d: non-finite loss/grad-norm (%s, %s); update skipped (%d in a row)",
                        self.step, stats["loss_sum"], grad_norm, self._consecutive_bad)
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens += self.tokens_per_step
        if self._consecutive_bad >= self.cfg.nan_guard.max_consecutive:
            raise BielikError(
                f"stopped at step {self.step}: {self._consecutive_bad} non-finite steps in a row "
                f"(nan_guard.max_consecutive={self.cfg.nan_guard.max_consecutive}); lower optim.lr or check the data"
            )
        loss = stats.pop("loss_sum")
        return {"loss": loss, "lr": lr, "grad_norm": grad_norm, "skipped": not finite, **{k: v for k, v in stats.items() if k != "loss"}}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float] | None:
        if self.eval_batches is None:
            return None
        self.module.eval()
        loss = torch.zeros(2, dtype=torch.float64, device=self.device)
        for batch in self.eval_batches():
            batch = self._to_device(batch)
            with self._autocast():
                out = self.module(batch)
            loss[0] += out.loss_sum.detach().double()
            loss[1] += self.objective.loss_units(batch)
        self.module.train()
        loss = all_reduce_sum(loss, self.dist).cpu()
        if loss[1] == 0:
            return None
        mean = float(loss[0] / loss[1])
        return {"val_loss": mean, "val_ppl": math.exp(min(mean, 50.0)), "val_tokens": int(loss[1])}

    # --- checkpoints ----------------------------------------------------------------------------
    def _trainer_state(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "nan_skipped": self.nan_skipped,
            "consecutive_bad": self._consecutive_bad,
            "data": self.train.state_dict(),
            "config_sha256": config_digest(self.run_config) if self.run_config else None,
        }

    def save_checkpoint(self) -> Path:
        return ckpt.save_checkpoint(
            self.ckpt_root, self.step, self.module, self.hf_model, self.optimizer, self._trainer_state(),
            self.dist, self.cfg.checkpoint.keep_last,
        )

    def maybe_resume(self) -> None:
        spec = self.cfg.checkpoint.resume
        if spec == "never":
            return
        path = ckpt.latest_checkpoint(self.ckpt_root) if spec == "auto" else Path(spec)
        if path is None:
            return
        state = ckpt.load_checkpoint(path, self.module, self.optimizer, self.dist)
        self.step = int(state["step"])
        self.tokens = int(state["tokens"])
        self.nan_skipped = int(state["nan_skipped"])
        self._consecutive_bad = int(state.get("consecutive_bad", 0))
        self.train.load_state_dict(state["data"])
        if self.run_config is not None and state.get("config_sha256") not in (None, config_digest(self.run_config)):
            log.warning("resuming %s with a config that differs from the one it was saved with", path)

    def export(self, path: str | Path, extra_dirs: Iterable[str | Path] = ()) -> Path:
        """Write the current weights as an HF model directory (collective; rank 0 writes)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        sd = get_model_state_dict(self.module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if self.dist.is_main:
            sd = {k.removeprefix("model."): v.contiguous() for k, v in sd.items()}
            with staged_dir(path, overwrite=True) as tmp:
                self.hf_model.config.use_cache = True
                self.hf_model.save_pretrained(tmp, state_dict=sd, safe_serialization=True)
                self.hf_model.config.use_cache = False
                for src in extra_dirs:  # save_pretrained wrote this model's own generation config
                    copy_side_files(src, tmp, skip=("generation_config.json",))
        barrier(self.dist)
        return Path(path)

    # --- the loop -------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        cfg = self.cfg
        self.maybe_resume()
        summary: dict[str, Any] = {"start_step": self.step}
        history: list[dict[str, float]] = []
        if self.step == 0 and cfg.eval.at_start:
            ev = self.evaluate()
            if ev:
                self.metrics.write({"kind": "eval", "step": 0, **ev})
                summary["initial_val_loss"] = ev["val_loss"]
                log.info("step 0: held-out loss %.4f (ppl %.1f)", ev["val_loss"], ev["val_ppl"])
        window_t, window_tokens, window = time.perf_counter(), 0, []
        ev = None
        with progress("training", total=cfg.steps, unit="steps", every=0) as bar:
            bar.done = self.step
            while self.step < cfg.steps:
                rec = self.train_step()
                window.append(rec)
                window_tokens += self.tokens_per_step
                if self.step % cfg.logging.every == 0 or self.step == cfg.steps:
                    if self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)
                    dt = time.perf_counter() - window_t
                    tps = window_tokens / dt
                    row = {
                        "kind": "train", "step": self.step, "tokens": self.tokens,
                        "loss": sum(r["loss"] for r in window) / len(window),
                        "lr": rec["lr"], "grad_norm": rec["grad_norm"],
                        "tokens_per_s": tps, "skipped_steps": self.nan_skipped,
                    }
                    if self.peak:
                        row["mfu"] = tps * self.flops_per_token / (self.peak * self.dist.world_size)
                    extra = {k: sum(r[k] for r in window) / len(window) for k in rec if k not in row and k != "skipped"}
                    row.update(extra)
                    self.metrics.write(row)
                    history.append(row)
                    mfu = f" mfu {100 * row['mfu']:.1f}%" if "mfu" in row else ""
                    bar.advance(len(window), info=f"loss {row['loss']:.4f} lr {rec['lr']:.2e} gnorm {rec['grad_norm']:.2f} {tps:,.0f} tok/s{mfu}")
                    window_t, window_tokens, window = time.perf_counter(), 0, []
                if cfg.eval.every and self.step % cfg.eval.every == 0 and self.step < cfg.steps:
                    ev = self.evaluate()
                    if ev:
                        self.metrics.write({"kind": "eval", "step": self.step, **ev})
                if cfg.checkpoint.every and self.step % cfg.checkpoint.every == 0:
                    self.save_checkpoint()
        ev = self.evaluate()
        if ev:
            self.metrics.write({"kind": "eval", "step": self.step, **ev})
            summary["final_val_loss"] = ev["val_loss"]
            summary["final_val_ppl"] = ev["val_ppl"]
            log.info("step %d: held-out loss %.4f (ppl %.1f)", self.step, ev["val_loss"], ev["val_ppl"])
        if cfg.checkpoint.every and not (self.ckpt_root / ckpt.checkpoint_name(self.step)).exists():
            self.save_checkpoint()
        summary.update(
            steps=self.step, tokens=self.tokens, skipped_steps=self.nan_skipped,
            final_train_loss=history[-1]["loss"] if history else None,
            tokens_per_s=(sum(h["tokens_per_s"] for h in history) / len(history)) if history else None,
            mfu=(sum(h.get("mfu", 0.0) for h in history) / len(history)) if history and self.peak else None,
            flops_per_token=self.flops_per_token, peak_flops=self.peak, world_size=self.dist.world_size,
        )
        self.metrics.close()
        return summary
