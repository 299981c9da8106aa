"""The report's data model: a section per stage holding tables (data, not text), figures (PNG bytes) and notes.

Section builders produce these objects; :mod:`bielik.report.render` turns them into Markdown or HTML, and
the CLI can print the same :class:`Table` objects (``bielik.report.render.to_rich``). Tables keep raw
values (numbers stay numbers) so tests can compare them with the stage's ``metrics.json`` and each
renderer formats them the same way (:func:`format_cell`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

DASH = "—"


@dataclass
class Table:
    """A titled table: ``header`` names the columns, ``rows`` hold raw values (None renders as "—").

    ``formats`` optionally gives a Python format spec per column (``",d"``, ``".4f"``, ``"+.3f"``; ``""`` or
    None for the default). Numeric columns are right-aligned.
    """

    title: str
    header: list[str]
    rows: list[list[Any]]
    formats: list[str | None] | None = None
    note: str = ""

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            if len(row) != len(self.header):
                raise ValueError(f"table {self.title!r}: row {i} has {len(row)} cells, the header {len(self.header)}")
        if self.formats is not None and len(self.formats) != len(self.header):
            raise ValueError(f"table {self.title!r}: {len(self.formats)} formats for {len(self.header)} columns")

    def cell(self, r: int, c: int) -> str:
        return format_cell(self.rows[r][c], self.formats[c] if self.formats else None)

    def numeric(self, c: int) -> bool:
        vals = [row[c] for row in self.rows if row[c] is not None]
        return bool(vals) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)

    def column(self, name: str) -> list[Any]:
        i = self.header.index(name)
        return [row[i] for row in self.rows]


@dataclass
class Figure:
    """A PNG image (bytes) with a caption; ``name`` is its file name in the Markdown version's folder."""

    name: str
    caption: str
    png: bytes


@dataclass
class Section:
    """Everything the report shows about one stage (or the run summary)."""

    id: str
    title: str
    kind: str = ""
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    config_yaml: str = ""
    facts: list[tuple[str, str]] = field(default_factory=list)  # wall time, status, version, git rev ...
    lineage: Table | None = None
    metrics_json: str = ""  # the raw metrics.json, shown collapsed


@dataclass
class Report:
    title: str
    subtitle: str
    summary: Section
    sections: list[Section]


def format_cell(value: Any, fmt: str | None = None) -> str:
    """One cell as text: None/NaN -> "—", bools yes/no, ints with thousands separators, floats to 4 significant
    digits (or ``fmt`` when given), lists joined by commas, everything else ``str``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if fmt and isinstance(value, (int, float)):
        return format(value, fmt)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1e6:
            return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
        return f"{value:.3e}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_cell(v) for v in value)
    return str(value)


def slug(text: str) -> str:
    """An HTML id from a stage name: lower case, runs of other characters -> "-"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def duration(seconds: float | None) -> str:
    """``3725.4`` -> ``"1 h 02 min"``, ``83.2`` -> ``"1 min 23 s"``, ``4.25`` -> ``"4.2 s"``; None -> "—"."""
    if seconds is None:
        return DASH
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    h, m = divmod(minutes, 60)
    return f"{h} h {m:02d} min"
