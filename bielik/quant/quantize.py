"""``bielik quant quantize``: GGUF weight-only quantisation with ``llama-quantize``, with and without an imatrix.

The types are the ones Bielik publishes (RECIPE.md §8): Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q3_K_M, Q2_K,
and IQ2_XXS (≈ 2.06 bits per weight), which llama.cpp only produces with an importance matrix.
K-quants pack 256-value super-blocks, so tensors whose rows are not a multiple of 256 fall back to
other types (llama-quantize decides; the per-file tensor types are recorded in ``metrics.json``).
Given an imatrix, the stage writes each type twice (``model-<TYPE>.gguf`` and
``model-<TYPE>-imatrix.gguf``) unless ``without_imatrix=false``: the comparison needs both.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from bielik.artifacts import staged_dir, write_stage_record
from bielik.config import StageConfig
from bielik.log import get_logger
from bielik.progress import progress

log = get_logger(__name__)

DEFAULT_TYPES = ["Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K"]
KNOWN_TYPES = {
    "Q8_0",
    "Q6_K",
    "Q5_K_M",
    "Q5_K_S",
    "Q5_0",
    "Q5_1",
    "Q4_K_M",
    "Q4_K_S",
    "Q4_0",
    "Q4_1",
    "Q3_K_L",
    "Q3_K_M",
    "Q3_K_S",
    "Q2_K",
    "Q2_K_S",
    "IQ4_XS",
    "IQ4_NL",
    "IQ3_M",
    "IQ3_S",
    "IQ3_XS",
    "IQ3_XXS",
    "IQ2_M",
    "IQ2_S",
    "IQ2_XS",
    "IQ2_XXS",
    "IQ1_M",
    "IQ1_S",
    "TQ1_0",
    "TQ2_0",
    "F16",
    "BF16",
    "F32",
}
NEEDS_IMATRIX = {"IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_S", "IQ1_M", "Q2_K_S"}


class QuantizeConfig(StageConfig):
    model: str = Field(..., description="reference GGUF (f32/f16/bf16): a file or an export stage directory")
    output: str = "runs/quantized"
    types: list[str] = Field(default_factory=lambda: list(DEFAULT_TYPES))
    imatrix: str | None = Field(None, description="imatrix.gguf or an imatrix stage directory")
    without_imatrix: bool = Field(True, description="with an imatrix, also write the plain variants")
    threads: int = Field(0, ge=0, description="0: OMP_NUM_THREADS or all cores")
    overwrite: bool = False

    @field_validator("types")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        v = [t.upper() for t in v]
        bad = [t for t in v if t not in KNOWN_TYPES]
        if bad:
            raise ValueError(f"unknown quantisation type(s) {bad}; known: {', '.join(sorted(KNOWN_TYPES))}")
        if not v:
            raise ValueError("name at least one type")
        return v

    @model_validator(mode="after")
    def _imatrix_types(self) -> QuantizeConfig:
        need = sorted(set(self.types) & NEEDS_IMATRIX)
        if need and self.imatrix is None:
            raise ValueError(f"types {need} need an importance matrix (set imatrix=...)")
        return self


def quantized_name(qtype: str, imatrix: bool) -> str:
    return f"model-{qtype}{'-imatrix' if imatrix else ''}.gguf"


def quantize(cfg: QuantizeConfig) -> dict:
    """Write every requested variant into ``cfg.output``; return ``metrics.json``'s content."""
    from bielik.quant.gguf_file import read_gguf, resolve_gguf
    from bielik.quant.imatrix import imatrix_entries
    from bielik.quant.toolchain import default_threads, run_tool

    model = resolve_gguf(cfg.model, "model")
    ref = read_gguf(model)
    imatrix = None
    if cfg.imatrix is not None:
        p = Path(cfg.imatrix)
        imatrix = p / "imatrix.gguf" if p.is_dir() else p
        imatrix_entries(imatrix)  # validates before any work
    jobs = [(t, True) for t in cfg.types] if imatrix else []
    if imatrix is None or cfg.without_imatrix:
        jobs = [(t, False) for t in cfg.types if t not in NEEDS_IMATRIX] + jobs
    threads = str(cfg.threads or default_threads())
    files = []
    inputs = {"model": model, **({"imatrix": imatrix} if imatrix else {})}
    with (
        staged_dir(cfg.output, overwrite=cfg.overwrite) as tmp,
        progress("quantize", len(jobs), "files", every=1) as bar,
    ):
        for qtype, with_imatrix in jobs:
            name = quantized_name(qtype, with_imatrix)
            args = (["--imatrix", str(imatrix)] if with_imatrix else []) + [str(model), str(tmp / name), qtype, threads]
            run_tool("llama-quantize", args, f"quantising {model} to {qtype}", log_file=tmp / "quantize.log")
            info = read_gguf(tmp / name)
            files.append(
                {
                    "file": name,
                    "type": qtype,
                    "imatrix": with_imatrix,
                    "bytes": info.file_bytes,
                    "gib": info.gib,
                    "bits_per_weight": info.bits_per_weight,
                    "tensor_types": info.tensor_types,
                }
            )
            bar.advance(1, info=f"{name} {info.bits_per_weight:.2f} bpw")
        metrics = {
            "reference": str(model),
            "reference_bits_per_weight": ref.bits_per_weight,
            "imatrix": str(imatrix) if imatrix else None,
            "files": files,
        }
        write_stage_record(tmp, "quant.quantize", cfg, inputs=inputs, metrics=metrics)
    return metrics
