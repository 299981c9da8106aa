"""``bielik quant imatrix``: an importance matrix from Polish-English calibration text (llama-imatrix).

For every weight matrix W (rows = output features) that multiplies activations x, llama.cpp's
importance matrix is the mean over calibration tokens of x_j² per input column j:

    I_j = (1/T) Σ_t x_{t,j}²

Quantisers then minimise the importance-weighted error Σ_j I_j (w_ij - q(w_ij))² row by row instead
of the plain squared error (llama.cpp PR #4861), which is what makes 2-3-bit types usable. The
calibration text is :func:`bielik.quant.calibration.select_text` on the calibration side of the
held-out split, mixed by language (Bielik: Polish and English).
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field

from bielik.artifacts import atomic_write_text, staged_dir, write_stage_record
from bielik.config import StageConfig
from bielik.errors import BielikError
from bielik.log import get_logger
from bielik.quant.calibration import TextConfig, select_text

log = get_logger(__name__)


class ImatrixConfig(StageConfig):
    model: str = Field(..., description="reference GGUF (f32/f16/bf16): a file or an export stage directory")
    output: str = "runs/imatrix"
    text: TextConfig = Field(default_factory=TextConfig)
    ctx: int = Field(512, ge=16, description="tokens per chunk")
    chunks: int | None = Field(None, ge=1, description="at most this many chunks (default: all the text gives)")
    threads: int = Field(0, ge=0, description="0: OMP_NUM_THREADS or all cores")
    overwrite: bool = False


_PPL = re.compile(r"\[(\d+)\]([0-9.]+|nan|inf)")


def compute_imatrix(cfg: ImatrixConfig) -> Path:
    """Run ``llama-imatrix`` on the calibration text; write ``<output>/imatrix.gguf``; return its path."""
    from bielik.quant.gguf_file import read_gguf, resolve_gguf
    from bielik.quant.toolchain import default_threads, run_tool

    model = resolve_gguf(cfg.model, "model")
    read_gguf(model)
    text, per_lang = select_text(cfg.text, heldout=False)
    with staged_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
        atomic_write_text(tmp / "calibration.txt", text)
        args = ["-m", str(model), "-f", str(tmp / "calibration.txt"), "-o", str(tmp / "imatrix.gguf"),
                "-c", str(cfg.ctx), "-b", str(cfg.ctx), "-t", str(cfg.threads or default_threads()),
                "--output-frequency", str(10**9)]  # 0 divides by zero in llama-imatrix; save only at the end
        if cfg.chunks:
            args += ["--chunks", str(cfg.chunks)]
        log.info("computing the importance matrix of %s on %s characters (%s)", model.name, f"{len(text):,}",
                 ", ".join(f"{k} {v:,}" for k, v in per_lang.items()))
        output = run_tool("llama-imatrix", args, f"computing the imatrix of {model}", log_file=tmp / "imatrix.log")
        if not (tmp / "imatrix.gguf").is_file():
            raise BielikError(f"llama-imatrix wrote no imatrix for {model}:\n" + "\n".join(output.splitlines()[-8:]))
        ppl = [float(v) for _, v in _PPL.findall(output)]
        chunks = int(_PPL.findall(output)[-1][0]) if ppl else None
        entries = imatrix_entries(tmp / "imatrix.gguf")
        metrics = {"model": str(model), "characters": per_lang, "ctx": cfg.ctx, "chunks": chunks,
                   "tokens": chunks * cfg.ctx if chunks else None, "calibration_ppl": ppl[-1] if ppl else None,
                   "tensors": len(entries)}
        write_stage_record(tmp, "quant.imatrix", cfg, inputs={"model": model}, metrics=metrics)
    return Path(cfg.output) / "imatrix.gguf"


def imatrix_entries(path: str | Path) -> dict[str, tuple]:
    """Read an imatrix GGUF: ``{weight name: (in_sum2 array, counts array)}``.

    llama-imatrix stores, per weight, ``<name>.in_sum2`` (Σ_t x_j², per expert for MoE) and
    ``<name>.counts`` (tokens seen); the importance is their ratio.
    """
    path = Path(path)
    sums, counts = {}, {}
    for t in _reader(path).tensors:
        if t.name.endswith(".in_sum2"):
            sums[t.name[: -len(".in_sum2")]] = t.data.copy()
        elif t.name.endswith(".counts"):
            counts[t.name[: -len(".counts")]] = t.data.copy()
    if not sums:
        raise BielikError(f"{path} holds no imatrix data (no *.in_sum2 tensors)")
    return {name: (sums[name], counts.get(name)) for name in sums}


def _reader(path: Path):
    from gguf import GGUFReader

    if not path.is_file():
        raise BielikError(f"imatrix file {path} does not exist")
    with open(path, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise BielikError(f"{path} is not a GGUF imatrix (legacy .dat imatrices: convert with llama-imatrix --in-file)")
    try:
        return GGUFReader(path, "r")
    except Exception as exc:  # noqa: BLE001
        raise BielikError(f"{path} is a damaged or truncated imatrix file ({type(exc).__name__}: {exc})") from None
