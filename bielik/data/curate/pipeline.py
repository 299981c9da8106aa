"""Curation at scale: our steps as datatrove pipeline steps, run by datatrove's executors.

Why datatrove (and not Ray Data): the work is a per-document map over sharded JSONL/Parquet files
followed by a global dedup — exactly datatrove's model (reader → steps → writer per task), with
per-task completion markers (a re-run skips finished shards: resumable per shard), per-task logs and
stats, and the same pipeline object running on ``LocalPipelineExecutor`` (a laptop),
``SlurmPipelineExecutor`` (one array job, one task per shard) or ``RayPipelineExecutor`` (through
the subclasses in :mod:`bielik.data.curate.executors`, which keep datatrove's output off the console). Ray Data
would add a 250 MB dependency to do the same map, with no per-shard resume.

One run (any of the ``data.*`` curation stages) works like this::

    <output>.work/                 resumable working folder (kept until the stage completes)
        curation.log               datatrove's log of the driving process (never the console: executors.py)
        logs/                      datatrove's logging dir: completions/, logs/ (one per task), stats/
        kept/00000.jsonl.gz ...    documents that passed, one file per task (rank)
        dropped/00000.jsonl.gz ... documents that were dropped, with their reason
        counters/00000.json        per-task counts (input, bad lines, drops by reason, changes)
    <output>/                      written atomically once every shard is done (+ dedup)
        data/00000.jsonl.gz ...    the curated corpus
        dropped/...                every dropped document with ``curation.drop_reason``
        logs/                      curation.log and the tasks' logs
        funnel.png, metrics.json (funnel), config.yaml, lineage.json

Every output record is ``{"id", "text", "url"?, "source"?, "curation": {...}}`` where
``curation`` records what happened: ``changes`` (encoding repaired, boilerplate lines removed,
...), ``pii`` (type, start, end of each replaced span), ``quality`` (class probabilities) and, for
dropped documents, ``drop_reason`` (and ``duplicate_of``).

Shards are input files (``files[rank::tasks]``): split a large corpus into many files.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
from collections import Counter
from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.writers.disk_base import DiskWriter
from datatrove.utils.word_tokenizers import WordTokenizer

from bielik.data.curate.config import AnonymizeConfig, PipelineBase, QualityFilterOptions
from bielik.data.curate.executors import build_executor, datatrove_logs, slurm_dry_run
from bielik.errors import ConfigError, DataError
from bielik.log import get_logger

log = get_logger(__name__)


# --- datatrove steps --------------------------------------------------------------------------
# Module-level classes (not closures) so that datatrove's worker processes can pickle them; heavy
# members (models, Morfeusz) are built lazily inside the worker.

# record fields carried from input to output unchanged (besides id and text)
_PASSTHROUGH = ("url", "source", "lang", "license")


def _curation(doc) -> dict:
    return doc.metadata.setdefault("curation", {})


def _dropped(doc) -> bool:
    return "drop_reason" in doc.metadata.get("curation", {})


def _write_counter(folder: str, name: str, counts: dict) -> None:
    from bielik.artifacts import write_json

    write_json(Path(folder) / f"{name}.json", counts)


class BielikReader(PipelineStep):
    """Reads this task's files (``files[rank::world_size]``) with strict line checking."""

    name = "bielik reader"
    type = "📖 - READER"

    def __init__(self, files: list[str], text_key: str, on_error: str, counters_dir: str):
        super().__init__()
        self.files, self.text_key, self.on_error, self.counters_dir = files, text_key, on_error, counters_dir

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        from bielik.data.curate.io import iter_input_records

        if data:
            yield from data
        bad = [0]
        n = 0
        for f in self.files[rank::world_size]:
            self.stat_update("input_files")
            for lineno, rec in iter_input_records(Path(f), self.on_error, self.text_key, bad):
                meta = {k: rec[k] for k in (*_PASSTHROUGH, "curation") if rec.get(k) is not None}
                meta["file"], meta["line"] = Path(f).name, lineno
                n += 1
                self.stat_update("documents")
                yield Document(
                    text=rec[self.text_key], id=str(rec.get("id", f"{Path(f).name}:{lineno}")), metadata=meta
                )
        self.stat_update("bad_records", value=bad[0])
        _write_counter(self.counters_dir, f"reader_{rank:05d}", {"input": n, "bad_records": bad[0]})


class CleanStep(PipelineStep):
    name = "bielik clean"
    type = "🔻 - FILTER"

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg

    def run(self, data, rank: int = 0, world_size: int = 1):
        from bielik.data.curate.clean import Cleaner

        cleaner = Cleaner(self.cfg)
        for doc in data:
            if not _dropped(doc):
                with self.track_time():
                    r = cleaner(doc.text, doc.metadata)
                doc.text = r.text
                if r.changes:
                    _curation(doc).setdefault("changes", []).extend(r.changes)
                if not r.keep:
                    _curation(doc)["drop_reason"] = r.reason
                    self.stat_update(f"dropped_{r.reason}")
            yield doc


class AnonymizeStep(PipelineStep):
    name = "bielik anonymize"
    type = "✂️ - FORMAT"

    def __init__(self, cfg: AnonymizeConfig):
        super().__init__()
        self.cfg = cfg

    def run(self, data, rank: int = 0, world_size: int = 1):
        from bielik.data.curate.pii import anonymize

        types = tuple(self.cfg.types)
        for doc in data:
            if not _dropped(doc):
                with self.track_time():
                    text, spans = anonymize(doc.text, types)
                if spans:
                    doc.text = text
                    cur = _curation(doc)
                    cur.setdefault("changes", []).append(f"pii_replaced:{len(spans)}")
                    if self.cfg.report_spans:
                        cur["pii"] = [{"type": s.type, "start": s.start, "end": s.end} for s in spans]
                    for s in spans:
                        self.stat_update(f"pii_{s.type}")
            yield doc


class QualityStep(PipelineStep):
    """Adds class probabilities; with ``filter`` drops documents with P(HIGH) ≤ threshold."""

    name = "bielik quality"
    type = "🔻 - FILTER"

    def __init__(self, cfg: QualityFilterOptions, filter: bool = True):
        super().__init__()
        self.cfg, self.filter = cfg, filter

    def run(self, data, rank: int = 0, world_size: int = 1):
        from datatrove.utils.batching import batched

        from bielik.data.curate.quality import QualityModel

        model = QualityModel(None if self.cfg.model == "default" else self.cfg.model, nthread=self.cfg.nthread)
        i_high = model.labels.index("HIGH")
        for batch in batched(data, 64):
            live = [d for d in batch if not _dropped(d)]
            if live:
                with self.track_time():
                    P = model.proba([d.text for d in live])
                for d, p in zip(live, P):
                    _curation(d)["quality"] = {lab: round(float(v), 4) for lab, v in zip(model.labels, p)}
                    if self.filter and not p[i_high] > self.cfg.threshold:
                        _curation(d)["drop_reason"] = "quality"
                        self.stat_update("dropped_quality")
            yield from batch


class FeaturesWriter(PipelineStep):
    """Writes ``<work>/features/<rank>.parquet``: id + one column per stylometric feature."""

    name = "bielik features"
    type = "💽 - WRITER"

    def __init__(self, work: str, max_chars: int | None):
        super().__init__()
        self.work, self.max_chars = work, max_chars

    def run(self, data, rank: int = 0, world_size: int = 1):
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        from bielik.data.curate.stylometry import FEATURE_NAMES, FeatureExtractor

        fx = FeatureExtractor(max_chars=self.max_chars)
        ids, rows = [], []
        for doc in data:
            if not _dropped(doc):
                with self.track_time():
                    rows.append(fx(doc.text))
                ids.append(doc.id)
            yield doc
        X = np.stack(rows) if rows else np.zeros((0, len(FEATURE_NAMES)), np.float32)
        table = pa.table({"id": ids, **{n: X[:, i] for i, n in enumerate(FEATURE_NAMES)}})
        path = Path(self.work) / "features" / f"{rank:05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        pq.write_table(table, tmp)
        tmp.replace(path)


class NormalizedWordTokenizer(WordTokenizer):
    """Words of :func:`bielik.data.curate.dedup.normalize`'d text: the same shingles as the
    datasketch engine, and no NLTK/spaCy download for Polish."""

    def word_tokenize(self, text: str) -> list[str]:
        from bielik.data.curate.dedup import normalize

        return normalize(text).split()

    def sent_tokenize(self, text: str) -> list[str]:
        return [s for s in re.split(r"(?<=[.!?…])\s+", text) if s]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in re.finditer(r"\S+", text)]


class RecordWriter(DiskWriter):
    """Our record format (``id``, ``text``, ``curation``, ...) as gzipped JSONL via datatrove's
    writer machinery (``${rank}`` files); ``drop_reason`` marks what it writes as dropped."""

    default_output_filename = "${rank}.jsonl"
    name = "bielik records"

    def __init__(self, output_folder: str, drop_reason: str | None = None):
        super().__init__(output_folder, compression="gzip", mode="wt", adapter=_adapt_record)
        self.drop_reason = drop_reason

    def _write(self, document: dict, file_handler, _filename: str) -> None:
        if self.drop_reason:
            document["curation"]["drop_reason"] = self.drop_reason
        file_handler.write(json.dumps(document, ensure_ascii=False) + "\n")


def _adapt_record(self, doc) -> dict:
    rec = _record(doc)
    if "minhash_cluster_id" in doc.metadata and doc.metadata["minhash_cluster_id"] != -1:
        rec["curation"]["duplicate_cluster"] = int(doc.metadata["minhash_cluster_id"])
    return rec


def _record(doc) -> dict:
    meta = doc.metadata
    rec = {"id": doc.id, "text": doc.text}
    for k in _PASSTHROUGH:
        if k in meta:
            rec[k] = meta[k]
    rec["curation"] = meta.get("curation", {})
    return rec


class SplitWriter(PipelineStep):
    """Kept documents to ``kept/<rank>.jsonl.gz``, dropped ones to ``dropped/``; counts the funnel."""

    name = "bielik writer"
    type = "💽 - WRITER"

    def __init__(self, work: str, keep_dropped: bool):
        super().__init__()
        self.work, self.keep_dropped = work, keep_dropped

    def run(self, data, rank: int = 0, world_size: int = 1):
        from bielik.progress import progress

        counts: Counter = Counter()
        work = Path(self.work)
        (work / "kept").mkdir(parents=True, exist_ok=True)
        (work / "dropped").mkdir(parents=True, exist_ok=True)
        name = f"{rank:05d}.jsonl.gz"
        tmp_k, tmp_d = work / "kept" / f".{name}.tmp", work / "dropped" / f".{name}.tmp"
        with (
            gzip.open(tmp_k, "wt", encoding="utf-8") as fk,
            gzip.open(tmp_d, "wt", encoding="utf-8") as fd,
            progress(f"shard {rank + 1}/{world_size}", unit="doc", every=30.0) as rep,
        ):
            for doc in data:
                cur = doc.metadata.get("curation", {})
                counts["seen"] += 1
                for ch in cur.get("changes", []):
                    counts[f"changed_{ch.split(':')[0]}"] += 1
                for sp in cur.get("pii", []):
                    counts[f"pii_{sp['type']}"] += 1
                if "drop_reason" in cur:
                    counts[f"dropped_{cur['drop_reason']}"] += 1
                    if self.keep_dropped:
                        fd.write(json.dumps(_record(doc), ensure_ascii=False) + "\n")
                else:
                    counts["kept"] += 1
                    fk.write(json.dumps(_record(doc), ensure_ascii=False) + "\n")
                rep.advance()
                yield doc
        # a shard's files appear complete or not at all; a crashed shard is redone on resume
        tmp_k.replace(work / "kept" / name)
        tmp_d.replace(work / "dropped" / name)
        _write_counter(str(work / "counters"), f"writer_{rank:05d}", dict(counts))


# --- running ----------------------------------------------------------------------------------


def work_dir(output: str) -> Path:
    out = Path(output)
    return out.with_name(out.name + ".work")


def completed_ranks(work: Path, tasks: int, logs_name: str = "logs") -> list[int]:
    done = work / logs_name / "completions"
    return [r for r in range(tasks) if (done / f"{r:05d}").exists()]


def log_file(work: Path) -> Path:
    """The stage's log: datatrove's records of the driving process (tasks also log to their own files)."""
    return work / "curation.log"


def prepare_shards(cfg: PipelineBase, steps: list, files: list[Path]) -> tuple[Path, int, list]:
    """The work dir (checked against its manifest), the task count and the pipeline reader → steps → writer."""
    work = work_dir(cfg.output)
    tasks = cfg.executor.tasks or len(files)
    # what decides the shards' content; how they are scheduled (workers, node slices) may change
    conf = cfg.model_dump(mode="json", exclude={"overwrite", "keep_work", "executor"})
    manifest = {"files": [str(f) for f in files], "tasks": tasks, "config": conf}
    man_path = work / "manifest.json"
    if man_path.exists():
        old = json.loads(man_path.read_text(encoding="utf-8"))
        if old["files"] != manifest["files"] or old["tasks"] != tasks or old["config"] != manifest["config"]:
            log.warning(f"{work} belongs to a different run (inputs, tasks or config changed): starting afresh")
            shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    man_path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    pipeline = [
        BielikReader([str(f) for f in files], cfg.text_key, cfg.on_error, str(work / "counters")),
        *steps,
        SplitWriter(str(work), cfg.keep_dropped),
    ]
    done_before = completed_ranks(work, tasks)
    if done_before:
        log.info(f"resuming: {len(done_before)}/{tasks} shards already done in {work}")
    return work, tasks, pipeline


def run_shards(cfg: PipelineBase, steps: list, files: list[Path]) -> tuple[Path, int, bool]:
    """Run reader → ``steps`` → writer over every shard; returns (work dir, tasks, all shards done)."""
    work, tasks, pipeline = prepare_shards(cfg, steps, files)
    with datatrove_logs(log_file(work)):  # executors log from their constructors too (Ray: local logging dir)
        build_executor(pipeline, cfg.executor, tasks, work).run()
    return work, tasks, len(completed_ranks(work, tasks)) == tasks


def dry_run_shards(cfg: PipelineBase, steps: list, files: list[Path]) -> dict:
    """``executor.dry_run`` (Slurm): the sbatch script(s) the shard job would submit; nothing is submitted."""
    if cfg.executor.kind != "slurm":
        raise ConfigError(f"executor.dry_run: only with executor.kind=slurm (got {cfg.executor.kind!r})")
    work, tasks, pipeline = prepare_shards(cfg, steps, files)
    with datatrove_logs(log_file(work)):
        jobs = slurm_dry_run(build_executor(pipeline, cfg.executor, tasks, work))
    script = jobs[0]["script"]
    return {
        "status": "incomplete",
        "dry_run": True,
        "work_dir": str(work),
        "tasks": tasks,
        "sbatch": jobs,
        "message": f"dry run, nothing submitted: sbatch script for {tasks} task(s) "
        f"(in {work / 'logs' / 'launch_script.slurm'}):\n{script}",
    }


def run_minhash(cfg: PipelineBase, dedup, work: Path) -> bool:
    """datatrove's 4-stage MinHash dedup over ``work/kept`` into ``work/minhash/{data,dropped}``.

    Signatures per shard → ``b`` bucket tasks → one clustering task → the filter re-reads each shard
    in the same order and keeps one document per cluster. Returns whether all four stages are done
    (on Slurm they are submitted as dependent jobs; re-run the command when they have finished).
    """
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.utils.hashing import HashConfig

    from bielik.data.curate.dedup import lsh_bands

    files = sorted(str(f) for f in (work / "kept").glob("*.jsonl.gz"))
    tasks = len(files)
    bands, rows = lsh_bands(dedup.threshold, dedup.num_perm)
    # sha1 shingle hashes: datatrove's xxhash path passes str, which xxhash ≥ 4 rejects
    mh = MinhashConfig(
        n_grams=dedup.ngram,
        num_buckets=bands,
        hashes_per_bucket=rows,
        seed=dedup.seed,
        hash_config=HashConfig(precision=64, hash_fc="sha1"),
    )
    mdir = work / "minhash"
    counters = str(mdir / "counters")

    def reader():
        return BielikReader(files, "text", "raise", counters)

    with datatrove_logs(log_file(work)):
        ex = cfg.executor
        sig, buckets, remove = str(mdir / "signatures"), str(mdir / "buckets"), str(mdir / "remove_ids")
        s1 = build_executor(
            [reader(), MinhashDedupSignature(sig, config=mh, language=NormalizedWordTokenizer())],
            ex,
            tasks,
            work,
            "logs-minhash1",
            whole=True,
        )
        s2 = build_executor(
            [MinhashDedupBuckets(sig, buckets, config=mh)],
            ex,
            mh.num_buckets,
            work,
            "logs-minhash2",
            depends=s1,
            whole=True,
        )
        s3 = build_executor(
            [MinhashDedupCluster(buckets, remove, config=mh, save_cluster_id=True)],
            ex,
            1,
            work,
            "logs-minhash3",
            depends=s2,
            whole=True,
        )
        dropped = RecordWriter(str(mdir / "dropped"), "duplicate_near")
        s4 = build_executor(
            [
                reader(),
                MinhashDedupFilter(remove, load_cluster_ids=True, exclusion_writer=dropped),
                RecordWriter(str(mdir / "data")),
            ],
            ex,
            tasks,
            work,
            "logs-minhash4",
            depends=s3,
            whole=True,
        )
        s4.run()  # runs (or submits) its dependencies first
    return len(completed_ranks(work, tasks, "logs-minhash4")) == tasks


def gather_counts(work: Path) -> Counter:
    total: Counter = Counter()
    for f in sorted((work / "counters").glob("*.json")):
        total.update(json.loads(f.read_text(encoding="utf-8")))
    return total


FUNNEL_ORDER = (
    "blocklisted_domain",
    "blocklisted_source",
    "encoding_errors",
    "boilerplate",
    "broken_table",
    "non_linguistic",
    "truncated",
    "too_short",
    "language",
    "quality",
    "duplicate_exact",
    "duplicate_near",
)


def funnel(counts: Counter) -> list[dict]:
    """Documents remaining after each drop reason, in pipeline order."""
    remaining = counts.get("input", 0)
    rows = [{"step": "input", "dropped": 0, "remaining": remaining}]
    reasons = {k[len("dropped_") :]: v for k, v in counts.items() if k.startswith("dropped_")}
    lang = sum(v for k, v in reasons.items() if k.startswith("language_"))
    ordered = [(r, lang if r == "language" else reasons.get(r, 0)) for r in FUNNEL_ORDER]
    ordered += [(r, v) for r, v in reasons.items() if r not in FUNNEL_ORDER and not r.startswith("language_")]
    for r, v in ordered:
        if v:
            remaining -= v
            rows.append({"step": r, "dropped": v, "remaining": remaining})
    return rows


def plot_funnel(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    names = [r["step"] for r in rows][::-1]
    ax.barh(names, [r["remaining"] for r in rows][::-1], color="#3b6ea8")
    for i, r in enumerate(rows[::-1]):
        ax.text(
            r["remaining"],
            i,
            f" {r['remaining']:,}" + (f"  (−{r['dropped']:,})" if r["dropped"] else ""),
            va="center",
            fontsize=8,
        )
    ax.set_xlabel("documents remaining")
    ax.set_title(title, fontsize=10)
    ax.set_xlim(0, max(r["remaining"] for r in rows) * 1.35 + 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def check_files(cfg: PipelineBase) -> list[Path]:
    from bielik.data.curate.io import expand_inputs

    files = expand_inputs(cfg.inputs)
    if Path(cfg.output).exists() and not cfg.overwrite:
        raise DataError(f"output {cfg.output} already exists (pass overwrite=true to replace it)")
    return files
