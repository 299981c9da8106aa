"""``bielik quant imatrix``: an importance matrix from Polish-English calibration text (llama-imatrix).

For every weight matrix W (rows = output features) that multiplies activations x, llama.cpp's
importance matrix is the mean over calibration tokens of x_j² per input column j:

    I_j = (1/T) Σ_t x_{t,j}²

Quantisers then minimise the importance-weighted error Σ_j I_j (w_ij - q(w_ij))² row by row instead
of the plain squared error (llama.cpp PR #4861), which is what makes 2-3-bit types usable. The
calibration text is :func:`bielik.quant.calibration.select_text` on the calibration side of the
held-out split, mixed by language (Bielik: Polish and English).

Two methods write the same file (llama.cpp's GGUF imatrix: ``<weight>.in_sum2`` = Σ_t x_t², and
``<weight>.counts`` = T): ``llama.cpp`` runs ``llama-imatrix`` on the GGUF reference; ``torch`` runs
the HF checkpoint with forward pre-hooks on every ``nn.Linear`` of the decoder blocks (the shared
activation-statistics module :mod:`bielik.model.activations`), on the same
token windows (the text is tokenised once, cut into ``ctx``-token windows, each starting with BOS
when the tokenizer adds one — exactly what ``llama-imatrix`` does). The torch method needs no
llama.cpp build and runs wherever the model trains (GPU included); the two agree to float precision
(tests/quant/test_llama_cpp.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from bielik.artifacts import atomic_write_text, staged_dir, write_stage_record
from bielik.config import StageConfig
from bielik.errors import BielikError
from bielik.log import get_logger
from bielik.model.activations import Hooks, SumSquares
from bielik.quant.calibration import TextConfig, select_text

log = get_logger(__name__)


class ImatrixConfig(StageConfig):
    model: str = Field(
        ..., description="llama.cpp: reference GGUF (file or export stage dir); torch: HF model directory"
    )
    method: Literal["llama.cpp", "torch"] = "llama.cpp"
    output: str = "runs/imatrix"
    text: TextConfig = Field(default_factory=TextConfig)
    ctx: int = Field(512, ge=16, description="tokens per chunk")
    chunks: int | None = Field(None, ge=1, description="at most this many chunks (default: all the text gives)")
    threads: int = Field(0, ge=0, description="0: OMP_NUM_THREADS or all cores")
    overwrite: bool = False


_PPL = re.compile(r"\[(\d+)\]([0-9.]+|nan|inf)")


def compute_imatrix(cfg: ImatrixConfig) -> Path:
    """Compute the importance matrix on the calibration text; write ``<output>/imatrix.gguf``; return its path."""
    if cfg.method == "torch":
        return _torch_stage(cfg)
    from bielik.quant.gguf_file import read_gguf, resolve_gguf
    from bielik.quant.toolchain import default_threads, run_tool

    model = resolve_gguf(cfg.model, "model")
    read_gguf(model)
    text, per_lang = select_text(cfg.text, heldout=False)
    with staged_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
        atomic_write_text(tmp / "calibration.txt", text)
        args = [
            "-m",
            str(model),
            "-f",
            str(tmp / "calibration.txt"),
            "-o",
            str(tmp / "imatrix.gguf"),
            "-c",
            str(cfg.ctx),
            "-b",
            str(cfg.ctx),
            "-t",
            str(cfg.threads or default_threads()),
            "--output-frequency",
            str(10**9),
        ]  # 0 divides by zero in llama-imatrix; save only at the end
        if cfg.chunks:
            args += ["--chunks", str(cfg.chunks)]
        log.info(
            "computing the importance matrix of %s on %s characters (%s)",
            model.name,
            f"{len(text):,}",
            ", ".join(f"{k} {v:,}" for k, v in per_lang.items()),
        )
        output = run_tool("llama-imatrix", args, f"computing the imatrix of {model}", log_file=tmp / "imatrix.log")
        if not (tmp / "imatrix.gguf").is_file():
            raise BielikError(f"llama-imatrix wrote no imatrix for {model}:\n" + "\n".join(output.splitlines()[-8:]))
        # the chunk count comes from the file: llama.cpp's logger may drop its last lines at exit, so the log's
        # running perplexity is only the last value it printed
        ppl = [float(v) for _, v in _PPL.findall(output)]
        entries = imatrix_entries(tmp / "imatrix.gguf")
        chunks = _chunk_count(tmp / "imatrix.gguf")
        metrics = {
            "model": str(model),
            "method": "llama.cpp",
            "characters": per_lang,
            "ctx": cfg.ctx,
            "chunks": chunks,
            "tokens": chunks * cfg.ctx,
            "calibration_ppl_last_logged": ppl[-1] if ppl else None,
            "tensors": len(entries),
        }
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


def _chunk_count(path: Path) -> int:
    field = _reader(path).fields.get("imatrix.chunk_count")
    return int(field.parts[field.data[0]][0]) if field is not None else 0


def _reader(path: Path):
    from gguf import GGUFReader

    if not path.is_file():
        raise BielikError(f"imatrix file {path} does not exist")
    with open(path, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise BielikError(
                f"{path} is not a GGUF imatrix (legacy .dat imatrices: convert with llama-imatrix --in-file)"
            )
    try:
        return GGUFReader(path, "r")
    except Exception as exc:  # noqa: BLE001
        raise BielikError(f"{path} is a damaged or truncated imatrix file ({type(exc).__name__}: {exc})") from None


# ---------------------------------------------------------------------------------------------
# PyTorch forward hooks


GGUF_ARCH = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2"}
"""HF ``model_type`` -> llama.cpp architecture (what ``convert_hf_to_gguf.py`` writes for it)."""


def torch_imatrix(
    model, token_ids: list[int], ctx: int, bos_id: int | None, chunks: int | None = None
) -> tuple[dict, int]:
    """Σ x² per input column of every decoder-block linear layer, over ``ctx``-token windows.

    Returns ``({gguf weight name: (sum2 float64 [in_features], tokens)}, windows)``. Windows follow
    ``llama-imatrix``: ``len(ids) // ctx`` of them, the first token of each replaced by ``bos_id``
    when given.
    """
    import gguf
    import torch

    arch = GGUF_ARCH.get(model.config.model_type)
    if arch is None:
        raise BielikError(
            f"imatrix (torch): model type {model.config.model_type!r} not supported ({', '.join(GGUF_ARCH)})"
        )
    names = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch.upper()), model.config.num_hidden_layers)
    n = len(token_ids) // ctx
    if chunks:
        n = min(n, chunks)
    if n == 0:
        raise BielikError(
            f"imatrix: the calibration text gives {len(token_ids)} tokens, fewer than one window of ctx={ctx}"
        )
    from bielik.progress import progress

    stats: dict[str, SumSquares] = {}
    with Hooks() as hooks:
        for mod_name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and ".layers." in f".{mod_name}":
                gguf_name = names.get_name(mod_name)
                if gguf_name is None:
                    raise BielikError(f"imatrix (torch): no GGUF name for module {mod_name}")
                stats[gguf_name + ".weight"] = stat = SumSquares()
                hooks.input(module, stat.update)
        with torch.inference_mode(), progress("imatrix (torch)", n, "windows", every=10) as bar:
            for c in range(n):
                ids = torch.tensor(token_ids[c * ctx : (c + 1) * ctx], dtype=torch.long)[None]
                if bos_id is not None:
                    ids[0, 0] = bos_id
                model(input_ids=ids, use_cache=False)
                bar.advance(1)
    return {k: (st.sum.cpu().numpy(), st.count) for k, st in stats.items() if st.sum is not None}, n


def write_imatrix(path: Path, entries: dict, arch: str, chunk_count: int, chunk_size: int, dataset: str) -> None:
    """Write entries in llama.cpp's GGUF imatrix format (what ``llama-quantize --imatrix`` reads)."""
    import gguf

    w = gguf.GGUFWriter(path, arch)
    w.add_type("imatrix")
    w.add_array("imatrix.datasets", [dataset])
    w.add_uint32("imatrix.chunk_count", chunk_count)
    w.add_uint32("imatrix.chunk_size", chunk_size)
    for name in sorted(entries):
        sum2, count = entries[name]
        w.add_tensor(f"{name}.in_sum2", np.asarray(sum2, dtype=np.float32)[None, :])
        w.add_tensor(f"{name}.counts", np.array([[count]], dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _torch_stage(cfg: ImatrixConfig) -> Path:
    from bielik.model.loading import load_hf_model
    from bielik.tokenizer.formats import load_hf_tokenizer

    model_dir = Path(cfg.model)
    model = load_hf_model(model_dir).eval()  # BielikError when not an HF directory
    tok = load_hf_tokenizer(model_dir)
    text, per_lang = select_text(cfg.text, heldout=False)
    ids = tok(text).input_ids
    add_bos = tok.bos_token_id is not None and len(ids) > 0 and ids[0] == tok.bos_token_id
    log.info("computing the importance matrix of %s with PyTorch hooks on %s tokens", model_dir, f"{len(ids):,}")
    entries, windows = torch_imatrix(model, ids, cfg.ctx, tok.bos_token_id if add_bos else None, cfg.chunks)
    with staged_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
        atomic_write_text(tmp / "calibration.txt", text)
        write_imatrix(
            tmp / "imatrix.gguf", entries, GGUF_ARCH[model.config.model_type], windows, cfg.ctx, "calibration.txt"
        )
        metrics = {
            "model": str(model_dir),
            "method": "torch",
            "characters": per_lang,
            "ctx": cfg.ctx,
            "chunks": windows,
            "tokens": windows * cfg.ctx,
            "tensors": len(entries),
        }
        write_stage_record(tmp, "quant.imatrix", cfg, inputs={"model": model_dir}, metrics=metrics)
    return Path(cfg.output) / "imatrix.gguf"
