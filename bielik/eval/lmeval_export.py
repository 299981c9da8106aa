"""Write bielik tasks as lm-evaluation-harness task YAMLs over local files (``dataset_path: json``).

The same task definition then runs in both harnesses: ``lm_eval --include_path <dir> --tasks <name>``.
Only what lm-eval computes natively is exported: acc, acc_norm, exact_match, and F1 of multiple-choice
tasks (lm-eval's ``f1`` is sklearn's binary F1 of (gold, pred), as SpeakLeash's ``utils.f1``); the
metrics that need SpeakLeash's ``utils.py`` (macro F1, F1 of extracted letters, Levenshtein, EQ-Bench)
are left out, and so are tasks whose documents need ``process_docs``.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from bielik.errors import ConfigError
from bielik.eval.tasks import TaskSpec

NATIVE = {"acc", "acc_norm", "exact_match"}


def lmeval_task_dict(spec: TaskSpec, files: dict[str, str | Path], name: str | None = None) -> dict:
    """lm-eval's YAML fields for ``spec`` reading ``files`` (split -> JSONL path)."""
    if spec.process_docs or spec.process_results:
        raise ConfigError(
            f"task {spec.task} needs SpeakLeash's utils.py (process_docs/process_results); it cannot be exported"
        )
    metrics = []
    for m in spec.metric_list:
        if m.metric in NATIVE or (
            m.metric == "f1" and spec.output_type == "multiple_choice" and (m.average or "binary") == "binary"
        ):
            metrics.append(
                {"metric": m.metric, "aggregation": "f1" if m.metric == "f1" else "mean", "higher_is_better": True}
            )
    splits = {k: str(Path(v).resolve()) for k, v in files.items()}

    def present(s):
        return s if s in splits else None

    test = present(spec.test_split) or present(spec.validation_split) or next(iter(splits))
    out = {
        "task": name or spec.task,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": splits},
        "output_type": spec.output_type,
        "training_split": present(spec.training_split),
        "validation_split": present(spec.validation_split) if present(spec.validation_split) != test else None,
        "test_split": test,
        "doc_to_text": spec.doc_to_text,
        "doc_to_target": spec.doc_to_target,
        "target_delimiter": spec.target_delimiter,
        "fewshot_delimiter": spec.fewshot_delimiter,
        "metric_list": metrics,
    }
    if spec.fewshot_split and present(spec.fewshot_split):
        out["fewshot_split"] = spec.fewshot_split
    if spec.fewshot_config.sampler != "default":
        out["fewshot_config"] = {"sampler": spec.fewshot_config.sampler}
    if spec.doc_to_choice is not None:
        out["doc_to_choice"] = spec.doc_to_choice
    if spec.output_type == "generate_until":
        out["generation_kwargs"] = dict(spec.generation_kwargs)
        if spec.filter_list:
            out["filter_list"] = [
                {
                    "name": f.name,
                    "filter": [
                        {
                            k: v
                            for k, v in s.model_dump().items()
                            if v is not None
                            and not (s.function == "take_first" and k != "function")
                            and not (
                                k in ("group_select", "fallback")
                                and v == {"group_select": 0, "fallback": "[invalid]"}[k]
                            )
                        }
                        for s in f.filter
                    ],
                }
                for f in spec.filter_list
            ]
    return {k: v for k, v in out.items() if v is not None}


def write_lmeval_task(
    spec: TaskSpec, files: dict[str, str | Path], directory: str | Path, name: str | None = None
) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = lmeval_task_dict(spec, files, name)
    path = directory / f"{data['task']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
