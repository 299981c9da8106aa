"""Artifacts on disk: atomic files and directories, resolved configs and lineage records.

Every stage writes its output into a sibling temporary directory and renames it into place only
when it has finished (:func:`staged_dir`), so a failure never leaves a half-written output and never
clobbers a previous good one. Next to its outputs a stage leaves ``config.yaml`` (the resolved
config), ``metrics.json`` and ``lineage.json``.

``lineage.json`` holds: ``stage``, ``bielik_version``, ``git_rev`` (``git rev-parse HEAD`` of the bielik
source tree, ``-dirty`` appended when tracked files are modified; ``None`` outside a git checkout),
``host``, ``python``, ``torch`` and ``transformers`` versions, ``created`` (when the record was
written), ``config_sha256`` and ``inputs`` (name -> path and sha256). The recipe runner adds
``started``, ``finished``, ``wall_time_s`` and ``recipe_inputs`` (see :mod:`bielik.recipe`).
``metrics.json`` is always written last: its presence marks a finished stage.

Content digests (:func:`path_digest`): a file's SHA-256, or for a directory the SHA-256 over its files'
relative names and contents, sorted (dot-files, i.e. temporary files, are left out). Hashing multi-GB
checkpoints on every recipe run would be slow, so :class:`DigestCache` remembers each file's digest
keyed by (absolute path, size, mtime_ns) in a JSON file and re-reads only files whose size or
modification time changed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bielik.errors import BielikError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BielikError(f"{path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise BielikError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


def read_log_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines log a stage appends to (``metrics.jsonl``). A truncated last line (a stage
    killed mid-write) is ignored; any other bad line is an error naming the file and line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise BielikError(f"{path} does not exist") from None
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if i == len(lines):
                break
            raise BielikError(f"{path}:{i}: not valid JSON ({exc.msg})") from None
    return rows


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def staged_dir(final: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``final`` only if the block completes.

    On an exception the temporary directory is removed and ``final`` is untouched. With
    ``overwrite`` an existing ``final`` is replaced (moved aside, then deleted) after success.
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise BielikError(f"output {final} already exists (pass overwrite=true to replace it)")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def file_digest(path: str | Path, algo: str = "sha256", chunk: int = 1 << 20) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


class DigestCache:
    """File digests keyed by (absolute path, size, mtime_ns), kept in a JSON file.

    A file whose size and modification time (nanoseconds) are unchanged is not read again; any write
    changes the mtime, so a changed file is always re-hashed (a mere ``touch`` re-hashes it too, and
    its digest stays the same). ``save()`` writes the file atomically; a missing or unreadable cache
    file just starts empty.
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self.entries: dict[str, list] = {}
        self.dirty = False
        self.hashed_bytes = 0  # bytes actually read (0 on a fully cached pass)
        if self.path is not None and self.path.is_file():
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(self.path.read_text(encoding="utf-8"))
                if isinstance(data, dict) and isinstance(data.get("files"), dict):
                    self.entries = data["files"]

    def file(self, path: Path) -> str:
        st = path.stat()
        key = str(path.resolve())
        hit = self.entries.get(key)
        if hit is not None and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return hit[2]
        digest = file_digest(path)
        self.hashed_bytes += st.st_size
        self.entries[key] = [st.st_size, st.st_mtime_ns, digest]
        self.dirty = True
        return digest

    def save(self) -> None:
        if self.path is not None and self.dirty:
            write_json(
                self.path, {"version": 1, "key": "absolute path -> [size, mtime_ns, sha256]", "files": self.entries}
            )
            self.dirty = False


def path_digest(path: str | Path, cache: DigestCache | None = None) -> str:
    """Digest of a file, or of a directory's files (relative names and contents, sorted; dot-files skipped)."""
    path = Path(path)
    digest = cache.file if cache is not None else file_digest
    if path.is_file():
        return digest(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(str(f.relative_to(path)).encode())
        h.update(digest(f).encode())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def git_revision() -> str | None:
    """``git rev-parse HEAD`` of the bielik source tree (``-dirty`` if tracked files changed); None
    when bielik is not run from a git checkout or git is missing. Cached per process."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return rev.stdout.strip() + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    """What produced an artifact: bielik version, git revision, host, Python/torch/transformers versions."""
    from importlib import metadata

    from bielik import __version__

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {
        "bielik_version": __version__,
        "git_rev": git_revision(),
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": version("torch"),
        "transformers": version("transformers"),
    }


def config_digest(config: BaseModel) -> str:
    return hashlib.sha256(json.dumps(config.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def write_stage_record(
    out_dir: str | Path,
    stage: str,
    config: BaseModel,
    inputs: dict[str, str | Path] | None = None,
    metrics: dict[str, Any] | None = None,
) -> None:
    """Leave ``config.yaml``, ``lineage.json`` and ``metrics.json`` (last) in ``out_dir``."""
    out_dir = Path(out_dir)
    atomic_write_text(
        out_dir / "config.yaml",
        yaml_dump({"stage": stage, **config.model_dump(mode="json")}),
    )
    lineage = {
        "stage": stage,
        **environment(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config_sha256": config_digest(config),
        "inputs": {
            name: {"path": str(p), "sha256": path_digest(p) if Path(p).exists() else None}
            for name, p in (inputs or {}).items()
        },
    }
    write_json(out_dir / "lineage.json", lineage)
    if metrics is not None:
        write_json(out_dir / "metrics.json", metrics)


def yaml_dump(obj: Any) -> str:
    import yaml

    return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True)
