"""Tables of any stage: metrics as (metric, value) rows, lists of row dicts as tables."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bielik.report.document import Table

# ------------------------------------------------------------------------------------------ generic


def flatten(obj: Any, prefix: str = "", max_items: int = 12) -> list[tuple[str, Any]]:
    """Nested dicts -> ("a.b.c", value) pairs; short lists of scalars stay as values, long ones become
    ``"<n items>"`` and lists of dicts ``"<n rows>"`` (a key/value table cannot show them)."""
    out: list[tuple[str, Any]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.extend(flatten(v, f"{prefix}{k}.", max_items))
        return out
    key = prefix.rstrip(".")
    if isinstance(obj, list):
        if obj and all(isinstance(x, dict) for x in obj):
            out.append((key, f"<{len(obj)} rows>"))
        elif len(obj) > max_items or any(isinstance(x, (dict, list)) for x in obj):
            out.append((key, f"<{len(obj)} items>"))
        else:
            out.append((key, list(obj)))
    else:
        out.append((key, obj))
    return out


def key_values(title: str, metrics: dict[str, Any], skip: Iterable[str] = ()) -> Table:
    """A two-column (metric, value) table of every scalar in ``metrics`` (nested keys joined by dots)."""
    skip = tuple(skip)
    rows = [[k, v] for k, v in flatten(metrics) if not any(k == s or k.startswith(s + ".") for s in skip)]
    return Table(title, ["metric", "value"], rows)


def dict_rows(
    title: str,
    rows: list[dict[str, Any]],
    columns: list[str] | None = None,
    note: str = "",
) -> Table:
    """A list of flat dicts as a table; columns default to the keys of the first row with scalar values."""
    if columns is None:
        columns = [k for k, v in (rows[0] if rows else {}).items() if not isinstance(v, (dict, list))]
    return Table(title, list(columns), [[r.get(c) for c in columns] for r in rows], note=note)


def generic(metrics: dict | list | None) -> list[Table]:
    """Any stage: its metrics.json as (metric, value) rows; lists of dicts as their own tables."""
    if metrics is None:
        return []
    if isinstance(metrics, list):
        return [dict_rows("results", metrics)] if metrics and isinstance(metrics[0], dict) else []
    tables = [key_values("metrics", metrics)]
    for k, v in metrics.items():
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            tables.append(dict_rows(k, v))
    return tables
