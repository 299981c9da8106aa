"""The llama.cpp toolchain: the pinned source tree and a cached build of the tools bielik runs.

The only llama.cpp source reachable offline-from-a-registry is the ``llama-cpp-python`` sdist on
PyPI, which vendors llama.cpp (``vendor/llama.cpp``: ``convert_hf_to_gguf.py``, ``gguf-py`` and the
C++ sources of ``llama-quantize``, ``llama-imatrix``, ``llama-perplexity``, ``llama-bench``). We pin
its version, fetch it once with pip and build only the command-line tools with cmake (484 s measured
on 2 busy shared cores), not the whole Python wheel, whose bindings we do not need: every tool runs
in a subprocess.

The source tree is fetched by :func:`bielik.vendor.llama_cpp_source` (it lives below every stage
package: the tokenizer readers take llama.cpp's vocabulary files from it too). Layout under the cache
directory (``$BIELIK_CACHE`` or ``~/.cache/bielik``)::

    llama-cpp-python-<version>/vendor/llama.cpp     extracted source (llama_cpp_source())
    llama.cpp-<version>-<flags>/bin/llama-*         built tools       (build_tools())

Both are created in a temporary sibling directory and renamed into place, so concurrent processes
never see half a tree; builds are additionally serialised with a file lock (two builds at once
would only double the CPU time).

The build is portable (``GGML_NATIVE=OFF`` with AVX2/FMA/F16C): a native build on AMX-capable
Xeons segfaults in the AMX matmul path on quantised models (NOTES.md), and a portable build gives
the same binaries on every x86-64 machine CI may run on.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from bielik.errors import BielikError
from bielik.log import get_logger
from bielik.vendor import LLAMA_CPP_PYTHON_VERSION, cache_dir, llama_cpp_source

log = get_logger("bielik.quant.toolchain")

TOOLS = ("llama-quantize", "llama-imatrix", "llama-perplexity", "llama-bench")
"""cmake targets built by :func:`build_tools` (only these, not the whole tree)."""

PORTABLE_FLAGS = {
    "GGML_NATIVE": "OFF",
    "GGML_AVX": "ON",
    "GGML_AVX2": "ON",
    "GGML_FMA": "ON",
    "GGML_F16C": "ON",
    "GGML_BMI2": "ON",
}
FLAGS_TAG = "avx2"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_dir(flags_tag: str = FLAGS_TAG) -> Path:
    """Where :func:`build_tools` puts the build (``llama.cpp-<version>-<flags>``)."""
    return cache_dir() / f"llama.cpp-{LLAMA_CPP_PYTHON_VERSION}-{flags_tag}"


def built_tools() -> Path | None:
    """The ``bin`` directory of a finished build, or None when the tools are not built yet."""
    bin_dir = build_dir() / "bin"
    if all((bin_dir / t).is_file() for t in TOOLS):
        return bin_dir
    return None


def build_tools(jobs: int | None = None) -> Path:
    """Build :data:`TOOLS` with cmake once and return their ``bin`` directory (reused when present).

    Serialised with a lock file; the build happens in a temporary directory renamed into place.
    """
    found = built_tools()
    if found is not None:
        return found
    for exe in ("cmake", "c++"):
        if shutil.which(exe) is None:
            raise BielikError(f"building the llama.cpp tools needs `{exe}` on PATH (apt-get install cmake g++)")
    src = llama_cpp_source()
    final = build_dir()
    with _file_lock(cache_dir() / ".llama.cpp-build.lock"):
        found = built_tools()
        if found is not None:
            return found
        jobs = jobs or max(1, min(os.cpu_count() or 1, 2))
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        build = tmp / "build"
        configure = [
            "cmake",
            "-S",
            str(src),
            "-B",
            str(build),
            "-DCMAKE_BUILD_TYPE=Release",
            "-DBUILD_SHARED_LIBS=OFF",
            "-DLLAMA_CURL=OFF",
            "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_EXAMPLES=ON",
            "-DLLAMA_BUILD_TOOLS=ON",
            "-DLLAMA_BUILD_SERVER=OFF",
            "-DGGML_OPENMP=ON",
        ]
        configure += [f"-D{k}={v}" for k, v in PORTABLE_FLAGS.items()]
        if shutil.which("ninja"):
            configure += ["-G", "Ninja"]
        log.info(f"building llama.cpp tools ({', '.join(TOOLS)}) in {final} with {jobs} jobs (~8 min on 2 cores)")
        t0 = time.perf_counter()
        tmp.mkdir(parents=True)
        logf = tmp / "build.log"
        with open(logf, "w") as out:
            for cmd in (
                configure,
                ["cmake", "--build", str(build), "--config", "Release", "-j", str(jobs), "--target", *TOOLS],
            ):
                out.write("$ " + " ".join(cmd) + "\n")
                out.flush()
                rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode
                if rc != 0:
                    tail = "\n".join(logf.read_text(errors="replace").splitlines()[-15:])
                    raise BielikError(f"building llama.cpp failed (exit {rc}); full log in {logf}:\n{tail}")
        bin_dir = tmp / "bin"
        bin_dir.mkdir()
        for t in TOOLS:
            shutil.copy2(build / "bin" / t, bin_dir / t)
        shutil.rmtree(build)  # object files: ~100s of MB we never reuse
        (tmp / "BUILD_INFO").write_text(
            f"llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} (vendor/llama.cpp)\nflags: {PORTABLE_FLAGS}\n"
            f"built in {time.perf_counter() - t0:.0f} s\n"
        )
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        log.info(f"llama.cpp tools built in {time.perf_counter() - t0:.0f} s")
    return final / "bin"


def tool(name: str) -> Path:
    """Path of one llama.cpp tool, building the toolchain first when it is missing."""
    if name not in TOOLS:
        raise ValueError(f"unknown llama.cpp tool {name!r}; bielik builds {TOOLS}")
    return build_tools() / name


def default_threads() -> int:
    """Threads for llama.cpp tools: ``OMP_NUM_THREADS`` when set (the machine may be shared), else all cores."""
    env = os.environ.get("OMP_NUM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return os.cpu_count() or 1


def run_tool(name: str, args: list[str], what: str, log_file: Path | None = None, timeout: float | None = None) -> str:
    """Run one llama.cpp tool and return its combined output; a failure is a BielikError with the tail.

    ``what`` says in the error message what the tool was doing (e.g. "quantising model.gguf to Q4_K_M").
    """
    exe = tool(name)
    cmd = [str(exe), *args]
    log.debug("$ %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BielikError(f"{what}: {name} did not finish within {timeout:.0f} s") from None
    output = proc.stdout + proc.stderr
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "a", encoding="utf-8") as fh:
            fh.write("$ " + " ".join(cmd) + "\n" + output + "\n")
    if proc.returncode != 0:
        tail = "\n".join(line for line in output.strip().splitlines()[-12:])
        raise BielikError(f"{what}: {name} failed (exit {proc.returncode}):\n{tail}")
    return output


def installed_builds() -> list[str]:
    """Finished tool builds in the cache (``llama.cpp-<version>-<flags>``, with their tools), for ``bielik doctor``."""
    cache = cache_dir()
    if not cache.is_dir():
        return []
    out = []
    for p in sorted(cache.glob("llama.cpp-*")):
        tools = sorted(t.name for t in (p / "bin").glob("llama-*")) if (p / "bin").is_dir() else []
        out.append(f"{p} ({', '.join(tools) if tools else 'incomplete'})")
    return out
