"""The curation stages: ``data.clean``, ``data.anonymize``, ``data.dedup``, ``data.features``,
``data.quality_filter`` and ``data.curate`` (all of them in one pass, then dedup).

Each runs the datatrove pipeline of :mod:`bielik.data.curate.pipeline` over the sharded inputs
(resumable per shard in ``<output>.work``), then finalises atomically into ``<output>``: the kept
documents (after the global dedup when enabled), the dropped ones with their reasons, the funnel
(``metrics.json`` and ``funnel.png``) and the stage record.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

from bielik.artifacts import staged_dir, write_stage_record
from bielik.data.corpus import iter_jsonl_records
from bielik.data.curate.config import (
    AnonymizeStageConfig, CleanStageConfig, CurateConfig, DedupStageConfig, FeaturesStageConfig, PipelineBase,
    QualityFilterStageConfig,
)
from bielik.data.curate.dedup import DedupConfig, Deduplicator
from bielik.data.curate.pipeline import (
    AnonymizeStep, CleanStep, FeaturesWriter, QualityStep, check_files, funnel, gather_counts, plot_funnel, run_minhash,
    run_shards, work_dir,
)
from bielik.log import get_logger
from bielik.progress import progress

log = get_logger(__name__)


def _finalise(cfg: PipelineBase, kind: str, work: Path, tasks: int, dedup: DedupConfig | None,
              extra_metrics: dict | None = None, features: bool = False) -> dict:
    counts = gather_counts(work)
    kept_dir, deduper = work / "kept", None
    if dedup is not None and dedup.engine == "datatrove":
        # run_minhash already split the kept shards into minhash/data and minhash/dropped
        kept_dir = work / "minhash" / "data"
        n_dup = sum(1 for f in (work / "minhash" / "dropped").glob("*.jsonl.gz") for _ in iter_jsonl_records(f))
        counts["dropped_duplicate_near"] += n_dup
        counts["kept"] -= n_dup
    elif dedup is not None:
        deduper = Deduplicator(dedup)
    with staged_dir(cfg.output, overwrite=cfg.overwrite) as out:
        (out / "data").mkdir()
        hidden = lambda d, names: [n for n in names if n.startswith(".")]  # noqa: E731
        if cfg.keep_dropped:
            shutil.copytree(work / "dropped", out / "dropped", ignore=hidden)
            if kept_dir != work / "kept":
                for f in sorted((work / "minhash" / "dropped").glob("*.jsonl.gz")):
                    shutil.copy(f, out / "dropped" / f"dup-{f.name}")
        if features:
            shutil.copytree(work / "features", out / "features")
        total_kept = counts.get("kept", 0)
        with progress("dedup + write" if deduper else "write", total=total_kept, unit="doc") as rep:
            for shard in sorted(kept_dir.glob("*.jsonl.gz")):
                dup_path = out / "dropped" / f"dup-{shard.name}"
                with gzip.open(out / "data" / shard.name, "wt", encoding="utf-8") as fo:
                    dup_fh = None
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
                            rec["curation"].update(drop_reason=reason, duplicate_of=first)
                            if dup_fh is None:
                                dup_path.parent.mkdir(exist_ok=True)
                                dup_fh = gzip.open(dup_path, "wt", encoding="utf-8")
                            dup_fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                    if dup_fh is not None:
                        dup_fh.close()
        rows = funnel(counts)
        plot_funnel(rows, out / "funnel.png", f"{kind}: {counts.get('input', 0):,} → {counts.get('kept', 0):,} documents")
        metrics = {
            "input": counts.get("input", 0), "bad_records_skipped": counts.get("bad_records", 0),
            "kept": counts.get("kept", 0), "tasks": tasks, "funnel": rows,
            "dropped": {k[len("dropped_"):]: v for k, v in sorted(counts.items()) if k.startswith("dropped_")},
            "changed": {k[len("changed_"):]: v for k, v in sorted(counts.items()) if k.startswith("changed_")},
            "pii_spans": {k[len("pii_"):]: v for k, v in sorted(counts.items()) if k.startswith("pii_")},
            **(extra_metrics or {}),
        }
        write_stage_record(out, kind, cfg, {f"input{i}": p for i, p in enumerate(cfg.inputs) if p != "shipped"}, metrics)
    if not cfg.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return metrics


def _run(cfg: PipelineBase, kind: str, steps: list, dedup: DedupConfig | None = None, features: bool = False) -> dict:
    files = check_files(cfg)
    work, tasks, complete = run_shards(cfg, steps, files)
    if complete and dedup is not None and dedup.engine == "datatrove":
        complete = run_minhash(cfg, dedup, work)
    if not complete:
        # Slurm/Ray jobs run detached, or some local task failed: finalising needs every shard
        detached = cfg.executor.kind == "slurm"
        return {"status": "incomplete", "work_dir": str(work),
                "message": ("jobs submitted; when they have finished (squeue), re-run the same command to "
                            "continue (dedup) and finalise" if detached else
                            "not every shard has finished; re-run the same command to resume and finalise")}
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
    per_doc = {"clean": CleanStep(cfg.clean), "anonymize": AnonymizeStep(cfg.anonymize), "quality": QualityStep(cfg.quality)}
    valid = (*per_doc, "dedup")
    bad = [s for s in cfg.steps if s not in valid]
    if bad:
        raise ConfigError(f"steps: unknown step(s) {bad}; valid: {', '.join(valid)}")
    steps = [step for name, step in per_doc.items() if name in cfg.steps]
    return _run(cfg, "data.curate", steps, dedup=cfg.dedup if "dedup" in cfg.steps else None)


__all__ = ["CleanStageConfig", "AnonymizeStageConfig", "DedupStageConfig", "FeaturesStageConfig",
           "QualityFilterStageConfig", "CurateConfig", "clean", "anonymize", "dedup", "features", "quality_filter",
           "curate"]
