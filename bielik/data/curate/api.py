"""Stage entry points for the registry: configs imported eagerly (cheap), the pipeline lazily (it
needs the optional ``curate`` dependencies: datatrove, morfeusz2, xgboost-cpu, ...)."""

from __future__ import annotations

from bielik.data.curate.config import (  # noqa: F401  (re-exported for the registry)
    AnonymizeStageConfig, CleanStageConfig, CurateConfig, DedupStageConfig, FeaturesStageConfig,
    QualityFilterStageConfig,
)
from bielik.data.curate.quality import QualityEvalConfig, QualityTrainConfig  # noqa: F401
from bielik.data.curate.quality_data import QualitySetConfig  # noqa: F401


def clean(cfg: CleanStageConfig) -> dict:
    from bielik.data.curate import stages

    return stages.clean(cfg)


def anonymize(cfg: AnonymizeStageConfig) -> dict:
    from bielik.data.curate import stages

    return stages.anonymize(cfg)


def dedup(cfg: DedupStageConfig) -> dict:
    from bielik.data.curate import stages

    return stages.dedup(cfg)


def features(cfg: FeaturesStageConfig) -> dict:
    from bielik.data.curate import stages

    return stages.features(cfg)


def quality_filter(cfg: QualityFilterStageConfig) -> dict:
    from bielik.data.curate import stages

    return stages.quality_filter(cfg)


def curate(cfg: CurateConfig) -> dict:
    from bielik.data.curate import stages

    return stages.curate(cfg)


def quality_build(cfg: QualitySetConfig) -> dict:
    from bielik.data.curate.quality_data import build_quality_set

    return build_quality_set(cfg)


def quality_train(cfg: QualityTrainConfig) -> dict:
    from bielik.data.curate.quality import train_quality

    return train_quality(cfg)


def quality_eval(cfg: QualityEvalConfig) -> dict:
    from bielik.data.curate.quality import eval_quality

    return eval_quality(cfg)
