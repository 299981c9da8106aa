"""Third-party source trees bielik fetches once and caches: the pinned ``llama-cpp-python`` sdist, whose
``vendor/llama.cpp`` holds llama.cpp's converter, ``gguf-py``, the C++ tools (built by
:mod:`bielik.quant.toolchain`) and the tokenizer vocabulary files the tokenizer readers use
(:mod:`bielik.tokenizer.formats`). It sits below every stage package so that both can use it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from bielik.errors import BielikError
from bielik.log import get_logger

log = get_logger(__name__)

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
"""Pinned ``llama-cpp-python`` sdist; its ``vendor/llama.cpp`` is the llama.cpp bielik uses."""


def cache_dir() -> Path:
    """``$BIELIK_CACHE`` if set, else ``~/.cache/bielik``."""
    env = os.environ.get("BIELIK_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "bielik"


def _sdist_root(version: str = LLAMA_CPP_PYTHON_VERSION) -> Path:
    return cache_dir() / f"llama-cpp-python-{version}"


def _source_ok(src: Path) -> bool:
    return (
        (src / "convert_hf_to_gguf.py").is_file()
        and (src / "CMakeLists.txt").is_file()
        and (src / "gguf-py" / "gguf").is_dir()
    )


def llama_cpp_source() -> Path:
    """The extracted llama.cpp source tree (``vendor/llama.cpp`` of the pinned sdist).

    Fetched once with ``pip download llama-cpp-python==<pin> --no-deps --no-binary :all:`` into the
    cache directory and extracted into a temporary directory that is renamed into place, so two
    processes racing here both end up with the same complete tree. Raises :class:`BielikError`
    when the sdist cannot be fetched (e.g. offline).
    """
    root = _sdist_root()
    src = root / "vendor" / "llama.cpp"
    if _source_ok(src):
        return src
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    spec = f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"
    with tempfile.TemporaryDirectory(prefix=".llama-cpp-python-fetch-", dir=cache) as tmp:
        tmp = Path(tmp)
        log.info(f"fetching the llama.cpp sources ({spec} sdist, ~77 MB) into {cache}")
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            spec,
            "--no-deps",
            "--no-binary",
            ":all:",
            "--disable-pip-version-check",
            "-q",
            "-d",
            str(tmp / "dl"),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        archives = sorted((tmp / "dl").glob("llama_cpp_python-*.tar.gz")) + sorted(
            (tmp / "dl").glob("llama-cpp-python-*.tar.gz")
        )
        if proc.returncode != 0 or not archives:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            raise BielikError(
                f"could not fetch the llama.cpp sources ({spec} sdist from the package index): "
                f"{tail or 'no archive downloaded'}\n"
                f"bielik's GGUF tools need them once; run where the package index is reachable, or extract that sdist "
                f"yourself so that {src} exists."
            )
        with tarfile.open(archives[0]) as tar:
            tar.extractall(tmp / "x", filter="data")
        tops = [p for p in (tmp / "x").iterdir() if p.is_dir()]
        if len(tops) != 1 or not _source_ok(tops[0] / "vendor" / "llama.cpp"):
            raise BielikError(f"{archives[0].name}: unexpected layout (no vendor/llama.cpp with convert_hf_to_gguf.py)")
        try:
            os.rename(tops[0], root)
        except OSError:
            # Another process renamed its copy into place first (or a broken tree is in the way).
            if not _source_ok(src):
                stale = root.with_name(f".{root.name}.stale-{os.getpid()}-{time.monotonic_ns()}")
                os.rename(root, stale)
                shutil.rmtree(stale, ignore_errors=True)
                os.rename(tops[0], root)
    if not _source_ok(src):
        raise BielikError(f"{src}: llama.cpp source tree is incomplete")
    return src
