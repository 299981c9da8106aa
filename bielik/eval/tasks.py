"""Evaluation tasks as data: lm-evaluation-harness task definitions in YAML, rendered with Jinja2.

Each file under ``bielik/resources/eval/tasks/`` holds one task family (the SpeakLeash Open PL LLM
Leaderboard defines ten); its ``tasks`` mapping uses lm-eval's own field names (``doc_to_text``,
``doc_to_target``, ``doc_to_choice``, ``generation_kwargs``, ``filter_list``, ``metric_list``,
``*_split``, ``fewshot_config``), copied from SpeakLeash's fork, so a task reads the same here and in
lm-eval (:mod:`bielik.eval.lmeval_export` writes it back out as an lm-eval YAML). bielik adds:

* ``dataset.files``: split -> file(s) relative to a data directory (JSONL, CSV, TSV or Parquet);
  the first existing candidate wins;
* ``extends``: start from another task of the same family;
* ``process_docs``: the name of a document filter in :mod:`bielik.eval.processors`;
* ``leaderboard``: the metric key the leaderboard reads, its baseline (``null`` = the majority-class
  score of the evaluated split, which is how the known baselines were made), an optional aggregate
  (``rag_reader`` / ``rag_reranking``) and the metric's scale.

Prompts follow lm-eval exactly: a field name yields the field, anything else is a Jinja2 template
rendered with ``StrictUndefined`` and ``keep_trailing_newline``; a numeric target of a task with
choices is an index; k-shot contexts are ``q_1 + " " + a_1 + "\\n\\n" + ... + q``, the examples
drawn with ``random.Random(seed).sample`` from the few-shot split in document order (lm-eval's
ContextSampler), excluding the document itself when the pool is the evaluated split.
"""

from __future__ import annotations

import ast
import functools
import random
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from bielik.config import deep_merge
from bielik.errors import ConfigError, DataError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class DatasetSpec(_Strict):
    hf_path: str | None = None
    hf_name: str | None = None
    files: dict[str, str | list[str]] = Field(default_factory=dict)


class FilterStep(_Strict):
    function: Literal["regex", "take_first", "lowercase", "uppercase"]
    regex_pattern: str | None = None
    group_select: int = 0
    fallback: str = "[invalid]"


class FilterSpec(_Strict):
    name: str
    filter: list[FilterStep]


class MetricSpec(_Strict):
    metric: str
    aggregation: str | None = None  # informative: every metric here defines its own aggregation
    higher_is_better: bool = True
    average: Literal["binary", "macro"] | None = None  # f1
    label_map: dict[str, int] | None = None  # f1 of a generation task: answer -> class id
    default_label: int = 0
    strip_pattern: str | None = None  # levenshtein
    lstrip: bool = False


class LeaderboardSpec(_Strict):
    metric: str
    baseline: float | None = None
    aggregate: Literal["rag_reader", "rag_reranking"] | None = None
    scale: float = 1.0  # the metric's maximum (EQ-Bench scores are 0-100)
    group: str | None = None


class FewshotConfig(_Strict):
    sampler: Literal["default", "first_n"] = "default"


class TaskSpec(_Strict):
    task: str
    family: str
    output_type: Literal["multiple_choice", "generate_until"]
    dataset: DatasetSpec
    training_split: str | None = None
    validation_split: str | None = None
    test_split: str | None = None
    fewshot_split: str | None = None
    fewshot_config: FewshotConfig = Field(default_factory=FewshotConfig)
    max_fewshot: int | None = None  # e.g. 0 for EQ-Bench, which the leaderboard scores zero-shot only
    process_docs: str | None = None
    doc_to_text: str
    doc_to_target: str
    doc_to_choice: list[str] | str | None = None
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    generation_kwargs: dict[str, Any] = Field(default_factory=dict)
    filter_list: list[FilterSpec] = Field(default_factory=list)
    process_results: str | None = None
    metric_list: list[MetricSpec]
    leaderboard: LeaderboardSpec | None = None
    get_data: str = ""

    @property
    def until(self) -> list[str]:
        until = self.generation_kwargs.get("until", [self.fewshot_delimiter])
        return [until] if isinstance(until, str) else list(until)

    @property
    def max_gen_toks(self) -> int:
        return int(self.generation_kwargs.get("max_gen_toks", 256))


def tasks_dir() -> Path:
    return Path(str(resources.files("bielik") / "resources" / "eval" / "tasks"))


def shipped_data_dir() -> Path:
    return Path(str(resources.files("bielik") / "resources" / "eval" / "data"))


def _load_family(path: Path) -> list[TaskSpec]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"task file {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("tasks"), dict):
        raise ConfigError(f"task file {path} must hold a mapping with a 'tasks' mapping")
    family = raw.get("family", path.stem)
    entries: dict[str, dict] = raw["tasks"]
    resolved: dict[str, dict] = {}

    def resolve(name: str, seen: tuple[str, ...] = ()) -> dict:
        if name in resolved:
            return resolved[name]
        if name not in entries:
            raise ConfigError(f"task file {path}: '{seen[-1]}' extends unknown task '{name}'")
        if name in seen:
            raise ConfigError(f"task file {path}: circular 'extends' through {' -> '.join(seen + (name,))}")
        entry = dict(entries[name])
        parent = entry.pop("extends", None)
        if parent is not None:
            base = {k: v for k, v in resolve(parent, seen + (name,)).items() if k != "task"}
            # a child's dataset replaces the parent's whole (files of another dataset must not mix)
            entry = {
                **deep_merge(base, {k: v for k, v in entry.items() if k != "dataset"}),
                **({"dataset": entry["dataset"]} if "dataset" in entry else {}),
            }
        resolved[name] = {**entry, "task": name}
        return resolved[name]

    specs = []
    for name in entries:
        data = {"family": family, "get_data": raw.get("get_data", ""), **resolve(name)}
        try:
            specs.append(TaskSpec.model_validate(data))
        except Exception as exc:  # pydantic.ValidationError: name the file and task
            raise ConfigError(f"task file {path}, task '{name}': {exc}") from None
    return specs


@functools.lru_cache(maxsize=8)
def _registry(extra_dirs: tuple[str, ...] = ()) -> dict[str, TaskSpec]:
    out: dict[str, TaskSpec] = {}
    for d in (tasks_dir(), *map(Path, extra_dirs)):
        for f in sorted(d.glob("*.yaml")):
            for spec in _load_family(f):
                out[spec.task] = spec
    return out


def all_tasks(include_path: list[str] | None = None) -> dict[str, TaskSpec]:
    """Every known task by name (shipped families plus YAML files in ``include_path`` folders)."""
    return dict(_registry(tuple(include_path or ())))


def get_task(name: str, include_path: list[str] | None = None) -> TaskSpec:
    tasks = all_tasks(include_path)
    if name not in tasks:
        import difflib

        near = difflib.get_close_matches(name, tasks, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(near)}?" if near else f"; known tasks: {', '.join(sorted(tasks))}"
        raise ConfigError(f"unknown evaluation task '{name}'{hint}")
    return tasks[name]


def leaderboard_tasks(include_path: list[str] | None = None) -> list[str]:
    return [n for n, t in all_tasks(include_path).items() if t.leaderboard is not None]


# ---------------------------------------------------------------------------------------- prompts


def _regex_replace(string: str, pattern: str, repl: str, count: int = 0) -> str:
    return re.sub(pattern, repl, string, count=count)


@functools.lru_cache(maxsize=1)
def _jinja_env():
    from jinja2 import BaseLoader, StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    # lm-eval's settings, in Jinja's sandbox: task files from an include_path must not run arbitrary code
    env = ImmutableSandboxedEnvironment(loader=BaseLoader(), undefined=StrictUndefined, keep_trailing_newline=True)
    env.filters["regex_replace"] = _regex_replace
    return env


@functools.lru_cache(maxsize=512)
def _template(source: str):
    return _jinja_env().from_string(source)


def render(source: str, doc: dict) -> str:
    from jinja2 import TemplateError
    from jinja2.exceptions import SecurityError

    try:
        return _template(source).render(**doc)
    except (TemplateError, SecurityError) as exc:
        raise DataError(f"template {source[:60]!r}... failed on document with fields {sorted(doc)}: {exc}") from None


@dataclass
class Prompter:
    """doc -> text / target / choices, and few-shot contexts, exactly as lm-eval builds them."""

    spec: TaskSpec
    features: frozenset[str] = field(default_factory=frozenset)

    def text(self, doc: dict) -> str:
        t = self.spec.doc_to_text
        return str(doc[t]) if t in self.features else render(t, doc)

    def choices(self, doc: dict) -> list[str] | None:
        c = self.spec.doc_to_choice
        if c is None:
            return None
        if isinstance(c, list):
            return list(c)
        return list(doc[c]) if c in self.features else list(ast.literal_eval(render(c, doc)))

    def target(self, doc: dict) -> int | str | list:
        t = self.spec.doc_to_target
        if t in self.features:
            return doc[t]
        s = render(t, doc)
        if s.isdigit() and self.spec.doc_to_choice is not None:
            return int(s)
        if len(s) >= 2 and s[0] == "[" and s[-1] == "]":
            try:
                return ast.literal_eval(s)
            except (SyntaxError, ValueError):
                return s
        return s

    def answer_text(self, doc: dict) -> str:
        """The target as written after a few-shot example's question."""
        a = self.target(doc)
        c = self.choices(doc)
        if c and isinstance(a, int):
            return c[a]
        if isinstance(a, list):
            return str(a[0])
        return str(a)

    def context(self, doc: dict, shots: list[dict]) -> str:
        parts = [
            self.text(s) + self.spec.target_delimiter + self.answer_text(s) + self.spec.fewshot_delimiter for s in shots
        ]
        return "".join(parts) + self.text(doc)


class FewshotSampler:
    """lm-eval's ContextSampler / FirstNSampler: one ``random.Random(seed)`` consumed in document order."""

    def __init__(self, pool: list[dict], seed: int, sampler: str = "default", exclude_self: bool = False):
        self.pool, self.rnd, self.sampler, self.exclude_self = pool, random.Random(seed), sampler, exclude_self

    def sample(self, n: int, doc: dict) -> list[dict]:
        if n <= 0:
            return []
        if self.sampler == "first_n":
            pool = [d for d in self.pool if d != doc] if self.exclude_self else self.pool
            if n > len(pool):
                raise DataError(f"{n}-shot needs {n} few-shot examples but the pool has {len(pool)}")
            return pool[:n]
        if not self.exclude_self:
            if n > len(self.pool):
                raise DataError(f"{n}-shot needs {n} few-shot examples but the pool has {len(self.pool)}")
            return self.rnd.sample(self.pool, n)
        if n + 1 > len(self.pool):
            raise DataError(f"{n}-shot needs {n + 1} documents in the pool but it has {len(self.pool)}")
        res = [d for d in self.rnd.sample(self.pool, n + 1) if d != doc][:n]
        if len(res) < n:  # duplicates of doc were drawn: resample from the pool without any copy of it
            res = self.rnd.sample([d for d in self.pool if d != doc], n)
        return res
