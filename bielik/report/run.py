"""Reading a run directory: which stages ran, in what order, with what config, metrics and lineage.

A stage output is a folder holding ``config.yaml`` (``stage: <kind>`` plus the resolved config) and, once
finished, ``metrics.json`` and ``lineage.json`` (:func:`bielik.artifacts.write_stage_record`). Training
stages also append ``metrics.jsonl`` while they run, so a folder with ``metrics.jsonl`` but no
``metrics.json`` is a stage that started and did not finish. Stages are found as the run directory's
subfolders (and their subfolders, for grouped outputs), never inside another stage's output, and are ordered
by the time they started (``lineage.json`` ``started``, else ``created``, else the files' times).

When the recipe runner wrote ``<run_dir>/recipe-state.json`` (:mod:`bielik.recipe`), it is the better
source for what lineage lacks: each stage's status (``failed``/``running`` included, with the error),
wall time and timestamps, the recipe's name and the environment (bielik version, git revision). A stage
the state lists whose output folder does not exist (it failed before writing anything) still appears.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bielik.artifacts import read_json, read_log_rows
from bielik.errors import BielikError

MARKERS = ("config.yaml", "metrics.json", "lineage.json", "metrics.jsonl")


@dataclass
class StageRun:
    """One stage's output folder, loaded."""

    name: str  # path relative to the run directory, e.g. "pretrain" or "quant/compare"
    path: Path | None  # None: a result that is not on disk (e.g. the CLI's return value)
    kind: str
    config: dict[str, Any]
    metrics: dict[str, Any] | list | None
    lineage: dict[str, Any]
    status: str  # "done", "incomplete", "running" or "failed"
    records: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl rows
    state: dict[str, Any] = field(default_factory=dict)  # this stage's entry in recipe-state.json

    def _get(self, key: str) -> Any:
        return self.lineage.get(key) if self.lineage.get(key) is not None else self.state.get(key)

    @property
    def wall_time_s(self) -> float | None:
        v = self._get("wall_time_s")
        return float(v) if isinstance(v, (int, float)) else None

    @property
    def started(self) -> str | None:
        return self._get("started") or self.lineage.get("created")

    @property
    def finished(self) -> str | None:
        return self._get("finished")

    @property
    def error(self) -> str | None:
        return self.state.get("error") if self.status == "failed" else None

    def rows(self, kind: str) -> list[dict[str, Any]]:
        """``metrics.jsonl`` rows of one kind ("train" or "eval")."""
        return [r for r in self.records if r.get("kind", "train") == kind]

    def file(self, name: str) -> Path | None:
        if self.path is None:
            return None
        p = self.path / name
        return p if p.is_file() else None


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise BielikError(f"{path}{f':{mark.line + 1}' if mark else ''}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise BielikError(f"{path}: expected a mapping with a 'stage' key, got {type(data).__name__}")
    return data


def load_stage(path: Path, name: str) -> StageRun:
    cfg_path = path / "config.yaml"
    config = _read_config(cfg_path) if cfg_path.is_file() else {}
    lineage = read_json(path / "lineage.json") if (path / "lineage.json").is_file() else {}
    kind = str(config.get("stage") or lineage.get("stage") or "unknown")
    metrics = read_json(path / "metrics.json") if (path / "metrics.json").is_file() else None
    records = read_log_rows(path / "metrics.jsonl") if (path / "metrics.jsonl").is_file() else []
    if metrics is None:
        status = "incomplete"
    elif isinstance(metrics, dict) and metrics.get("status") in (
        "incomplete",
        "failed",
    ):
        status = metrics["status"]
    else:
        status = "done"
    return StageRun(
        name,
        path,
        kind,
        {k: v for k, v in config.items() if k != "stage"},
        metrics,
        lineage,
        status,
        records,
    )


def _is_stage_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() or (path / "lineage.json").is_file() or (path / "metrics.jsonl").is_file()


def _sort_key(st: StageRun) -> tuple[float, float]:
    from datetime import datetime

    times = [p.stat().st_mtime for p in (st.path / m for m in MARKERS) if st.path and p.is_file()]
    first = min(times) if times else float("inf")
    try:  # ISO 8601 from the runner ("...+00:00") or write_stage_record ("...+0000"): compare as instants
        started = datetime.fromisoformat(st.started).timestamp() if st.started else first
    except ValueError:
        started = first
    return (started, first)


def read_state(run_dir: Path) -> dict[str, Any]:
    """``<run_dir>/recipe-state.json`` written by the recipe runner, or {} (a damaged file is reported)."""
    from bielik.recipe import STATE_FILE

    path = run_dir / STATE_FILE
    if not path.is_file():
        return {}
    state = read_json(path)
    if not isinstance(state, dict) or not isinstance(state.get("stages", {}), dict):
        raise BielikError(f"{path}: expected an object with a 'stages' mapping")
    return state


def _attach_state(found: list[StageRun], run_dir: Path, state: dict[str, Any]) -> list[StageRun]:
    by_path = {st.path.resolve(): st for st in found if st.path is not None}
    for name, entry in (state.get("stages") or {}).items():
        out = Path(entry["output"]) if entry.get("output") else run_dir / name
        if not out.is_absolute() and not out.exists() and (run_dir / name).exists():
            out = run_dir / name
        st = by_path.get(out.resolve())
        if st is None:
            if entry.get("status") in (
                "failed",
                "running",
            ):  # failed before it wrote anything
                found.append(
                    StageRun(
                        name,
                        out,
                        str(entry.get("kind", "unknown")),
                        {},
                        None,
                        {},
                        entry["status"],
                        state=entry,
                    )
                )
            continue
        st.name, st.state = name, entry
        if entry.get("status") in (
            "failed",
            "running",
        ):  # the latest attempt; metrics on disk are an earlier run's
            st.status = entry["status"]
    return found


def find_stages(run_dir: str | Path, exclude: tuple[Path, ...] = (), depth: int = 2) -> list[StageRun]:
    """Every stage output under ``run_dir`` (down to ``depth`` levels), in the order they started, with the
    recipe runner's state merged in."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BielikError(
            f"run directory {run_dir} does not exist (expected the run_dir of a recipe, e.g. runs/tiny-pl)"
        )
    excluded = {p.resolve() for p in exclude}
    found: list[StageRun] = []

    def walk(folder: Path, level: int) -> None:
        for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if child.resolve() in excluded:
                continue
            if _is_stage_dir(child):
                found.append(load_stage(child, child.relative_to(run_dir).as_posix()))
            elif level < depth:
                walk(child, level + 1)

    if _is_stage_dir(run_dir) and run_dir.resolve() not in excluded:
        found.append(load_stage(run_dir, run_dir.name))
    else:
        walk(run_dir, 1)
    state = read_state(run_dir)
    if state:
        found = _attach_state(found, run_dir, state)
    return sorted(found, key=_sort_key)
