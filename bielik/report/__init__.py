"""``bielik report RUN_DIR``: one self-contained HTML page (and a Markdown version) of everything a run did.

The report reads the stage outputs under a run directory (:mod:`bielik.report.run`), builds one section
per stage with the builder registered for its kind (:mod:`bielik.report.sections`; unknown kinds get a
generic section), and renders the sections with one renderer (:mod:`bielik.report.render`). Outputs in
``output`` (default ``<run_dir>/report``): ``report.html`` (images inlined as data URIs, inline CSS, no
scripts or fonts: it renders offline), ``report.md`` with its images in ``report_files/``, and the
usual ``config.yaml``, ``lineage.json`` (inputs: each stage's ``metrics.json``) and ``metrics.json``.

As a recipe's last stage it needs no config: ``output`` is set by the recipe runner to
``<run_dir>/<stage name>`` and ``run_dir`` defaults to its parent.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from bielik.artifacts import (
    atomic_write_bytes,
    atomic_write_text,
    staged_dir,
    write_stage_record,
)
from bielik.config import StageConfig
from bielik.errors import ConfigError
from bielik.log import get_logger
from bielik.report.document import DASH, Figure, Report, Section, Table, duration
from bielik.report.run import StageRun, find_stages
from bielik.report.tables import tables_for

__all__ = [
    "Report",
    "ReportConfig",
    "Section",
    "Table",
    "build_report",
    "report",
    "tables_for",
]

log = get_logger(__name__)


class ReportConfig(StageConfig):
    run_dir: str | None = Field(
        None,
        description="the run directory to report on (default: the parent of output)",
    )
    output: str | None = Field(None, description="report folder (default: <run_dir>/report)")
    formats: list[Literal["html", "md"]] = Field(default_factory=lambda: ["html", "md"], min_length=1)
    title: str | None = Field(None, description="page title (default: 'bielik run <run_dir name>')")
    # a report is derived from files that stay in place: rewriting it loses nothing, so re-running replaces it
    overwrite: bool = True

    @model_validator(mode="after")
    def _defaults(self) -> ReportConfig:
        if self.run_dir is None and self.output is None:
            raise ConfigError("report: give run_dir (the run to report on) or output (run_dir is then its parent)")
        if self.run_dir is None:
            object.__setattr__(self, "run_dir", str(Path(self.output).parent))
        if self.output is None:
            object.__setattr__(self, "output", str(Path(self.run_dir) / "report"))
        return self


_HEADLINE = ("final_val_loss", "final_reward", "final_accuracy", "kept", "accuracy", "final_train_loss")


def _headline(st: StageRun) -> str:
    """One number that says how a stage went, for the summary table."""
    m = st.metrics if isinstance(st.metrics, dict) else {}
    if "heldout" in m and isinstance(m["heldout"], dict) and "ppl_recovery" in m["heldout"]:
        return f"perplexity recovery {100 * m['heldout']['ppl_recovery']:.1f}%"
    if "shots" in m:
        avgs = [
            f"{k}-shot {s['average_normalised']:.2f}"
            for k, s in m["shots"].items()
            if s.get("average_normalised") is not None
        ]
        return "normalised average " + ", ".join(avgs) if avgs else ""
    if st.kind == "quant.compare" and m.get("rows"):
        return f"{len(m['rows'])} quantised models compared"
    for k in _HEADLINE:
        if isinstance(m.get(k), (int, float)):
            return f"{k.replace('_', ' ')} {m[k]:,}" if isinstance(m[k], int) else f"{k.replace('_', ' ')} {m[k]:.4g}"
    return ""


def summary_section(
    run_dir: Path,
    stages: list[StageRun],
    sections: list[Section],
    state: dict | None = None,
) -> Section:
    """The run at a glance: stages in order with kind, status, wall time and one headline number each."""
    rows = [
        [
            i + 1,
            st.name,
            st.kind,
            st.status,
            duration(st.wall_time_s),
            st.started or DASH,
            _headline(st),
        ]
        for i, st in enumerate(stages)
    ]
    times = [st.wall_time_s for st in stages if st.wall_time_s is not None]
    total = sum(times) if times else None
    rows.append(
        [
            "",
            "total",
            "",
            f"{sum(st.status == 'done' for st in stages)}/{len(stages)} done",
            duration(total),
            "",
            "",
        ]
    )
    sec = Section(
        "summary",
        "Summary",
        tables=[
            Table(
                "stages in the order they ran",
                ["#", "stage", "kind", "status", "wall time", "started", "result"],
                rows,
            )
        ],
    )
    env = (state or {}).get("environment") or {}
    revs = sorted({str(r)[:12] for r in [*(st.lineage.get("git_rev") for st in stages), env.get("git_rev")] if r})
    versions = sorted(
        {
            str(v)
            for v in [
                *(st.lineage.get("bielik_version") for st in stages),
                env.get("bielik_version"),
            ]
            if v
        }
    )
    sec.facts = [
        ("run directory", str(run_dir)),
        ("recipe", str((state or {}).get("recipe") or DASH)),
        ("stages", str(len(stages))),
        ("total wall time", duration(total)),
        ("bielik", ", ".join(versions) or DASH),
        ("git rev", ", ".join(revs) or DASH),
    ]
    if len(revs) > 1:
        sec.notes.append(f"stages were produced by {len(revs)} different git revisions")
    if times and len(times) < len(stages):
        sec.notes.append(f"wall time recorded for {len(times)} of {len(stages)} stages; the total counts only those")
    if times:
        from bielik.report import plots

        named = [(st.name, st.wall_time_s) for st in stages if st.wall_time_s is not None]
        png = plots.bars(
            [n for n, _ in named],
            [round(t, 1) for _, t in named],
            "wall time per stage",
            "wall time (seconds)",
        )
        sec.figures.append(Figure("summary-wall-time.png", "Wall time per stage (seconds)", png))
    sec.facts.append(("figures", str(sum(len(s.figures) for s in [sec, *sections]))))
    return sec


def build_report(run_dir: str | Path, exclude: tuple[Path, ...] = (), title: str | None = None) -> Report:
    """Read ``run_dir`` and build the whole report (no files written)."""
    from bielik.progress import progress
    from bielik.report.run import read_state
    from bielik.report.sections import stage_section

    run_dir = Path(run_dir)
    stages = [st for st in find_stages(run_dir, exclude) if st.kind != "report"]
    sections = []
    with progress("report", total=len(stages), unit="stages", every=5) as bar:
        for st in stages:
            sections.append(stage_section(st))
            bar.advance(1, info=st.name)
    state = read_state(run_dir)
    summary = summary_section(run_dir, stages, sections, state)
    name = run_dir.resolve().name
    if state.get("recipe") and state["recipe"] != name:
        name = f"{name} (recipe {state['recipe']})"
    return Report(
        title or f"bielik run {name}",
        f"{run_dir} · {len(stages)} stages · generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        summary,
        sections,
    )


def report(cfg: ReportConfig) -> dict[str, Any]:
    """Write ``report.html`` / ``report.md`` (+ ``report_files/``) of ``cfg.run_dir`` into ``cfg.output``."""
    from bielik.report.render import report_html, report_markdown

    run_dir, out_dir = Path(cfg.run_dir), Path(cfg.output)
    rep = build_report(run_dir, exclude=(out_dir,), title=cfg.title)
    figures = [f for s in [rep.summary, *rep.sections] for f in s.figures]
    with staged_dir(out_dir, overwrite=cfg.overwrite) as tmp:
        files = []
        if "html" in cfg.formats:
            atomic_write_text(tmp / "report.html", report_html(rep))
            files.append("report.html")
        if "md" in cfg.formats:
            for f in figures:
                atomic_write_bytes(tmp / "report_files" / f.name, f.png)
            atomic_write_text(tmp / "report.md", report_markdown(rep, "report_files"))
            files.append("report.md")
        inputs = {s.title: Path(run_dir) / s.title / "metrics.json" for s in rep.sections}
        metrics = {
            "run_dir": str(run_dir),
            "stages": len(rep.sections),
            "sections": [rep.summary.id] + [s.id for s in rep.sections],
            "tables": sum(len(s.tables) for s in [rep.summary, *rep.sections]),
            "figures": len(figures),
            "files": files,
        }
        write_stage_record(
            tmp,
            "report",
            cfg,
            inputs={k: v for k, v in inputs.items() if v.is_file()},
            metrics=metrics,
        )
    log.info(
        "report of %s (%d stages, %d figures): %s",
        run_dir,
        len(rep.sections),
        len(figures),
        ", ".join(str(out_dir / f) for f in files),
    )
    return {**metrics, "output": str(out_dir)}
