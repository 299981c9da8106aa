"""The curation stages: ``data.clean``, ``data.anonymize``, ``data.dedup``, ``data.features``,
``data.quality_filter`` and ``data.curate`` (all of them in one pass, then dedup).

Each runs the datatrove pipeline of :mod:`bielik.data.curate.pipeline` over the sharded inputs
(resumable per shard in ``<output>.work``), then finalises atomically into ``<output>``: the kept
documents (after the global dedup when enabled), the dropped ones with their reasons, the funnel
(``metrics.json`` and ``funnel.png``) and the stage record.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import shutil
from collections import Counter
from pathlib import Path

from bielik.artifacts import staged_dir, write_stage_record
from bielik.data.corpus import iter_jsonl_records
from bielik.data.curate.config import (
    AnonymizeStageConfig,
    CleanStageConfig,
    CurateConfig,
    DedupStageConfig,
    FeaturesStageConfig,
    PipelineBase,
    QualityFilterStageConfig,
)
from bielik.data.curate.dedup import DedupConfig, Deduplicator
from bielik.data.curate.pipeline import (
    AnonymizeStep,
    CleanStep,
    FeaturesWriter,
    QualityStep,
    check_files,
    dry_run_shards,
    funnel,
    gather_counts,
    log_file,
    plot_funnel,
    run_minhash,
    run_shards,
    work_dir,
)
from bielik.log import get_logger
from bielik.progress import progress

log = get_logger(__name__)


def _apply_minhash(work: Path, counts: Counter) -> Path:
    """With ``dedup.engine=datatrove`` :func:`run_minhash` already split the kept shards into
    ``minhash/data`` and ``minhash/dropped``: count those drops; returns the folder of kept shards."""
    n_dup = sum(1 for f in (work / "minhash" / "dropped").glob("*.jsonl.gz") for _ in iter_jsonl_records(f))
    counts["dropped_duplicate_near"] += n_dup
    counts["kept"] -= n_dup
    return work / "minhash" / "data"


def _copy_side_outputs(cfg: PipelineBase, work: Path, out: Path, minhash: bool, features: bool) -> None:
    """Dropped documents (with reasons), feature tables and datatrove's logs from ``work`` into ``out``."""
    hidden = lambda d, names: [n for n in names if n.startswith(".")]  # noqa: E731  (unfinished temp files)
    if cfg.keep_dropped:
        shutil.copytree(work / "dropped", out / "dropped", ignore=hidden)
        if minhash:
            for f in sorted((work / "minhash" / "dropped").glob("*.jsonl.gz")):
                shutil.copy(f, out / "dropped" / f"dup-{f.name}")
    if features:
        shutil.copytree(work / "features", out / "features")
    logs = out / "logs"
    logs.mkdir()
    if log_file(work).is_file():
        shutil.copy(log_file(work), logs / log_file(work).name)
    for task_logs in sorted(work.glob("logs*/logs")):  # datatrove's per-task logs of each executor run
        shutil.copytree(task_logs, logs / task_logs.parent.name)


def _write_kept(cfg: PipelineBase, kept_dir: Path, out: Path, deduper: Deduplicator | None, counts: Counter) -> None:
    """Copy the kept shards to ``out/data``; with ``deduper`` drop (and count) the duplicates on the way,
    writing them to ``out/dropped/dup-<shard>`` with ``drop_reason`` and ``duplicate_of``."""
    with progress("dedup + write" if deduper else "write", total=counts.get("kept", 0), unit="doc") as rep:
        for shard in sorted(kept_dir.glob("*.jsonl.gz")):
            with contextlib.ExitStack() as stack:
                fo = stack.enter_context(gzip.open(out / "data" / shard.name, "wt", encoding="utf-8"))
                fd = None  # opened at the shard's first duplicate
                for _, rec in iter_jsonl_records(shard):
                    rep.advance()
                    hit = deduper.check(rec["id"], rec["text"]) if deduper else None
                    if hit is None:
                        fo.write(json.dumps(rec, ensure_ascii=False) + "\n")
                        continue
                    reason, first = hit
                    counts[f"dropped_{reason}"] += 1
                    counts["kept"] -= 1
                    if cfg.keep_dropped:
                        if fd is None:
                            (out / "dropped").mkdir(exist_ok=True)
                            fd = stack.enter_context(
                                gzip.open(out / "dropped" / f"dup-{shard.name}", "wt", encoding="utf-8")
                            )
                        rec["curation"].update(drop_reason=reason, duplicate_of=first)
                        fd.write(json.dumps(rec, ensure_ascii=False) + "\n")


def stage_metrics(counts: Counter, tasks: int, extra: dict | None = None) -> dict:
    """``metrics.json`` of a curation stage from the summed counters (``dropped_*``, ``changed_*``, ``pii_*``)."""

    def prefixed(p: str) -> dict:
        return {k[len(p) :]: v for k, v in sorted(counts.items()) if k.startswith(p)}

    return {
        "input": counts.get("input", 0),
        "bad_records_skipped": counts.get("bad_records", 0),
        "kept": counts.get("kept", 0),
        "tasks": tasks,
        "funnel": funnel(counts),
        "dropped": prefixed("dropped_"),
        "changed": prefixed("changed_"),
        "pii_spans": prefixed("pii_"),
        **(extra or {}),
    }


def funnel_line(kind: str, metrics: dict, logs: Path) -> str:
    """One line for the log: ``data.curate: 15 -> 9 documents (language -1, quality -3, ...); logs in ...``."""
    steps = ", ".join(f"{r['step']} -{r['dropped']:,}" for r in metrics["funnel"][1:])
    return (
        f"{kind}: {metrics['input']:,} -> {metrics['kept']:,} documents"
        + (f" ({steps})" if steps else "")
        + f"; datatrove logs in {logs}"
    )


def _finalise(
    cfg: PipelineBase,
    kind: str,
    work: Path,
    tasks: int,
    dedup: DedupConfig | None,
    extra_metrics: dict | None = None,
    features: bool = False,
) -> dict:
    """Every shard is done: dedup (if asked), then write ``cfg.output`` atomically with the stage record."""
    counts = gather_counts(work)
    minhash = dedup is not None and dedup.engine == "datatrove"
    kept_dir = _apply_minhash(work, counts) if minhash else work / "kept"
    deduper = Deduplicator(dedup) if dedup is not None and not minhash else None
    with staged_dir(cfg.output, overwrite=cfg.overwrite) as out:
        (out / "data").mkdir()
        _copy_side_outputs(cfg, work, out, minhash, features)
        _write_kept(cfg, kept_dir, out, deduper, counts)
        metrics = stage_metrics(counts, tasks, extra_metrics)
        plot_funnel(
            metrics["funnel"],
            out / "funnel.png",
            f"{kind}: {counts.get('input', 0):,} → {counts.get('kept', 0):,} documents",
        )
        inputs = {f"input{i}": p for i, p in enumerate(cfg.inputs) if p != "shipped"}
        write_stage_record(out, kind, cfg, inputs, metrics)
    if not cfg.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    log.info(funnel_line(kind, metrics, Path(cfg.output) / "logs"))
    return metrics


def _run(cfg: PipelineBase, kind: str, steps: list, dedup: DedupConfig | None = None, features: bool = False) -> dict:
    files = check_files(cfg)
    if cfg.executor.dry_run:
        return dry_run_shards(cfg, steps, files)
    work, tasks, complete = run_shards(cfg, steps, files)
    if complete and dedup is not None and dedup.engine == "datatrove":
        complete = run_minhash(cfg, dedup, work)
    if not complete:
        # Slurm/Ray jobs run detached, or some local task failed: finalising needs every shard
        detached = cfg.executor.kind == "slurm"
        return {
            "status": "incomplete",
            "work_dir": str(work),
            "message": (
                "jobs submitted; when they have finished (squeue), re-run the same command to "
                "continue (dedup) and finalise"
                if detached
                else "not every shard has finished; re-run the same command to resume and finalise"
            ),
        }
    return _finalise(cfg, kind, work, tasks, dedup, features=features)


def clean(cfg: CleanStageConfig) -> dict:
    return _run(cfg, "data.clean", [CleanStep(cfg.clean)])


def anonymize(cfg: AnonymizeStageConfig) -> dict:
    return _run(cfg, "data.anonymize", [AnonymizeStep(cfg.anonymize)])


def dedup(cfg: DedupStageConfig) -> dict:
    return _run(cfg, "data.dedup", [], dedup=cfg.dedup)


def features(cfg: FeaturesStageConfig) -> dict:
    return _run(cfg, "data.features", [FeaturesWriter(str(work_dir(cfg.output)), cfg.max_chars)], features=True)


def quality_filter(cfg: QualityFilterStageConfig) -> dict:
    return _run(cfg, "data.quality_filter", [QualityStep(cfg.quality)])


def curate(cfg: CurateConfig) -> dict:
    from bielik.errors import ConfigError

    # the per-document steps in pipeline order; dedup runs after them, over all shards
    per_doc = {
        "clean": CleanStep(cfg.clean),
        "anonymize": AnonymizeStep(cfg.anonymize),
        "quality": QualityStep(cfg.quality),
    }
    valid = (*per_doc, "dedup")
    bad = [s for s in cfg.steps if s not in valid]
    if bad:
        raise ConfigError(f"steps: unknown step(s) {bad}; valid: {', '.join(valid)}")
    steps = [step for name, step in per_doc.items() if name in cfg.steps]
    return _run(cfg, "data.curate", steps, dedup=cfg.dedup if "dedup" in cfg.steps else None)


__all__ = [
    "CleanStageConfig",
    "AnonymizeStageConfig",
    "DedupStageConfig",
    "FeaturesStageConfig",
    "QualityFilterStageConfig",
    "CurateConfig",
    "clean",
    "anonymize",
    "dedup",
    "features",
    "quality_filter",
    "curate",
]
