"""Stage entry points for the registry: configs imported eagerly (cheap), the pipeline lazily (it
needs the optional ``curate`` dependencies: datatrove, morfeusz2, xgboost-cpu, ...)."""

from __future__ import annotations

from bielik.data.curate.config import (  # noqa: F401  (re-exported for the registry)
    AnonymizeStageConfig,
    CleanStageConfig,
    CurateConfig,
    DedupStageConfig,
    FeaturesStageConfig,
    QualityFilterStageConfig,
)
from bielik.data.curate.quality import QualityEvalConfig, QualityTrainConfig  # noqa: F401
from bielik.data.curate.quality_data import QualitySetConfig  # noqa: F401


def _lazy(module: str, name: str):
    """``module.name(cfg)``, importing ``module`` only when the stage runs."""

    def run(cfg):
        from importlib import import_module

        return getattr(import_module(module), name)(cfg)

    run.__name__ = run.__qualname__ = name
    return run


_STAGES = "bielik.data.curate.stages"
clean = _lazy(_STAGES, "clean")
anonymize = _lazy(_STAGES, "anonymize")
dedup = _lazy(_STAGES, "dedup")
features = _lazy(_STAGES, "features")
quality_filter = _lazy(_STAGES, "quality_filter")
curate = _lazy(_STAGES, "curate")
quality_build = _lazy("bielik.data.curate.quality_data", "build_quality_set")
quality_train = _lazy("bielik.data.curate.quality", "train_quality")
quality_eval = _lazy("bielik.data.curate.quality", "eval_quality")
