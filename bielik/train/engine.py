"""The training engine: one loop for every objective.

Per optimizer step (all of it lives here, once):

1. this rank's micro-batches from the batch source (a rollout source may sample them from the
   current policy first, through :meth:`Engine.policy_call`);
2. the objective's no-grad preparation pass on each micro-batch (frozen reference / teacher), or
   its values from the per-example cache;
3. the number of loss units, loss tokens and real tokens in the *global* batch (all micro-batches,
   all ranks) is counted first, so each micro-batch back-propagates ``loss_sum · world /
   units_global`` — the exact gradient of the global mean, whatever the split;
4. learning rate from the schedule (:func:`bielik.train.optim.lr_at`), scaled by the adaptive LR
   √(T_t/BS) when enabled (:func:`bielik.train.optim.adaptive_lr`);
5. forward/backward under the chosen precision (fp32, bf16 autocast, bf16 weights), with DDP
   gradient sync (or FSDP2 reduce-scatter) only on the last micro-batch;
6. global gradient norm, clipping, NaN/inf guard (a non-finite loss or norm skips the update and is
   counted; ``nan_guard.max_consecutive`` in a row stops the run), AdamW step;
7. metrics (loss, lr, grad-norm, real tokens/s, MFU, the objective's metrics each over its own
   denominator) every ``logging.every`` steps, held-out loss (and perplexity where the objective's
   loss is a per-token NLL) every ``eval.every`` steps, an atomic checkpoint every
   ``checkpoint.every`` steps — deferred to the next rollout boundary for rollout sources.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

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
from bielik.train.optim import adaptive_lr, build_adamw, lr_at, set_lr
from bielik.train.prepare import PreparedCache

log = get_logger(__name__)


class ObjectiveModule(nn.Module):
    """The trained model and its objective as one module, so DDP/FSDP2 hooks see the whole step.

    FSDP2 gathers the root's parameters (embeddings, final norm, LM head) in the root's forward;
    objectives that run the decoder and the LM head separately (chunked CE) therefore need the
    objective *inside* the root module's forward.
    """

    def __init__(self, model: nn.Module, objective: Objective):
        super().__init__()
        if isinstance(objective, nn.Module):
            raise BielikError(
                f"objective {type(objective).__name__} must not be an nn.Module "
                "(its modules would be trained and saved)"
            )
        self.model = model
        object.__setattr__(self, "_objective", objective)  # not a submodule: frozen models stay out of state_dict

    def forward(
        self, batch: dict[str, torch.Tensor] | None = None, fn: Callable[[nn.Module], Any] | None = None
    ) -> Any:
        """The objective's loss on ``batch``, or ``fn(model)`` (sampling through the wrapped root)."""
        if fn is not None:
            return fn(self.model)
        return self._objective(self.model, batch)


def _decoder_layers(model: nn.Module) -> list[nn.Module]:
    base = getattr(model, model.base_model_prefix, model)
    layers = getattr(base, "layers", None)
    if layers is None:
        raise BielikError(f"{type(model).__name__}: cannot find decoder layers (expected <base>.layers)")
    return list(layers)


PREPARED = "_prepared"
"""Marker key of a replayed batch whose preparation outputs are already in it."""


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
        seq_len: int,
        eval_batches: Callable[[], Iterable[dict[str, torch.Tensor]]] | None = None,
        run_config: StageConfig | None = None,
    ):
        self.cfg = cfg
        self.objective = objective
        self.train = train
        self.out_dir = Path(out_dir)
        self.dist = dist
        self.eval_batches = eval_batches
        self.run_config = run_config
        self.device = dist.device
        self.compute_dtype = torch.float32 if cfg.precision == "fp32" else torch.bfloat16
        self.step = 0
        self.tokens = 0
        self.nan_skipped = 0
        self._consecutive_bad = 0

        torch.manual_seed(cfg.seed)
        # Denormal flushing (Adam moments of unseen rows decay into slow denormals) is process-wide state:
        # bielik.runtime.stage_context sets it for a stage run and restores it; the engine does not touch it.
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
        self._setup_frozen()
        self.prep_cache = self._open_prep_cache()
        self.optimizer = build_adamw(self.module, cfg.optim, self.device.type)
        self.peak = cfg.peak_flops or cached_peak(self.device, self.compute_dtype)
        self.ckpt_root = self.out_dir / "checkpoints"
        self.checkpointer = ckpt.Checkpointer(
            self.ckpt_root,
            dist,
            cfg.checkpoint.keep_last,
            hf_export=cfg.checkpoint.hf_export,
            async_save=cfg.checkpoint.async_save,
        )
        self.metrics = MetricsWriter(
            self.out_dir,
            dist.is_main,
            cfg.logging.tensorboard,
            cfg.logging.wandb,
            cfg.logging.wandb_project,
            cfg.logging.wandb_mode,
            run_config.model_dump(mode="json") if run_config else None,
        )

    # --- frozen models, preparation pass, policy sampling ---------------------------------------
    def _frozen_dtype(self) -> torch.dtype:
        spec = self.cfg.prepare.frozen_dtype
        if spec == "auto":
            return torch.float32 if self.cfg.precision == "fp32" else torch.bfloat16
        return getattr(torch, spec)

    def _setup_frozen(self) -> None:
        """Move, cast, freeze and (under FSDP2) shard the objective's frozen models; DDP leaves them unwrapped."""
        for name, m in self.objective.frozen_models().items():
            m.requires_grad_(False)
            m.to(device=self.device, dtype=self._frozen_dtype())
            m.eval()
            if getattr(m, "config", None) is not None:
                m.config.use_cache = False
            if self.dist.enabled and self.cfg.distributed.strategy == "fsdp2":
                from torch.distributed.fsdp import fully_shard

                for layer in _decoder_layers(m):
                    fully_shard(layer, reshard_after_forward=True)
                # The root's own parameters (embeddings, final norm, LM head) are gathered once and kept:
                # objectives call parts of a frozen model (the decoder, then a chunked head), which
                # never runs the root's forward hook that would gather them per call.
                fully_shard(m, reshard_after_forward=False)
                m.unshard()
            log.debug("frozen model %s: %s on %s", name, type(m).__name__, self.device)
        trained = {id(p) for p in self.module.parameters()}
        for name, m in self.objective.frozen_models().items():
            if any(id(p) in trained for p in m.parameters()):
                raise BielikError(
                    f"frozen model '{name}' shares parameters with the trained model; pass a separate copy"
                )

    def _open_prep_cache(self) -> PreparedCache | None:
        spec = self.cfg.prepare.cache
        if not spec or not self.objective.has_prepare:
            return None
        root = self.out_dir / "prepared" if spec == "auto" else Path(spec)
        frozen = {
            n: {"class": type(m).__name__, "source": str(getattr(getattr(m, "config", None), "_name_or_path", ""))}
            for n, m in self.objective.frozen_models().items()
        }
        fingerprint = {"objective": self.objective.name, "frozen": frozen, "frozen_dtype": str(self._frozen_dtype())}
        if not self.dist.is_main:  # rank 0 writes meta.json first
            barrier(self.dist)
        cache = PreparedCache(root, fingerprint, self.dist.rank, self.objective.prepare_token_keys)
        if self.dist.is_main:
            barrier(self.dist)
        return cache

    def _prepare(self, batch: dict[str, torch.Tensor], use_cache: bool = True) -> dict[str, torch.Tensor]:
        """Merge the objective's no-grad preparation outputs into ``batch`` (cached per example if asked).

        Held-out batches never use the cache (``use_cache=False``): their ``example_ids`` number a
        different split and would collide with the training rows' keys.
        """
        if not self.objective.has_prepare:
            return batch
        cache = self.prep_cache if use_cache else None
        cached = cache.lookup(batch) if cache is not None else None
        if self.dist.enabled and cache is not None:  # sharded frozen models: every rank runs or none does
            miss = all_reduce_sum(torch.tensor([float(cached is None)], device=self.device), self.dist)
            if float(miss) > 0:
                cached = None
        if cached is None:
            with torch.no_grad(), self._autocast():
                cached = self.objective.prepare(batch)
            if cache is not None:
                cache.store(batch, cached)
        return {**batch, **cached}

    def _prepare_replayed(self, raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A training micro-batch, prepared once even when the source replays it (rollouts, μ > 1).

        A replayed batch is the same dict object on every use, so its preparation outputs (e.g. the
        reference's log-probs of sampled tokens, which depend on the rollout and cannot be cached on
        disk) are stored back into it, marked by ``PREPARED``, and not recomputed for the replays.
        """
        if raw.get(PREPARED):
            return self._to_device(raw)
        batch = self._prepare(self._to_device(raw))
        if getattr(self.train, "reuse", 1) > 1:
            raw.update({k: v for k, v in batch.items() if k not in raw}, **{PREPARED: True})
        return batch

    def precompute(self, batches: Iterable[dict[str, torch.Tensor]], total: int | None = None) -> None:
        """Fill the preparation cache over ``batches`` (this rank's share of the data set, once)."""
        if self.prep_cache is None:
            return
        with progress("preparing", total=total, unit="batches") as bar:
            for batch in batches:
                self._prepare(self._to_device(batch))
                bar.advance(1)
        self.prep_cache.flush()
        barrier(self.dist)
        self.prep_cache.reload()  # the other ranks' shares

    @torch.no_grad()
    def policy_call(self, fn: Callable[[nn.Module], Any]) -> Any:
        """Run ``fn(policy)`` with the current (trained) model through the wrapped root, without gradients.

        Under FSDP2 the root's forward gathers the embeddings, final norm and LM head and each layer
        gathers its own shards, so every rank must call this the same number of times with ``fn``
        doing the same number of forwards (the shared sampler's lockstep mode).
        """
        with self._autocast():
            return self.module(fn=fn)

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

    def _global_counts(self, micro: list[dict[str, torch.Tensor]]) -> tuple[float, float, float]:
        obj = self.objective
        local = [
            sum(float(obj.loss_units(b)) for b in micro),
            sum(float(obj.loss_tokens(b)) for b in micro),
            sum(float(obj.real_tokens(b)) for b in micro),
        ]
        units, loss_tokens, real = all_reduce_sum(
            torch.tensor(local, dtype=torch.float64, device=self.device), self.dist
        ).tolist()
        return units, loss_tokens, real

    def _reduce_metrics(
        self, sums: dict[str, torch.Tensor], counts: dict[str, torch.Tensor], units: float
    ) -> dict[str, float]:
        """Σ over ranks of every metric's sum and count; a metric without its own count is over the loss units."""
        keys = sorted(sums)
        vec = torch.stack(
            [sums[k].reshape(()) for k in keys] + [counts[k].reshape(()) for k in keys if k in counts]
        ).double()
        vec = all_reduce_sum(vec, self.dist).cpu().tolist()
        totals = dict(zip(keys, vec[: len(keys)]))
        denoms = dict(zip([k for k in keys if k in counts], vec[len(keys) :]))
        return {k: totals[k] / denoms.get(k, units) if denoms.get(k, units) else float("nan") for k in keys}

    @staticmethod
    def _accumulate(out: ObjectiveOutput, sums: dict, counts: dict) -> None:
        for k, v in {"loss_sum": out.loss_sum, **out.metrics}.items():
            if isinstance(v, tuple):
                v, c = v
                counts[k] = counts.get(k, 0) + torch.as_tensor(c, dtype=torch.float64).detach().to("cpu")
            sums[k] = sums.get(k, 0) + v.detach().double().to("cpu")

    def train_step(self) -> dict[str, float]:
        micro = [self._prepare_replayed(b) for b in self.train.next_step()]
        units_global, loss_tokens, real_tokens = self._global_counts(micro)
        if units_global <= 0:
            raise BielikError(f"step {self.step}: the global batch has no loss units (every target masked?)")
        lr_schedule = lr_at(self.step, self.cfg.steps, self.cfg.optim)
        lr = adaptive_lr(lr_schedule, loss_tokens, self.cfg.optim.alr)
        set_lr(self.optimizer, lr)
        scale = self.dist.world_size / units_global
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, torch.Tensor] = {}
        for i, batch in enumerate(micro):
            with self._sync_context(last=i == len(micro) - 1), self._autocast():
                out = self.module(batch)
            (out.loss_sum * scale).backward()
            self._accumulate(out, sums, counts)
        stats = self._reduce_metrics(sums, counts, units_global)
        grad_norm = float(self._grad_norm())
        finite = math.isfinite(stats["loss_sum"]) and math.isfinite(grad_norm)
        if finite:
            self.optimizer.step()
            self._consecutive_bad = 0
        else:
            self.nan_skipped += 1
            self._consecutive_bad += 1
            log.warning(
                "step %d: non-finite loss/grad-norm (%s, %s); update skipped (%d in a row)",
                self.step,
                stats["loss_sum"],
                grad_norm,
                self._consecutive_bad,
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens += int(real_tokens)
        if self._consecutive_bad >= self.cfg.nan_guard.max_consecutive:
            raise BielikError(
                f"stopped at step {self.step}: {self._consecutive_bad} non-finite steps in a row "
                f"(nan_guard.max_consecutive={self.cfg.nan_guard.max_consecutive}); lower optim.lr or check the data"
            )
        loss = stats.pop("loss_sum")
        rec = {
            "loss": loss,
            "lr": lr,
            "grad_norm": grad_norm,
            "skipped": not finite,
            "real_tokens": real_tokens,
            "loss_tokens": loss_tokens,
            "units": units_global,
        }
        if self.cfg.optim.alr.enabled:
            rec["lr_schedule"] = lr_schedule
        return {**rec, **{k: v for k, v in stats.items() if k != "loss"}}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float] | None:
        """Held-out loss (Σ loss / Σ units) and every objective metric over its own denominator.

        ``val_ppl`` = exp(per-token NLL) is reported only for objectives whose loss is one
        (``Objective.perplexity``); with weighted tokens the unweighted ``ce`` metric is used.

        Not :mod:`bielik.model.heldout` (the plain-text NLL evaluator of perplexity and the tokenizer
        swap): this scores the *objective* (DPO, GRPO, KD losses as well as NLL) on training-shaped
        batches, through the wrapped root so FSDP2 gathers its shards, summed over ranks. For a
        causal-LM objective the two agree (``val_loss`` = mean of ``heldout.token_nll``, to 1e-6 relative:
        tests/train/test_heldout.py).
        """
        if self.eval_batches is None:
            return None
        self.module.eval()
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, torch.Tensor] = {}
        units = 0.0
        for batch in self.eval_batches():
            batch = self._prepare(self._to_device(batch), use_cache=False)
            with self._autocast():
                out = self.module(batch)
            self._accumulate(out, sums, counts)
            units += float(self.objective.loss_units(batch))
        self.module.train()
        units = float(all_reduce_sum(torch.tensor([units], dtype=torch.float64, device=self.device), self.dist).item())
        if units == 0 or not sums:
            return None
        stats = self._reduce_metrics(sums, counts, units)
        res = {"val_loss": stats.pop("loss_sum"), "val_units": units}
        res.update({f"val_{k}": v for k, v in stats.items() if k != "loss"})
        if self.objective.perplexity:
            nll = res.get("val_ce", res["val_loss"])
            res["val_ppl"] = math.exp(min(nll, 50.0))
        return res

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
        """Checkpoint the current step (collective). With ``checkpoint.async_save`` the sharded state is
        still being written when this returns; :meth:`wait_for_checkpoint` (called by ``fit``) finishes it."""
        return self.checkpointer.save(self.step, self.module, self.hf_model, self.optimizer, self._trainer_state())

    def wait_for_checkpoint(self) -> Path | None:
        """Finish a checkpoint still being written in the background and move ``latest`` to it (collective)."""
        return self.checkpointer.wait()

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
        """Write the current weights as an HF model directory (collective; rank 0 writes).

        Gathers the full weights onto rank 0 (:func:`bielik.train.checkpoint.full_model_state`); the
        training checkpoints themselves stay sharded.
        """
        sd = ckpt.full_model_state(self.module)
        if self.dist.is_main:
            with staged_dir(path, overwrite=True) as tmp:
                self.hf_model.config.use_cache = True
                self.hf_model.save_pretrained(tmp, state_dict=sd, safe_serialization=True)
                self.hf_model.config.use_cache = False
                for src in extra_dirs:  # save_pretrained wrote this model's own generation config
                    copy_side_files(src, tmp, skip=("generation_config.json",))
        barrier(self.dist)
        return Path(path)

    # --- the loop -------------------------------------------------------------------------------
    def _log_eval(self, summary: dict[str, Any] | None = None, key: str = "") -> dict[str, float] | None:
        ev = self.evaluate()
        if not ev:
            return None
        self.metrics.write({"kind": "eval", "step": self.step, **ev})
        ppl = f" (ppl {ev['val_ppl']:.1f})" if "val_ppl" in ev else ""
        log.info("step %d: held-out loss %.4f%s", self.step, ev["val_loss"], ppl)
        if summary is not None:
            summary[f"{key}_val_loss"] = ev["val_loss"]
            if "val_ppl" in ev:
                summary[f"{key}_val_ppl"] = ev["val_ppl"]
        return ev

    def _train_row(self, window: list[dict[str, float]], dt: float) -> dict[str, Any]:
        rec = window[-1]
        tps = sum(r["real_tokens"] for r in window) / dt
        row = {
            "kind": "train",
            "step": self.step,
            "tokens": self.tokens,
            "loss": sum(r["loss"] for r in window) / len(window),
            "lr": rec["lr"],
            "grad_norm": rec["grad_norm"],  # the window's last step, like lr_schedule below
            "tokens_per_s": tps,
            "skipped_steps": self.nan_skipped,
            **({"lr_schedule": rec["lr_schedule"]} if "lr_schedule" in rec else {}),
        }
        if self.peak:
            row["mfu"] = tps * self.flops_per_token / (self.peak * self.dist.world_size)
        skip = set(row) | {"skipped", "real_tokens"}
        row.update({k: sum(r[k] for r in window) / len(window) for k in rec if k not in skip})
        return row

    def _at_boundary(self) -> bool:
        """Checkpoints are taken only where the batch source can resume (a rollout source: between rollouts)."""
        return bool(getattr(self.train, "at_boundary", True))

    def fit(self) -> dict[str, Any]:
        cfg = self.cfg
        self.maybe_resume()
        if hasattr(self.train, "bind_policy"):
            self.train.bind_policy(self.policy_call)
        if self.prep_cache is not None and cfg.prepare.precompute and self.step == 0:
            if not hasattr(self.train, "iter_dataset"):
                raise BielikError(
                    f"train.prepare.precompute: the batch source {type(self.train).__name__} cannot list its data set"
                )
            self.precompute(self.train.iter_dataset())
        summary: dict[str, Any] = {"start_step": self.step}
        history: list[dict[str, float]] = []
        if self.step == 0 and cfg.eval.at_start:
            self._log_eval(summary, "initial")
        window_t, window = time.perf_counter(), []
        pending_ckpt = False
        with progress("training", total=cfg.steps, unit="steps", every=0) as bar:
            bar.done = self.step
            while self.step < cfg.steps:
                window.append(self.train_step())
                if self.step % cfg.logging.every == 0 or self.step == cfg.steps:
                    if self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)
                    row = self._train_row(window, time.perf_counter() - window_t)
                    self.metrics.write(row)
                    history.append(row)
                    mfu = f" mfu {100 * row['mfu']:.1f}%" if "mfu" in row else ""
                    bar.advance(
                        len(window),
                        info=f"loss {row['loss']:.4f} lr {row['lr']:.2e} gnorm {row['grad_norm']:.2f} "
                        f"{row['tokens_per_s']:,.0f} tok/s{mfu}",
                    )
                    window_t, window = time.perf_counter(), []
                if cfg.eval.every and self.step % cfg.eval.every == 0 and self.step < cfg.steps:
                    self._log_eval()
                pending_ckpt |= bool(cfg.checkpoint.every and self.step % cfg.checkpoint.every == 0)
                if pending_ckpt and self._at_boundary():
                    self.save_checkpoint()
                    pending_ckpt = False
        self._log_eval(summary, "final")
        if self.prep_cache is not None:
            self.prep_cache.flush()
            summary["prepare_cache"] = {"hits": self.prep_cache.hits, "misses": self.prep_cache.misses}
        if (
            cfg.checkpoint.every
            and not (self.ckpt_root / ckpt.checkpoint_name(self.step)).exists()
            and self._at_boundary()
        ):
            self.wait_for_checkpoint()  # an async save of this very step may still be in flight
            if not (self.ckpt_root / ckpt.checkpoint_name(self.step)).exists():
                self.save_checkpoint()
        self.wait_for_checkpoint()  # no save in flight past fit(): `latest` names a complete checkpoint
        summary.update(
            steps=self.step,
            tokens=self.tokens,
            skipped_steps=self.nan_skipped,
            final_train_loss=history[-1]["loss"] if history else None,
            tokens_per_s=(sum(h["tokens_per_s"] for h in history) / len(history)) if history else None,
            mfu=(sum(h.get("mfu", 0.0) for h in history) / len(history)) if history and self.peak else None,
            flops_per_token=self.flops_per_token,
            peak_flops=self.peak,
            world_size=self.dist.world_size,
        )
        self.metrics.close()
        return summary
