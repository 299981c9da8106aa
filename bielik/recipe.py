"""Recipes: a named graph of stages in one YAML file, run in order, resumable, with a dry run.

::

    name: tiny-pl
    run_dir: runs/tiny-pl
    inputs:                       # optional: things to provide (full-size recipes), see docs/recipes.md
      base: {path: /models/Mistral-7B-v0.1, preset: mistral-7b-v0.1}
    cluster: {gpu: H100, peak_tflops_bf16: 989, mfu: 0.4, nodes: 4, gpus_per_node: 8}   # optional
    stages:
      tokenizer: {kind: tokenizer.train, config: {vocab_size: 8192}}
      data:      {kind: data.pack, config: {tokenizer: "${tokenizer}"}}

``${name}`` in a string is replaced by the output directory of stage ``name`` (by default
``<run_dir>/<name>``) or by the path of input ``name``; a stage may only refer to stages listed before
it. Overrides address a stage by name: ``pretrain.train.steps=10`` sets
``stages.pretrain.config.train.steps``; ``run_dir=...`` moves the whole run.

**Skip rule.** A stage is *done*, and skipped, when (1) its output holds ``metrics.json`` (every stage
writes it last) and ``config.yaml`` equal to the config it would run with (``overwrite`` aside);
(2) the content digests of its inputs equal those recorded when it ran; (3) its last attempt under
the runner did not fail. Its inputs are every path in its resolved config that exists (files or
directories; earlier stages' outputs included; its own output excluded); a stage that reads the whole
run (the report) has every other stage's ``metrics.json`` and ``lineage.json`` as inputs instead. A stage that
reruns writes a new output, whose digest changes the inputs of the stages that read it, so they rerun too: through
the digests, not by blanket "everything after is dirty" (a stage reading only unchanged inputs stays
done). A stage whose output was made outside the runner (no ``recipe_inputs`` in its lineage) and
that has inputs reruns once. Digests are cached by (path, size, mtime_ns) in
``<run_dir>/.digest-cache.json`` (:class:`bielik.artifacts.DigestCache`), so an unchanged multi-GB
checkpoint is not re-read. A training stage whose last run did not finish resumes from its latest
checkpoint; one that finished and runs again trains afresh (:func:`set_aside_finished_training`).

**Partial runs** (:func:`run_recipe`): ``from_stage=X`` runs X and every stage after it, done or not;
``until_stage=X`` stops after X (stages up to X follow the skip rule); ``only=X`` runs just X. The
stages a selected stage reads that are not themselves selected must have finished (else a
``ConfigError`` names the missing stage). ``force`` reruns every selected stage.

**Failure.** A stage that raises leaves earlier stages' artifacts untouched (stages write into a
staged directory, or leave no ``metrics.json``); the runner records the failure, prints
``to continue: bielik recipe run <recipe> [overrides] --from <stage>`` to stderr and re-raises.

**Records.** After each stage that ran, ``<output>/lineage.json`` gains ``started``, ``finished``
(ISO 8601, UTC), ``wall_time_s``, ``recipe`` and ``recipe_inputs`` ({path: sha256} of the inputs it
read). ``<run_dir>/recipe-state.json`` holds, for the whole run::

    {"recipe": NAME, "source": PATH, "overrides": [...], "updated": ISO,
     "environment": {bielik_version, git_rev, host, python, torch, transformers},
     "stages": {STAGE: {"kind", "output", "status": "done"|"failed"|"running",
                        "reused": bool (skipped in the latest invocation), "reason": why it ran,
                        "started", "finished", "wall_time_s", "inputs": {path: sha256}, "error"}}}

``wall_time_s`` and timestamps are those of the run that produced the current output (a skipped
stage keeps them). Reports read per-stage wall time and lineage from there.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, PrivateAttr, model_validator

from bielik.artifacts import (
    DigestCache,
    environment,
    path_digest,
    read_json,
    write_json,
    yaml_dump,
)
from bielik.config import StageConfig, config_paths, deep_merge, parse_overrides, read_yaml, validate
from bielik.errors import BielikError, ConfigError
from bielik.log import get_logger

log = get_logger(__name__)
_REF = re.compile(r"\$\{([A-Za-z0-9_\-]+)\}")
STATE_FILE = "recipe-state.json"
DIGEST_CACHE = ".digest-cache.json"


class StageSpec(StageConfig):
    kind: str
    config: dict[str, Any] = Field(default_factory=dict)
    output: str | None = None


class InputSpec(StageConfig):
    """Something the recipe reads but does not make (a base checkpoint, a raw corpus, a tokenizer).

    ``preset``, ``vocab_size`` and ``seq_len`` describe it for the dry run, which cannot open it.
    """

    path: str
    about: str = ""
    preset: str | None = Field(None, description="model shape (bielik model presets) of a checkpoint input")
    vocab_size: int | None = Field(None, ge=1, description="vocabulary size of a tokenizer input")
    seq_len: int | None = Field(None, ge=1, description="row length of a packed-data input")
    tokens: float | None = Field(None, gt=0, description="size in tokens of a data input (informational)")


class ClusterSpec(StageConfig):
    """The GPU cluster a full-size recipe is planned for (dry run: GPU-hours and launch commands)."""

    gpu: str = "H100"
    peak_tflops_bf16: float = Field(989.0, gt=0, description="dense bf16 peak per GPU, TFLOP/s (H100 SXM: 989)")
    mfu: float = Field(0.4, gt=0, le=1, description="model FLOPs utilisation assumed for the estimate")
    mfu_from: str | None = Field(None, description="metrics.jsonl of a measured run: its median 'mfu' replaces `mfu`")
    nodes: int = Field(1, ge=1)
    gpus_per_node: int = Field(8, ge=1)
    rdzv_endpoint: str = Field("$MASTER_ADDR:29500", description="torchrun rendezvous host:port (multi-node)")


class Recipe(StageConfig):
    name: str
    description: str = ""
    run_dir: str = "runs/recipe"
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    cluster: ClusterSpec | None = None
    stages: dict[str, StageSpec]
    _source: str | None = PrivateAttr(None)
    _overrides: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _names(self) -> Recipe:
        both = sorted(set(self.inputs) & set(self.stages))
        if both:
            raise ValueError(f"names used both as an input and as a stage: {', '.join(both)}")
        return self


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    data = read_yaml(path)
    tree = parse_overrides(overrides)
    stage_names = set((data.get("stages") or {}).keys())
    for key in list(tree):
        if key in stage_names:
            data = deep_merge(data, {"stages": {key: {"config": tree.pop(key)}}})
    data = deep_merge(data, tree)
    recipe = validate(Recipe, data, str(path) + (" + overrides" if overrides else ""))
    recipe._source, recipe._overrides = str(path), list(overrides)
    return recipe


def _resolve(value: Any, outputs: dict[str, str], where: str) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match) -> str:
            name = m.group(1)
            if name not in outputs:
                raise ConfigError(
                    f"{where}: '${{{name}}}' refers to no earlier stage or input "
                    f"(known: {', '.join(outputs) or 'none'})"
                )
            return outputs[name]

        return _REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: _resolve(v, outputs, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, outputs, where) for v in value]
    return value


def references(value: Any) -> set[str]:
    """Names ``${name}`` used anywhere in a (nested) raw config."""
    if isinstance(value, str):
        return set(_REF.findall(value))
    if isinstance(value, dict):
        return set().union(*(references(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(references(v) for v in value)) if value else set()
    return set()


def plan(recipe: Recipe) -> list[tuple[str, Any, StageConfig]]:
    """Resolve every stage to (name, Stage, validated config) without running anything."""
    from bielik import stages as stage_table

    kinds = [d.kind for d in stage_table.STAGES]
    outputs: dict[str, str] = {name: spec.path for name, spec in recipe.inputs.items()}
    resolved = []
    for name, spec in recipe.stages.items():
        if spec.kind not in kinds:
            import difflib

            near = difflib.get_close_matches(spec.kind, kinds, n=1)
            raise ConfigError(
                f"recipe stage '{name}': unknown kind '{spec.kind}'"
                + (f"; did you mean '{near[0]}'?" if near else f" (known: {', '.join(kinds)})")
            )
        stage = stage_table.get(spec.kind)  # imports only the modules this recipe uses
        out = spec.output or str(Path(recipe.run_dir) / name)
        raw = _resolve(spec.config, outputs, f"stages.{name}.config")
        if "output" in stage.config.model_fields:
            raw = {**raw, "output": out}
        cfg = validate(stage.config, raw, f"recipe stage '{name}'")
        outputs[name] = out
        resolved.append((name, stage, cfg))
    return resolved


# ------------------------------------------------------------------------------------ skip rule
def _inside(a: Path, b: Path) -> bool:
    """True when ``a`` is ``b`` or lies under it."""
    return a == b or b in a.parents


def stage_inputs(cfg: StageConfig) -> list[str]:
    """Every path in the resolved config that exists now (files or directories), the output excluded
    (:func:`bielik.config.config_paths`: a bare word without a directory part or suffix is not a path).

    A path that contains the output, or lies inside it (a resume checkpoint), is not an input.
    """
    data = cfg.model_dump(mode="json")
    out = data.get("output")
    out_path = Path(out).resolve() if out else None

    def related(p: str) -> bool:
        rp = Path(p).resolve()
        return out_path is not None and (_inside(rp, out_path) or _inside(out_path, rp))

    return [p for p in config_paths(data) if not related(p)]


def run_records(steps: list, name: str) -> list[str]:
    """The inputs of a stage that reads the whole run (the report): every other stage's ``metrics.json``
    and ``lineage.json``. They change whenever that stage reruns (the lineage records when it ran), so
    the report is rebuilt after any stage ran and skipped when none did."""
    found = []
    for other, _, cfg in steps:
        out = getattr(cfg, "output", None)
        if other == name or not out:
            continue
        found += [str(Path(out) / f) for f in ("metrics.json", "lineage.json") if (Path(out) / f).is_file()]
    return found


def _comparable(d: dict[str, Any]) -> dict[str, Any]:
    d = dict(d)
    for key in ("stage", "overwrite"):
        d.pop(key, None)
    return d


def not_done_reason(cfg: StageConfig, digests: dict[str, str], state: dict[str, Any] | None) -> str | None:
    """Why the stage must run (a short phrase), or None when it is done (see the module docstring)."""
    out = getattr(cfg, "output", None)
    if not out:
        return "it has no output directory"
    out = Path(out)
    if not (out / "metrics.json").is_file() or not (out / "config.yaml").is_file():
        return "no finished output"
    if state and state.get("status") in ("failed", "running") and state.get("output") == str(out):
        return f"its last attempt {'failed' if state['status'] == 'failed' else 'did not finish'}"
    saved = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8")) or {}
    current = yaml.safe_load(yaml_dump(cfg.model_dump(mode="json")))
    if _comparable(saved) != _comparable(current):
        keys = (set(saved) | set(current)) - {"stage", "overwrite"}
        changed = sorted(k for k in keys if saved.get(k) != current.get(k))
        return "config changed (" + ", ".join(changed[:4]) + ")"
    if not digests:
        return None
    try:
        recorded = read_json(out / "lineage.json").get("recipe_inputs")
    except BielikError:
        recorded = None
    if not isinstance(recorded, dict):
        return "its input digests were never recorded"
    for path, digest in digests.items():
        if recorded.get(path) != digest:
            return f"input {path} changed" if path in recorded else f"new input {path}"
    return None


# ---------------------------------------------------------------------------------- run state
class RunState:
    """``<run_dir>/recipe-state.json`` (fields in the module docstring), written atomically on each change."""

    def __init__(self, recipe: Recipe):
        self.path = Path(recipe.run_dir) / STATE_FILE
        self.data: dict[str, Any] = {}
        if self.path.is_file():
            try:
                self.data = read_json(self.path)
            except BielikError as exc:
                log.warning("ignoring unreadable run state: %s", exc)
        if not isinstance(self.data.get("stages"), dict):
            self.data["stages"] = {}
        self.data.update(recipe=recipe.name, source=recipe._source, overrides=list(recipe._overrides))

    def stage(self, name: str) -> dict[str, Any] | None:
        return self.data["stages"].get(name)

    def update(self, name: str, **fields: Any) -> None:
        self.data["stages"].setdefault(name, {}).update(fields)
        self.data["updated"] = _now()
        self.data["environment"] = environment()
        if _is_main():
            write_json(self.path, self.data)


def _is_main() -> bool:
    """Under torchrun (``--only STAGE`` on every rank) only global rank 0 writes the runner's records."""
    return int(os.environ.get("RANK", "0")) == 0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def continue_command(recipe: Recipe, stage: str) -> str:
    """The command line that reruns ``recipe`` (with its overrides) from ``stage``."""
    parts = ["bielik", "recipe", "run", recipe._source or "<recipe.yaml>", *recipe._overrides, "--from", stage]
    return " ".join(shlex.quote(p) if not p.startswith("<") else p for p in parts)


def select(recipe: Recipe, from_stage: str | None, until_stage: str | None, only: str | None) -> tuple[int, int]:
    """Index range [start, end] of the stages to consider; unknown names are errors listing the stages."""
    names = list(recipe.stages)
    for opt, value in (("--from", from_stage), ("--until", until_stage), ("--only", only)):
        if value is not None and value not in names:
            raise ConfigError(
                f"{opt} {value}: recipe '{recipe.name}' has no stage of that name (stages: {', '.join(names)})"
            )
    if only is not None and (from_stage is not None or until_stage is not None):
        raise ConfigError("--only cannot be combined with --from or --until")
    if only is not None:
        return names.index(only), names.index(only)
    start = names.index(from_stage) if from_stage is not None else 0
    end = names.index(until_stage) if until_stage is not None else len(names) - 1
    if start > end:
        raise ConfigError(f"--from {from_stage} comes after --until {until_stage} in recipe '{recipe.name}'")
    return start, end


def forced(force: bool, from_stage: str | None, only: str | None) -> bool:
    """Whether the selected stages run regardless of the skip rule: ``--force``, ``--from`` and ``--only``."""
    return force or from_stage is not None or only is not None


def _finished(cfg: StageConfig) -> bool:
    out = getattr(cfg, "output", None)
    return bool(out) and (Path(out) / "metrics.json").is_file()


def missing_upstream(recipe: Recipe, steps: list, start: int, end: int) -> list[tuple[str, str, str]]:
    """(stage, earlier stage it reads, that stage's output) for every unselected, unfinished stage read."""
    before = {name: cfg for name, _, cfg in steps[:start]}
    missing = []
    for name, _, _ in steps[start : end + 1]:
        for ref in sorted(references(recipe.stages[name].config)):
            if ref in before and not _finished(before[ref]):
                missing.append((name, ref, str(getattr(before[ref], "output", ""))))
    return missing


def run_recipe(
    recipe: Recipe,
    dry_run: bool = False,
    force: bool = False,
    from_stage: str | None = None,
    until_stage: str | None = None,
    only: str | None = None,
) -> dict[str, Any]:
    """Run the selected stages of ``recipe`` (all by default) under the skip rule.

    Returns ``{stage: result}`` for every considered stage: the stage function's return value, or its
    output path when skipped. With ``dry_run`` nothing runs and the value per stage is its plan
    (:func:`bielik.recipe_plan.dry_run`; ``format_dry_run`` renders the same as text).
    """
    if dry_run:
        from bielik.recipe_plan import dry_run as plan_dry_run

        planned = plan_dry_run(recipe, force, from_stage, until_stage, only).stages
        for s in planned:
            short = "done (skip)" if s.status.startswith("done") else s.status.split(" (")[0].split(":")[0]
            log.info("stage %-10s %-16s -> %s [%s]", s.name, s.kind, s.output or "-", short)
        return {s.name: s.as_dict() for s in planned}
    steps = plan(recipe)
    start, end = select(recipe, from_stage, until_stage, only)
    missing = missing_upstream(recipe, steps, start, end)
    if missing:
        stage, ref, out = missing[0]
        raise ConfigError(
            f"stage '{stage}' reads the output of earlier stage '{ref}' ({out}), which has not finished: "
            f"run the recipe with --until {ref} first"
        )
    rerun = forced(force, from_stage, only)
    state = RunState(recipe)
    cache = DigestCache(Path(recipe.run_dir) / DIGEST_CACHE)
    results: dict[str, Any] = {}
    for name, stage, cfg in steps[start : end + 1]:
        out = getattr(cfg, "output", None)
        # under torchrun with a forced stage, ranks other than 0 neither decide nor record: no hashing
        hashing = _is_main() or not rerun
        inputs = run_records(steps, name) if stage.reads_run else stage_inputs(cfg)
        digests = {p: path_digest(p, cache) for p in inputs} if hashing else {}
        if _is_main():
            cache.save()
        reason = "forced" if rerun else not_done_reason(cfg, digests, state.stage(name))
        if reason is None:
            log.info("stage %-10s %-16s -> %s [done (skip)]", name, stage.kind, out or "-")
            results[name] = out
            if state.stage(name) is not None:
                state.update(name, reused=True)
            else:
                state.update(name, kind=stage.kind, output=out, status="done", reused=True, inputs=digests)
            continue
        log.info("stage %-10s %-16s -> %s [run: %s]", name, stage.kind, out or "-", reason)
        if "overwrite" in stage.config.model_fields:
            cfg.overwrite = True
        started, t0 = _now(), time.perf_counter()
        state.update(
            name,
            kind=stage.kind,
            output=out,
            status="running",
            reused=False,
            reason=reason,
            started=started,
            finished=None,
            wall_time_s=None,
            inputs=digests,
            error=None,
        )
        previous = set_aside_finished_training(cfg)
        try:
            results[name] = stage.run(cfg)
        except BaseException as exc:
            if previous is not None:
                log.error("the previous output of stage %s is kept in %s", name, previous)
            wall = round(time.perf_counter() - t0, 3)
            state.update(
                name, status="failed", finished=_now(), wall_time_s=wall, error=f"{type(exc).__name__}: {exc}"[:2000]
            )
            log.error("stage %s (%s) failed after %.1f s: %s", name, stage.kind, wall, exc)
            if _is_main():
                print(f"to continue: {continue_command(recipe, name)}", file=sys.stderr, flush=True)
            raise
        finished, wall = _now(), round(time.perf_counter() - t0, 3)
        if _is_main() and out and (Path(out) / "lineage.json").is_file():
            lineage = read_json(Path(out) / "lineage.json")
            lineage.update(
                recipe=recipe.name, started=started, finished=finished, wall_time_s=wall, recipe_inputs=digests
            )
            write_json(Path(out) / "lineage.json", lineage)
        state.update(name, status="done", finished=finished, wall_time_s=wall)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
        log.info("stage %s done in %.1f s", name, wall)
    return results


PREVIOUS_SUFFIX = ".previous"


def set_aside_finished_training(cfg: StageConfig) -> Path | None:
    """Make a training stage that already *finished* start afresh; return where its old output went.

    A training stage writes into its output directly (checkpoints must outlive a crash) and resumes from
    its latest checkpoint by default (``train.checkpoint.resume=auto``). That is right when its last run
    did not finish, but a stage that finished and runs again (``--from``, ``--force``, a changed config or
    input) would "resume" at its final step and train nothing, or append a second run to its
    ``metrics.jsonl``. So before such a run its old output is renamed to ``<output>.previous``; it is
    deleted when the new run finishes and kept (with a log line) when it fails.

    Not under torchrun (``WORLD_SIZE`` > 1): ranks would race on the rename, and relaunching the same
    ``--only STAGE`` command after a preemption must resume. There, redo a finished stage with
    ``<stage>.train.checkpoint.resume=never`` in a fresh output directory.
    """
    out = getattr(cfg, "output", None)
    train = getattr(cfg, "train", None)
    resume = getattr(getattr(train, "checkpoint", None), "resume", None)
    if not out or resume != "auto" or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return None
    out = Path(out)
    if not (out / "metrics.json").is_file():
        return None  # never finished: resume from its latest checkpoint
    previous = out.with_name(out.name + PREVIOUS_SUFFIX)
    if previous.exists():
        shutil.rmtree(previous)
    out.rename(previous)
    log.info("%s finished before: training afresh (previous output in %s until this run finishes)", out, previous)
    return previous
