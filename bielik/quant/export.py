"""``bielik quant export``: an HF checkpoint to a GGUF file (f32/f16/bf16) with llama.cpp's converter.

We run the converter of the pinned llama.cpp (``convert_hf_to_gguf.py`` with its vendored gguf-py)
in a subprocess with this interpreter: it is the reference implementation of the GGUF tensor
layout for Llama, Mistral and Qwen2, including the tokenizer (vocabulary, merges, special tokens,
BOS/EOS flags) and the chat template from ``tokenizer_config.json``. bielik adds only what the
converter lacks: the name of the BPE pre-tokenizer of tokenizers it has never seen (see
:mod:`bielik.quant.convert_entry`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Literal

from bielik.artifacts import staged_dir, write_stage_record
from bielik.config import StageConfig
from bielik.errors import BielikError
from bielik.log import get_logger

log = get_logger(__name__)

SUPPORTED_ARCHITECTURES = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"}

# Split regexes of the standard byte-level pre-tokenizers, as llama.cpp names them (src/llama-vocab.cpp).
_GPT2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
_LLAMA3 = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
_QWEN2 = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
SPLIT_PATTERNS = {_GPT2: "gpt-2", _LLAMA3: "llama-bpe", _QWEN2: "qwen2"}


class ExportConfig(StageConfig):
    model: str
    output: str = "runs/gguf"
    outtype: Literal["f32", "f16", "bf16"] = "f16"
    overwrite: bool = False


def detect_pretokenizer(model_dir: str | Path) -> str | None:
    """llama.cpp's name for the pre-tokenizer the model's tokenizer applies in bielik, or None.

    The tokenizer is opened the way every bielik stage opens it
    (:func:`bielik.tokenizer.formats.load_hf_tokenizer`: as saved; plain ``AutoTokenizer`` on a
    ``qwen2`` model directory would swap in ``Qwen2Tokenizer`` and its digit-by-digit split), so the
    GGUF splits text exactly as the model saw it in training.
    """
    path = Path(model_dir)
    if not (path / "tokenizer.json").is_file():
        return None
    from bielik.tokenizer.formats import load_hf_tokenizer

    tok = load_hf_tokenizer(path)
    try:
        data = json.loads(tok.backend_tokenizer.to_str())
    except Exception as exc:  # noqa: BLE001 - any loading failure is the user's tokenizer files
        raise BielikError(f"{path}: cannot load the tokenizer ({type(exc).__name__}: {exc})") from None
    return pretokenizer_name(data)


def pretokenizer_name(data: dict) -> str | None:
    """llama.cpp's name for the pre-tokenizer of a serialised HF ``tokenizers`` tokenizer, or None.

    ``None`` means "not a BPE tokenizer with a pre-tokenizer llama.cpp implements" (SentencePiece
    models do not need one). Recognised: ``ByteLevel(use_regex=True)`` (GPT-2's split), and a
    ``Split`` with the GPT-2, Llama-3 or Qwen2 regex followed by ``ByteLevel(use_regex=False)``.
    """
    if (data.get("model") or {}).get("type") != "BPE":
        return None
    pre = data.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    byte_level = [s for s in steps if s.get("type") == "ByteLevel"]
    splits = [s for s in steps if s.get("type") == "Split"]
    if len(steps) == 1 and byte_level and byte_level[0].get("use_regex", True):
        return "gpt-2"
    if len(splits) == 1 and len(byte_level) == 1 and len(steps) == 2 and not byte_level[0].get("use_regex", True):
        pattern = (splits[0].get("pattern") or {}).get("Regex")
        return SPLIT_PATTERNS.get(pattern)
    return None


def _check_model(model: Path) -> dict:
    cfg_path = model / "config.json"
    if not cfg_path.is_file():
        raise BielikError(f"model {model} is not an HF model directory (no config.json)")
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    archs = set(cfg.get("architectures") or [])
    if not archs & SUPPORTED_ARCHITECTURES:
        raise BielikError(
            f"{cfg_path}: architectures {sorted(archs)} not supported for GGUF export "
            f"(supported: {', '.join(sorted(SUPPORTED_ARCHITECTURES))})"
        )
    if not any(model.glob("*.safetensors")):
        raise BielikError(f"model {model} has no *.safetensors weights (bielik never loads pickled .bin checkpoints)")
    if not (model / "tokenizer.json").is_file() and not (model / "tokenizer.model").is_file():
        raise BielikError(
            f"model {model} has no tokenizer (tokenizer.json or tokenizer.model): GGUF files carry the tokenizer"
        )
    return cfg


def convert(model: str | Path, outfile: Path, outtype: str, log_file: Path | None = None) -> None:
    """Run the pinned ``convert_hf_to_gguf.py`` on an HF directory (subprocess, this interpreter)."""
    from bielik.vendor import llama_cpp_source

    model = Path(model)
    pre = detect_pretokenizer(model) or "-"
    src = llama_cpp_source()
    cmd = [
        sys.executable,
        "-m",
        "bielik.quant.convert_entry",
        str(src),
        pre,
        str(model),
        "--outfile",
        str(outfile),
        "--outtype",
        outtype,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    if log_file is not None:
        log_file.write_text("$ " + " ".join(cmd) + "\n" + proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0 and "pre-tokenizer was not recognized" in proc.stderr:
        raise BielikError(
            f"converting {model} to GGUF failed: its tokenizer's pre-tokenizer is not one llama.cpp implements "
            f"(bielik recognises GPT-2 byte-level and the Llama-3 and Qwen2 split regexes), so llama.cpp could "
            f"not split text the way the HF tokenizer does"
        )
    if proc.returncode != 0 or not outfile.is_file():
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        reason = next(
            (ln for ln in reversed(lines) if "Error" in ln or "error" in ln), lines[-1] if lines else "no output"
        )
        raise BielikError(f"converting {model} to GGUF failed: {reason}")


def export(cfg: ExportConfig) -> Path:
    """Write ``<output>/model-<outtype>.gguf`` (+ records); return the GGUF path."""
    from bielik.quant.gguf_file import read_gguf

    model = Path(cfg.model)
    hf_cfg = _check_model(model)
    name = f"model-{cfg.outtype}.gguf"
    with staged_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
        log.info("exporting %s to GGUF (%s)", model, cfg.outtype)
        convert(model, tmp / name, cfg.outtype, log_file=tmp / "convert.log")
        info = read_gguf(tmp / name)
        metrics = {
            "gguf": name,
            "outtype": cfg.outtype,
            "architecture": info.architecture,
            "hf_architecture": (hf_cfg.get("architectures") or ["?"])[0],
            "parameters": info.n_params,
            "file_bytes": info.file_bytes,
            "bits_per_weight": round(info.bits_per_weight, 3),
            "tensor_types": info.tensor_types,
            "tokenizer_pre": info.metadata.get("tokenizer.ggml.pre"),
            "chat_template": "tokenizer.chat_template" in info.metadata,
        }
        write_stage_record(tmp, "quant.export", cfg, inputs={"model": model}, metrics=metrics)
    log.info("wrote %s (%.1f MiB, %s)", Path(cfg.output) / name, info.file_bytes / 2**20, info.architecture)
    return Path(cfg.output) / name
