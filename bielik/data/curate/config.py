"""Configs of the curation stages (pydantic only: importing them costs nothing and needs none of
the optional curation dependencies)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from bielik.config import StageConfig
from bielik.data.curate.clean import CleanConfig
from bielik.data.curate.dedup import DedupConfig
from bielik.data.curate.pii import PII_TYPES

DEFAULT_THRESHOLD = 0.90  # keep a document when P(HIGH) > this (the reports' threshold)
DEFAULT_MAX_CHARS = 5000  # stylometric features are computed on this many leading characters


class ExecutorConfig(StageConfig):
    kind: Literal["local", "slurm", "ray"] = "local"
    tasks: int = Field(0, ge=0, description="shards (tasks); 0 = one per input file")
    workers: int = Field(1, ge=-1, description="parallel worker processes for local/ray (-1 = one per task)")
    local_tasks: int = Field(-1, ge=-1, description="local: run only this many tasks on this node (multi-node by hand)")
    local_rank_offset: int = Field(0, ge=0, description="local: first task this node runs")
    partition: str | None = Field(None, description="slurm partition")
    time: str = Field("04:00:00", description="slurm time limit per task")
    cpus_per_task: int = Field(1, ge=1)
    mem_per_cpu_gb: float = Field(2.0, gt=0)
    venv_path: str | None = Field(None, description="slurm: virtualenv activate script for the jobs")
    sbatch_args: dict[str, Any] = Field(default_factory=dict)
    dry_run: bool = Field(False, description="slurm: write and print the sbatch script instead of submitting it")


class AnonymizeConfig(StageConfig):
    types: list[str] = Field(default_factory=lambda: list(PII_TYPES))
    report_spans: bool = Field(True, description="keep the span-level report in each record's curation.pii")


class QualityFilterOptions(StageConfig):
    model: str = Field("default", description="quality model directory ('default' = the shipped model)")
    threshold: float = Field(DEFAULT_THRESHOLD, gt=0, lt=1, description="keep a document when P(HIGH) > threshold")
    nthread: int = Field(1, ge=1)


class PipelineBase(StageConfig):
    inputs: list[str] = Field(..., description="JSONL(.gz)/Parquet files or folders ('shipped' = the packaged corpus)")
    output: str
    text_key: str = "text"
    on_error: Literal["raise", "skip"] = Field(
        "raise", description="a malformed record: raise (file:line) or skip and count"
    )
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    keep_dropped: bool = Field(True, description="write dropped documents (with reasons) to <output>/dropped")
    keep_work: bool = Field(False, description="keep <output>.work after success")
    overwrite: bool = False


class CleanStageConfig(PipelineBase):
    output: str = "runs/clean"
    clean: CleanConfig = Field(default_factory=CleanConfig)


class AnonymizeStageConfig(PipelineBase):
    output: str = "runs/anonymized"
    anonymize: AnonymizeConfig = Field(default_factory=AnonymizeConfig)


class DedupStageConfig(PipelineBase):
    output: str = "runs/dedup"
    dedup: DedupConfig = Field(default_factory=DedupConfig)


class FeaturesStageConfig(PipelineBase):
    output: str = "runs/features"
    max_chars: int | None = Field(
        DEFAULT_MAX_CHARS, description="features are computed on the first max_chars characters (None = all)"
    )
    keep_dropped: bool = False


class QualityFilterStageConfig(PipelineBase):
    output: str = "runs/quality-filtered"
    quality: QualityFilterOptions = Field(default_factory=QualityFilterOptions)


class CurateConfig(PipelineBase):
    """Raw documents → cleaned, anonymised, quality-filtered, deduplicated corpus."""

    output: str = "runs/curated"
    steps: list[str] = Field(
        default_factory=lambda: ["clean", "anonymize", "quality", "dedup"],
        description="subset of clean, anonymize, quality, dedup (always in this order)",
    )
    clean: CleanConfig = Field(default_factory=CleanConfig)
    anonymize: AnonymizeConfig = Field(default_factory=AnonymizeConfig)
    quality: QualityFilterOptions = Field(default_factory=QualityFilterOptions)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
