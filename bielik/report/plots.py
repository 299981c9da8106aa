"""The report's own figures (matplotlib, Agg): training curves, DPO-P and GRPO panels, quantisation error vs size.

Figures that a stage already draws (the curation funnel, the confusion matrix, the tokenizer chart, the
Minitron importance and recovery panels, leaderboard scores) are taken from the stage's folder instead of
being drawn twice. Every figure here has a title, axis labels with units and a legend, and is returned as
PNG bytes (inlined into the HTML as a data URI).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

DPI = 100


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def to_png(fig) -> bytes:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float)) and "step" in r]
    return [p[0] for p in pts], [p[1] for p in pts]


def lr_lines(train: Sequence[dict]) -> list[tuple[str, list[float], list[float], str]]:
    """The learning-rate lines to draw: (label, steps, values, style). One line when the LR used is the
    schedule; two ("LR schedule" and "LR used (adaptive)") when the adaptive LR moved it away."""
    lx, ly = _series(train, "lr")
    if not lx:
        return []
    sx, sy = _series(train, "lr_schedule")
    if sx and any(abs(a - b) > 1e-9 * max(abs(b), 1e-30) for a, b in zip(ly, sy)):
        return [("LR schedule", sx, sy, "--"), ("LR used (adaptive)", lx, ly, "-")]
    return [("learning rate", lx, ly, "--")]


def loss_lr(
    train: Sequence[dict],
    evals: Sequence[dict],
    title: str,
    loss_label: str = "loss (nats/token)",
) -> bytes | None:
    """Train and held-out loss against the optimizer step; the learning rate on a second y axis.

    With the adaptive LR (ALR) the engine logs both ``lr_schedule`` (warm-up + cosine) and ``lr`` (the
    schedule scaled by the batch's trained-token count); both are drawn when they differ, so the adaptation
    is visible as the gap between the two.
    """
    xs, ys = _series(train, "loss")
    ex, ey = _series(evals, "val_loss")
    if not xs and not ex:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.8))
    lines = []
    if xs:
        lines += ax.plot(xs, ys, color="#1f5fa8", label="train loss")
    if ex:
        lines += ax.plot(ex, ey, "o-", color="#d9531e", label="held-out loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(loss_label)
    ax.grid(alpha=0.3)
    lr = lr_lines(train)
    if lr:
        ax2 = ax.twinx()
        for label, x, y, style in lr:
            lines += ax2.plot(
                x,
                y,
                style,
                color="#777777" if label == "LR schedule" else "#2a9d4a",
                label=label,
            )
        ax2.set_ylabel("learning rate")
        ax2.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    ax.legend(lines, [ln.get_label() for ln in lines], loc="upper right", fontsize=8)
    ax.set_title(title)
    return to_png(fig)


def panels(
    train: Sequence[dict],
    evals: Sequence[dict],
    specs: Sequence[tuple[str, list[tuple[str, str]], str]],
    title: str,
) -> bytes | None:
    """A 2-column grid of small line plots; ``specs`` = [(panel title, [(key, legend label)], y label)].

    Each key is drawn from the train rows and, as ``val_<key>`` with markers, from the held-out rows.
    Panels with no data are left out.
    """
    usable = [
        (
            t,
            [(k, lab) for k, lab in keys if _series(train, k)[0] or _series(evals, f"val_{k}")[0]],
            yl,
        )
        for t, keys, yl in specs
    ]
    usable = [u for u in usable if u[1]]
    if not usable:
        return None
    plt = _pyplot()
    ncols = 2
    nrows = (len(usable) + 1) // 2
    fig, axes = plt.subplots(nrows, ncols, figsize=(10, 3.0 * nrows + 0.5), squeeze=False)
    for ax, (ptitle, keys, ylabel) in zip(axes.flat, usable):
        for i, (key, label) in enumerate(keys):
            color = f"C{i}"
            x, y = _series(train, key)
            if x:
                ax.plot(x, y, color=color, label=f"{label} (train)")
            x, y = _series(evals, f"val_{key}")
            if x:
                ax.plot(x, y, "o--", color=color, label=f"{label} (held-out)")
        ax.set_title(ptitle, fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(usable) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    return to_png(fig)


def quant_error(rows: Sequence[dict]) -> bytes | None:
    """Mean KLD (log scale) and RMS Δp against bits per weight; one line without and one with the imatrix."""
    if not rows:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, ylabel, log in (
        (axes[0], "kld_mean", "mean KL divergence to the reference (nats/token)", True),
        (
            axes[1],
            "dp_rms_pct",
            "RMS Δp of the reference token (percentage points)",
            False,
        ),
    ):
        for imat, style, label in (
            (False, "o-", "without imatrix"),
            (True, "s--", "with imatrix"),
        ):
            pts = sorted(
                (r["bits_per_weight"], r[key], r["type"])
                for r in rows
                if bool(r.get("imatrix")) == imat and isinstance(r.get(key), (int, float))
            )
            if not pts:
                continue
            ys = [max(p[1], 1e-7) if log else p[1] for p in pts]
            ax.plot([p[0] for p in pts], ys, style, label=label)
            for (x, _, t), y in zip(pts, ys):
                # labels of the imatrix line go below its points, so the two lines' labels do not overlap
                ax.annotate(t, (x, y), textcoords="offset points", xytext=(4, -10 if imat else 4), fontsize=7)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("bits per weight")
        ax.set_ylabel(ylabel, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title("KL divergence vs size")
    axes[1].set_title("Δp vs size")
    return to_png(fig)


def bars(labels: Sequence[str], values: Sequence[float], title: str, xlabel: str) -> bytes | None:
    """Horizontal bars with their values printed (counts such as PII spans by type)."""
    if not labels:
        return None
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 0.24 * len(labels) + 1.2))
    ax.barh(list(labels)[::-1], list(values)[::-1], color="#3b6ea8", label=xlabel)
    for i, v in enumerate(list(values)[::-1]):
        ax.text(v, i, f" {v:,}", va="center", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_xlim(0, max(values) * 1.25 + 1)
    if all(float(v).is_integer() for v in values):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    return to_png(fig)
