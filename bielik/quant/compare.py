"""``bielik quant compare``: quantised GGUFs against their reference on held-out text (RECIPE.md §8).

For every scored position t (the second half of each ``ctx``-token window, as ``llama-perplexity``
scores them) with reference distribution P_t, quantised distribution Q_t and true next token y_t:

    PPL        = exp( -(1/T) Σ_t log Q_t(y_t) )              ΔPPL = PPL(Q) - PPL(ref)
    KLD_t      = Σ_v P_t(v) (log P_t(v) - log Q_t(v))       mean, median, p90, p95, p99, max
    Δp_t       = Q_t(y_t) - P_t(y_t)                        mean Δp and RMS Δp = sqrt(mean Δp²), in %
    same top   = (1/T) Σ_t [argmax P_t = argmax Q_t]        in %

(the Bielik 7B v0.1 report's Table 8 quantities; llama.cpp's ``--kl-divergence`` defines them the same
way). The log-probabilities come from ``llama-perplexity --kl-divergence-base``, which runs a GGUF
on the tokenised text and saves, per scored position, the log-softmax over the vocabulary in 16 bits
(:func:`read_logprob_file`); bielik computes the statistics itself from the reference's and each
model's file, so the per-token values (percentiles, the plot) are ours to report. As in llama.cpp,
KLD sums over the vocabulary entries with log P > -16 (the file stores nothing finer below that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field

from bielik.artifacts import atomic_write_text, staged_dir, write_json, write_stage_record
from bielik.config import StageConfig
from bielik.errors import BielikError
from bielik.log import get_logger
from bielik.progress import progress
from bielik.quant.calibration import TextConfig, select_text

log = get_logger(__name__)

LOGPROB_FLOOR = -16.0


# ---------------------------------------------------------------------------------------------
# The statistics (pure numpy)


def token_stats(ref_logp: np.ndarray, q_logp: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Per-position statistics of two ``[T, V]`` log-probability arrays and the ``[T]`` true tokens."""
    ref_logp = np.asarray(ref_logp, dtype=np.float64)
    q_logp = np.asarray(q_logp, dtype=np.float64)
    rows = np.arange(len(targets))
    p_ref = np.exp(ref_logp)
    keep = ref_logp > LOGPROB_FLOOR
    kld = np.where(keep, p_ref * (ref_logp - q_logp), 0.0).sum(axis=1)
    nll_ref = -ref_logp[rows, targets]
    nll_q = -q_logp[rows, targets]
    return {
        "nll_ref": nll_ref,
        "nll_q": nll_q,
        "kld": kld,
        "dp": np.exp(-nll_q) - np.exp(-nll_ref),
        "same_top": (ref_logp.argmax(axis=1) == q_logp.argmax(axis=1)),
    }


def summarise(stats: dict[str, np.ndarray]) -> dict[str, float]:
    """Table 8 numbers from per-position statistics (see the module docstring)."""
    nll_ref, nll_q, kld, dp = stats["nll_ref"], stats["nll_q"], stats["kld"], stats["dp"]
    n = len(kld)
    if n == 0:
        raise BielikError("no scored positions to compare (the text is shorter than two context windows)")
    ppl_ref, ppl = math.exp(nll_ref.mean()), math.exp(nll_q.mean())
    return {
        "tokens": n,
        "ppl": ppl,
        "ppl_ref": ppl_ref,
        "delta_ppl": ppl - ppl_ref,
        "ln_ppl_ratio": float(nll_q.mean() - nll_ref.mean()),
        "kld_mean": float(kld.mean()),
        "kld_stderr": float(kld.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0,
        "kld_median": float(np.median(kld)),
        "kld_p90": float(np.quantile(kld, 0.90)),
        "kld_p95": float(np.quantile(kld, 0.95)),
        "kld_p99": float(np.quantile(kld, 0.99)),
        "kld_max": float(kld.max()),
        "dp_mean_pct": float(100 * dp.mean()),
        "dp_rms_pct": float(100 * math.sqrt((dp**2).mean())),
        "same_top_pct": float(100 * stats["same_top"].mean()),
    }


# ---------------------------------------------------------------------------------------------
# llama-perplexity's log-probability file


@dataclass
class LogprobFile:
    """``llama-perplexity --kl-divergence-base`` output, memory-mapped.

    Layout (tools/perplexity/perplexity.cpp): ``b"_logits_"``, int32 n_ctx, int32 n_vocab, int32
    n_chunk, int32 tokens[n_chunk * n_ctx], then for each chunk and each of its
    ``n_ctx - 1 - n_ctx // 2`` scored positions a record of ``nv = 2 * ceil(n_vocab / 2) + 4``
    uint16: float32 scale, float32 min_log_prob, then n_vocab uint16 q with
    ``log p = scale * q + min_log_prob``.
    """

    path: Path
    n_ctx: int
    n_vocab: int
    n_chunk: int
    tokens: np.ndarray  # [n_chunk, n_ctx] int32
    records: np.ndarray  # [n_chunk, n_scored, nv] uint16

    @property
    def first(self) -> int:
        return self.n_ctx // 2

    def targets(self, chunk: int) -> np.ndarray:
        """True next tokens of the scored positions of one chunk."""
        return self.tokens[chunk, self.first + 1 :].astype(np.int64)

    def logprobs(self, chunk: int) -> np.ndarray:
        """``[n_scored, n_vocab]`` float32 log-probabilities of one chunk."""
        rec = self.records[chunk]
        head = np.ascontiguousarray(rec[:, :4]).view(np.float32)  # [n_scored, 2]: scale, min_log_prob
        return rec[:, 4 : 4 + self.n_vocab].astype(np.float32) * head[:, :1] + head[:, 1:2]


def read_logprob_file(path: str | Path) -> LogprobFile:
    path = Path(path)
    if not path.is_file():
        raise BielikError(f"log-probability file {path} does not exist")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(20)
    if len(head) < 20 or head[:8] != b"_logits_":
        raise BielikError(f"{path} is not a llama-perplexity log-probability file (no _logits_ header)")
    n_ctx, n_vocab, n_chunk = (int(x) for x in np.frombuffer(head[8:20], dtype=np.int32))
    if n_ctx < 2 or n_vocab < 1 or n_chunk < 1:
        raise BielikError(f"{path}: bad header (n_ctx={n_ctx}, n_vocab={n_vocab}, n_chunk={n_chunk})")
    nv = 2 * ((n_vocab + 1) // 2) + 4
    n_scored = n_ctx - 1 - n_ctx // 2
    expected = 20 + 4 * n_chunk * n_ctx + 2 * n_chunk * n_scored * nv
    if size != expected:
        raise BielikError(f"{path} is truncated or damaged: {size:,} bytes, the header implies {expected:,}")
    tokens = np.memmap(path, dtype=np.int32, mode="r", offset=20, shape=(n_chunk, n_ctx))
    records = np.memmap(path, dtype=np.uint16, mode="r", offset=20 + 4 * n_chunk * n_ctx, shape=(n_chunk, n_scored, nv))
    return LogprobFile(path, n_ctx, n_vocab, n_chunk, tokens, records)


def compare_files(ref: LogprobFile, other: LogprobFile) -> dict[str, float]:
    """:func:`summarise` of two log-probability files of the same text."""
    if (ref.n_ctx, ref.n_vocab, ref.n_chunk) != (other.n_ctx, other.n_vocab, other.n_chunk) or not np.array_equal(
        ref.tokens, other.tokens
    ):
        raise BielikError(
            f"{ref.path} and {other.path} were not computed on the same tokens (different tokenizer, text or ctx)"
        )
    parts = [token_stats(ref.logprobs(c), other.logprobs(c), ref.targets(c)) for c in range(ref.n_chunk)]
    return summarise({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})


# ---------------------------------------------------------------------------------------------
# The stage


class CompareConfig(StageConfig):
    reference: str = Field(..., description="reference GGUF (f32/f16/bf16): a file or an export stage directory")
    models: list[str] = Field(
        ..., min_length=1, description="GGUF files or directories of them (e.g. a quantize stage)"
    )
    output: str = "runs/compare"
    text: TextConfig = Field(
        default_factory=lambda: TextConfig(mix={"pl": 1.0}, chars=60_000),
        description="held-out text (the documents imatrix never sees)",
    )
    ctx: int = Field(256, ge=16, description="tokens per window; the second half of each window is scored")
    chunks: int | None = Field(None, ge=1, description="at most this many windows")
    threads: int = Field(0, ge=0, description="0: OMP_NUM_THREADS or all cores")
    overwrite: bool = False


def _logprobs(model: Path, text_file: Path, out: Path, cfg: CompareConfig, log_file: Path) -> LogprobFile:
    from bielik.quant.toolchain import default_threads, run_tool

    args = [
        "-m",
        str(model),
        "-f",
        str(text_file),
        "--kl-divergence-base",
        str(out),
        "-c",
        str(cfg.ctx),
        "-b",
        str(cfg.ctx),
        "-t",
        str(cfg.threads or default_threads()),
    ]
    if cfg.chunks:
        args += ["--chunks", str(cfg.chunks)]
    output = run_tool("llama-perplexity", args, f"scoring {model} on the held-out text", log_file=log_file)
    if "you need at least" in output or not out.is_file():
        raise BielikError(
            f"the held-out text is too short for ctx={cfg.ctx}: llama-perplexity needs at least {2 * cfg.ctx} tokens "
            f"(raise text.chars or lower ctx)"
        )
    return read_logprob_file(out)


def _model_files(paths: list[str]) -> list[Path]:
    """GGUF files, and the ``*.gguf`` files of the folders, given as ``models``."""
    from bielik.data.corpus import expand_inputs

    return expand_inputs(paths, (".gguf",), what="models")


def _describe(info) -> dict:
    return {
        "type": info.type_name,
        "imatrix": "quantize.imatrix.file" in info.metadata,
        "gib": info.gib,
        "file_bytes": info.file_bytes,
        "bits_per_weight": info.bits_per_weight,
    }


def compare(cfg: CompareConfig) -> dict:
    """Score the reference and every model on held-out text; write the table, JSON and plot."""
    from bielik.quant.gguf_file import read_gguf, resolve_gguf

    reference = resolve_gguf(cfg.reference, "reference")
    ref_info = read_gguf(reference)
    models = _model_files(cfg.models)
    infos = [read_gguf(m) for m in models]  # fail on a damaged file before hours of scoring
    text, per_lang = select_text(cfg.text, heldout=True)
    rows = []
    with (
        staged_dir(cfg.output, overwrite=cfg.overwrite) as tmp,
        progress("compare", len(models) + 1, "models", every=1) as bar,
    ):
        text_file = tmp / "heldout.txt"
        atomic_write_text(text_file, text)
        ref_lp = _logprobs(reference, text_file, tmp / ".reference.logprobs", cfg, tmp / "perplexity.log")
        bar.advance(1, info=f"reference {reference.name}")
        base = {"model": reference.name, **_describe(ref_info)}
        for model, info in zip(models, infos):
            lp_path = tmp / ".model.logprobs"
            lp = _logprobs(model, text_file, lp_path, cfg, tmp / "perplexity.log")
            row = {"model": model.name, **_describe(info), **compare_files(ref_lp, lp)}
            del lp
            lp_path.unlink()
            rows.append(row)
            bar.advance(1, info=f"{model.name}: KLD {row['kld_mean']:.4f}")
        del ref_lp
        (tmp / ".reference.logprobs").unlink()
        rows.sort(key=lambda r: (-r["bits_per_weight"], r["imatrix"]))
        result = {
            "reference": {**base, "ppl": rows[0]["ppl_ref"]},
            "text": {"characters": per_lang, "ctx": cfg.ctx},
            "rows": rows,
        }
        write_json(tmp / "compare.json", result)
        atomic_write_text(tmp / "compare.md", markdown_table(result))
        plot_kld(rows, tmp / "kld_vs_bpw.png")
        write_stage_record(
            tmp,
            "quant.compare",
            cfg,
            inputs={"reference": reference, **{f"model{i}": m for i, m in enumerate(models)}},
            metrics=result,
        )
    return result


def markdown_table(result: dict) -> str:
    """``compare.md``: the report's table of this stage (:func:`bielik.report.tables.compare`), as Markdown."""
    from bielik.report.render import table_markdown
    from bielik.report.tables import compare as compare_tables

    return "".join(table_markdown(t) for t in compare_tables(result))


def plot_kld(rows: list[dict], path: Path) -> None:
    """Mean KLD against bits per weight, one line with and one without the imatrix (log y)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=120)
    for imat, style, label in ((False, "o-", "without imatrix"), (True, "s--", "with imatrix")):
        pts = sorted((r["bits_per_weight"], max(r["kld_mean"], 1e-7), r["type"]) for r in rows if r["imatrix"] == imat)
        if not pts:
            continue
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label)
        for x, y, t in pts:
            ax.annotate(t, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_yscale("log")
    ax.set_xlabel("bits per weight")
    ax.set_ylabel("mean KL divergence to the reference (nats)")
    ax.set_title("Quantisation error vs size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
