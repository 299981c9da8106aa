"""Report figures of the compression stages (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from bielik.compress.importance import Importance


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _sorted_share(scores: torch.Tensor) -> torch.Tensor:
    """Scores sorted high to low and divided by their maximum (a pruning curve: keep the left part)."""
    s = scores.double().sort(descending=True).values
    return s / s[0].clamp_min(1e-30)


def plot_importance(imp: Importance, path: str | Path) -> None:
    """Four panels: Block Influence per layer, head importance per layer, sorted hidden and FFN scores."""
    plt = _pyplot()
    fig, ax = plt.subplots(2, 2, figsize=(11, 7.5))
    bi = imp.block_influence.numpy()
    ax[0, 0].bar(range(len(bi)), bi, color="#4a7ebb")
    ax[0, 0].set(title="Block Influence 1 − E[cos(x_in, x_out)]", xlabel="layer", ylabel="BI")
    heads = torch.stack(imp.heads).numpy()
    im = ax[0, 1].imshow(heads.T, aspect="auto", origin="lower", cmap="viridis")
    ax[0, 1].set(title="attention-head importance", xlabel="layer", ylabel="head")
    fig.colorbar(im, ax=ax[0, 1])
    ax[1, 0].plot(_sorted_share(imp.hidden).numpy(), color="#bb4a4a")
    ax[1, 0].set(title="hidden channels (sorted, / max)", xlabel="rank", ylabel="relative importance")
    for i, f in enumerate(imp.ffn):
        ax[1, 1].plot(_sorted_share(f).numpy(), color=plt.cm.viridis(i / max(1, len(imp.ffn) - 1)), lw=0.8)
    ax[1, 1].set(
        title="FFN neurons per layer (sorted, / max; dark = early)", xlabel="rank", ylabel="relative importance"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_recovery(
    curves: dict[str, list[tuple[int, float]]],
    reference: dict[str, float],
    path: str | Path,
    ylabel: str = "held-out CE (nats/token)",
) -> None:
    """Held-out loss against training step for each run, with horizontal reference lines (the teacher)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, pts in curves.items():
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=name)
    for name, value in reference.items():
        ax.axhline(value, ls="--", color="gray", lw=1)
        ax.annotate(name, (0, value), textcoords="offset points", xytext=(4, 4), color="gray")
    ax.set(xlabel="step", ylabel=ylabel, title="recovery after pruning")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
