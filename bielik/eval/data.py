"""Task documents from local files (JSONL, CSV/TSV, Parquet) or, when asked and online, HF datasets.

A task's ``dataset.files`` maps a split to candidate paths relative to the data directories searched
in order: the user's ``data_dir`` entries, then the data shipped with bielik (licence-compatible
sets only, see ``bielik/resources/eval/SOURCES.md``). A split with no file anywhere is reported with
the task's ``get_data`` note, so a user knows where the data comes from.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from bielik.data.corpus import iter_jsonl_records
from bielik.errors import DataError
from bielik.eval.tasks import TaskSpec, shipped_data_dir


def read_records(path: Path) -> list[dict]:
    """All records of a JSONL / JSON-array / CSV / TSV / Parquet file, in file order."""
    name = path.name.lower()
    if name.endswith((".jsonl", ".ndjson")):
        return [row for _, row in iter_jsonl_records(path)]
    if name.endswith(".json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise DataError(f"{path}: expected a JSON array of objects")
        return data
    if name.endswith((".csv", ".tsv")):
        csv.field_size_limit(1 << 30)
        with open(path, encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh, delimiter="\t" if name.endswith(".tsv") else ","))
    if name.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
        return pq.read_table(path).to_pylist()
    raise DataError(f"{path}: unknown data format (use .jsonl, .json, .csv, .tsv or .parquet)")


def find_split_file(spec: TaskSpec, split: str, data_dirs: list[Path]) -> Path | None:
    cands = spec.dataset.files.get(split)
    if cands is None:
        return None
    for rel in [cands] if isinstance(cands, str) else cands:
        for d in data_dirs:
            p = Path(d) / rel
            if p.is_file():
                return p
    return None


def search_dirs(data_dir: list[str] | None, use_shipped: bool = True) -> list[Path]:
    dirs = [Path(d) for d in (data_dir or [])]
    for d in dirs:
        if not d.is_dir():
            raise DataError(f"eval data_dir {d} does not exist")
    return dirs + ([shipped_data_dir()] if use_shipped else [])


def load_split(spec: TaskSpec, split: str, data_dirs: list[Path], hf_datasets: bool = False) -> list[dict] | None:
    """Documents of ``split`` after the task's ``process_docs``; ``None`` when the split has no data."""
    from bielik.eval.processors import get_processor

    path = find_split_file(spec, split, data_dirs)
    if path is not None:
        docs = read_records(path)
    elif hf_datasets and spec.dataset.hf_path:
        docs = _load_hf(spec, split)
    else:
        return None
    if spec.process_docs:
        docs = get_processor(spec.process_docs)(docs)
    return docs


def _load_hf(spec: TaskSpec, split: str) -> list[dict] | None:
    try:
        import datasets
    except ImportError:
        raise DataError("hf_datasets=true needs the `datasets` package (pip install datasets)") from None
    try:
        ds = datasets.load_dataset(spec.dataset.hf_path, spec.dataset.hf_name, split=split)
    except Exception as exc:  # offline, unknown split, gated repo: all end the same way for the user
        raise DataError(
            f"task {spec.task}: could not load {spec.dataset.hf_path} split {split!r} from the Hugging Face Hub ({exc})"
        ) from None
    return [dict(r) for r in ds]


class MissingDataError(DataError):
    """A task's split has no data file (the message says where to get it)."""


def missing_data_message(spec: TaskSpec, split: str, data_dirs: list[Path]) -> str:
    cands = spec.dataset.files.get(split)
    names = [cands] if isinstance(cands, str) else (cands or [])
    where = ", ".join(str(Path(d) / n) for d in data_dirs for n in names) or "(no file is defined for this split)"
    return f"task {spec.task}: no data for split '{split}' (looked for {where}). {spec.get_data}".strip()
