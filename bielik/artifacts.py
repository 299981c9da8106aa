"""Artifacts on disk: atomic files and directories, resolved configs and lineage records.

Every stage writes its output into a sibling temporary directory and renames it into place only
when it has finished (:func:`staged_dir`), so a failure never leaves a half-written output and never
clobbers a previous good one. Next to its outputs a stage leaves ``config.yaml`` (the resolved
config), ``metrics.json`` and ``lineage.json`` (hashes of the config and of the inputs).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

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


def path_digest(path: str | Path) -> str:
    """Digest of a file, or of a directory's files (names and contents, sorted)."""
    path = Path(path)
    if path.is_file():
        return file_digest(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(str(f.relative_to(path)).encode())
        h.update(file_digest(f).encode())
    return h.hexdigest()


def config_digest(config: BaseModel) -> str:
    return hashlib.sha256(json.dumps(config.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def write_stage_record(
    out_dir: str | Path,
    stage: str,
    config: BaseModel,
    inputs: dict[str, str | Path] | None = None,
    metrics: dict[str, Any] | None = None,
) -> None:
    """Leave ``config.yaml``, ``lineage.json`` and ``metrics.json`` in ``out_dir``."""
    from bielik import __version__

    out_dir = Path(out_dir)
    atomic_write_text(
        out_dir / "config.yaml",
        yaml_dump({"stage": stage, **config.model_dump(mode="json")}),
    )
    lineage = {
        "stage": stage,
        "bielik_version": __version__,
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
