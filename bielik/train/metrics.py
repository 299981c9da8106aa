"""Training metrics: ``metrics.jsonl`` (always), TensorBoard / W&B (only when asked), and MFU.

MFU = achieved model FLOP/s ÷ peak FLOP/s, with model FLOPs per token from PaLM (Chowdhery et al.
2022, App. B): 6·N + 12·L·d·T, where N counts the parameters that take part in matmuls (all but
the input embedding), L is the number of layers, d the model width and T the sequence length (the
attention score and value products, forward + backward).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bielik.log import get_logger

log = get_logger(__name__)


def flops_per_token(model: nn.Module, seq_len: int) -> float:
    from bielik.model.factory import ParamCount

    pc = ParamCount.of(model)
    matmul_params = pc.total - pc.embedding + (pc.embedding if pc.lm_head == 0 else 0)  # a tied head still multiplies
    cfg = model.config
    return 6.0 * matmul_params + 12.0 * cfg.num_hidden_layers * cfg.hidden_size * seq_len


def peak_cache_path() -> Path:
    return Path.home() / ".cache" / "bielik" / "peak_flops.json"


def cached_peak(device: torch.device, dtype: torch.dtype) -> float | None:
    """Peak FLOP/s for this device kind and dtype measured earlier by ``bielik bench peak``."""
    path = peak_cache_path()
    if not path.is_file():
        return None
    try:
        table = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return table.get(f"{device.type}:{str(dtype).removeprefix('torch.')}")


class MetricsWriter:
    """Append-only JSON lines, one record per event, flushed as written (rank 0 only)."""

    def __init__(
        self,
        out_dir: Path,
        enabled: bool,
        tensorboard: bool = False,
        wandb: bool = False,
        wandb_project: str = "bielik",
        wandb_mode: str = "offline",
        config: dict[str, Any] | None = None,
    ):
        self.enabled = enabled
        self._fh = None
        self._tb = None
        self._wandb = None
        if not enabled:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        self._fh = open(out_dir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.warning(
                    "logging.tensorboard=true but tensorboard is not installed: pip install "
                    "'bielik-toolkit[tensorboard]'"
                )
            else:
                self._tb = SummaryWriter(str(out_dir / "tensorboard"))
        if wandb:
            try:
                import wandb as wb
            except ImportError:
                log.warning("logging.wandb=true but wandb is not installed: pip install 'bielik-toolkit[wandb]'")
            else:
                self._wandb = wb.init(project=wandb_project, mode=wandb_mode, dir=str(out_dir), config=config)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()
        step = record.get("step", 0)
        scalars = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(f"{record.get('kind', 'train')}/{k}", v, step)
        if self._wandb is not None:
            self._wandb.log({f"{record.get('kind', 'train')}/{k}": v for k, v in scalars.items()}, step=step)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
