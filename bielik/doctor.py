"""``bielik doctor``: what this machine offers bielik, and how to install what is missing."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import platform
from pathlib import Path

import torch

CORE = ["torch", "transformers", "tokenizers", "safetensors", "numpy", "pydantic", "typer", "rich", "pyyaml"]

# (import name, distribution, what it enables, how to install)
OPTIONAL = [
    ("accelerate", "accelerate", "transformers.Trainer baseline in benchmarks/", "pip install 'bielik-toolkit[bench]'"),
    (
        "torch.utils.tensorboard",
        "tensorboard",
        "TensorBoard logging (logging.tensorboard=true)",
        "pip install 'bielik-toolkit[tensorboard]'",
    ),
    ("wandb", "wandb", "Weights & Biases logging (logging.wandb=true)", "pip install 'bielik-toolkit[wandb]'"),
    ("trl", "trl", "reference implementation for post-training tests", "pip install trl"),
    (
        "lm_eval",
        "lm-eval",
        "reference harness for eval parity tests and benchmarks/eval_speed.py",
        "pip install 'bielik-toolkit[lmeval]'",
    ),
    ("requests", "requests", "MT-Bench judge client (bielik eval mt-bench)", "pip install 'bielik-toolkit[eval]'"),
    ("datatrove", "datatrove", "corpus curation at scale", "pip install 'bielik-toolkit[curate]'"),
    ("morfeusz2", "morfeusz2", "Polish morphology for stylometric features", "pip install 'bielik-toolkit[curate]'"),
    ("xgboost", "xgboost-cpu", "quality classifier", "pip install 'bielik-toolkit[curate]'"),
    (
        "py3langid",
        "py3langid",
        "language identification (curation, MT-Bench responses_pl)",
        "pip install 'bielik-toolkit[curate]'",
    ),
    ("ftfy", "ftfy", "encoding repair in cleaning", "pip install 'bielik-toolkit[curate]'"),
    ("gguf", "gguf", "GGUF files", "pip install gguf"),
    (
        "mistral_common",
        "mistral-common",
        "real Mistral tokenizers for comparisons",
        "pip install 'bielik-toolkit[tokenizer]'",
    ),
    (
        "sentencepiece",
        "sentencepiece",
        "SentencePiece models and GGUF SentencePiece vocabularies (tokenizer stats/merge)",
        "pip install 'bielik-toolkit[tokenizer]'",
    ),
    (
        "fasttext",
        "fasttext-community",
        "FOCUS auxiliary embeddings (model swap-tokenizer init=focus)",
        "pip install 'bielik-toolkit[tokenizer]'",
    ),
]


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
        return True
    except Exception:  # noqa: BLE001 - any import failure means "not usable"
        return False


def cpu_bf16_support() -> str:
    cap = torch.backends.cpu.get_cpu_capability()
    flags = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        text = cpuinfo.read_text(errors="ignore")
        flags = " ".join(sorted({f for f in ("amx_bf16", "avx512_bf16") if f in text}))
    native = f"native ({flags})" if flags else "emulated (no AMX/AVX512-BF16): expect little or no bf16 speed-up"
    return f"{native}; torch CPU capability {cap}"


def report() -> dict:
    from bielik import __version__
    from bielik.train.metrics import peak_cache_path

    devices = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            devices.append(
                {"device": f"cuda:{i}", "name": torch.cuda.get_device_name(i), "bf16": torch.cuda.is_bf16_supported()}
            )
    devices.append({"device": "cpu", "name": platform.processor() or platform.machine(), "bf16": cpu_bf16_support()})
    from bielik.quant.toolchain import installed_builds

    llama_cpp = installed_builds()
    return {
        "bielik": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "core": {name: _version(name if name != "pyyaml" else "PyYAML") for name in CORE},
        "cuda": torch.version.cuda,
        "devices": devices,
        "distributed": {
            "available": torch.distributed.is_available(),
            "nccl": torch.distributed.is_available() and torch.distributed.is_nccl_available(),
            "gloo": torch.distributed.is_available() and torch.distributed.is_gloo_available(),
        },
        "optional": [
            {
                "component": dist,
                "installed": _version(dist) is not None and _importable(mod),
                "version": _version(dist),
                "for": what,
                "install": how,
            }
            for mod, dist, what, how in OPTIONAL
        ],
        "llama_cpp_builds": llama_cpp,
        "peak_flops_cache": str(peak_cache_path()) if peak_cache_path().is_file() else None,
    }
