"""Recipes: a named graph of stages in one YAML file, run in order, resumable, with a dry run.

::

    name: tiny-pl
    run_dir: runs/tiny-pl
    stages:
      tokenizer: {kind: tokenizer.train, config: {vocab_size: 8192}}
      data:      {kind: data.pack, config: {tokenizer: "${tokenizer}"}}

``${name}`` in a string is replaced by the output directory of stage ``name`` (by default
``<run_dir>/<name>``); a stage may only refer to stages listed before it. Overrides address a stage
by name: ``pretrain.train.steps=10`` sets ``stages.pretrain.config.train.steps``; ``run_dir=...``
moves the whole run.

A stage whose output holds a ``config.yaml`` equal to the one it would run with, and a
``metrics.json``, is done and skipped; a changed config re-runs it (and so everything after it,
whose inputs changed). Training stages resume from their latest checkpoint.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from bielik.artifacts import yaml_dump
from bielik.config import StageConfig, deep_merge, parse_overrides, read_yaml, validate
from bielik.errors import ConfigError
from bielik.log import get_logger

log = get_logger(__name__)
_REF = re.compile(r"\$\{([A-Za-z0-9_\-]+)\}")


class StageSpec(StageConfig):
    kind: str
    config: dict[str, Any] = Field(default_factory=dict)
    output: str | None = None


class Recipe(StageConfig):
    name: str
    description: str = ""
    run_dir: str = "runs/recipe"
    stages: dict[str, StageSpec]


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    data = read_yaml(path)
    tree = parse_overrides(overrides)
    stage_names = set((data.get("stages") or {}).keys())
    for key in list(tree):
        if key in stage_names:
            data = deep_merge(data, {"stages": {key: {"config": tree.pop(key)}}})
    data = deep_merge(data, tree)
    return validate(Recipe, data, str(path) + (" + overrides" if overrides else ""))


def _resolve(value: Any, outputs: dict[str, str], where: str) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match) -> str:
            name = m.group(1)
            if name not in outputs:
                raise ConfigError(f"{where}: '${{{name}}}' refers to no earlier stage (known: {', '.join(outputs) or 'none'})")
            return outputs[name]
        return _REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: _resolve(v, outputs, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, outputs, where) for v in value]
    return value


def plan(recipe: Recipe) -> list[tuple[str, Any, StageConfig]]:
    """Resolve every stage to (name, Stage, validated config) without running anything."""
    from bielik.stages import registry

    reg = registry()
    outputs: dict[str, str] = {}
    resolved = []
    for name, spec in recipe.stages.items():
        if spec.kind not in reg:
            import difflib

            near = difflib.get_close_matches(spec.kind, list(reg), n=1)
            raise ConfigError(f"recipe stage '{name}': unknown kind '{spec.kind}'" + (f"; did you mean '{near[0]}'?" if near else ""))
        stage = reg[spec.kind]
        out = spec.output or str(Path(recipe.run_dir) / name)
        raw = _resolve(spec.config, outputs, f"stages.{name}.config")
        if "output" in stage.config.model_fields:
            raw = {**raw, "output": out}
        cfg = validate(stage.config, raw, f"recipe stage '{name}'")
        outputs[name] = out
        resolved.append((name, stage, cfg))
    return resolved


def _is_done(cfg: StageConfig, stage_kind: str) -> bool:
    out = getattr(cfg, "output", None)
    if not out or not (Path(out) / "metrics.json").is_file() or not (Path(out) / "config.yaml").is_file():
        return False
    saved = yaml.safe_load((Path(out) / "config.yaml").read_text(encoding="utf-8")) or {}
    current = yaml.safe_load(yaml_dump(cfg.model_dump(mode="json")))
    for d in (saved, current):
        d.pop("stage", None)
        d.pop("overwrite", None)
    return saved == current


def run_recipe(recipe: Recipe, dry_run: bool = False, force: bool = False) -> dict[str, Any]:
    steps = plan(recipe)
    results: dict[str, Any] = {}
    dirty = force
    for name, stage, cfg in steps:
        done = not dirty and _is_done(cfg, stage.kind)
        status = "done (skip)" if done else "run"
        log.info("stage %-10s %-16s -> %s [%s]", name, stage.kind, getattr(cfg, "output", "-"), status)
        if dry_run:
            results[name] = status
            continue
        if done:
            results[name] = getattr(cfg, "output", None)
            continue
        dirty = True  # later stages' inputs may change
        if "overwrite" in stage.config.model_fields:
            cfg.overwrite = True
        results[name] = stage.run(cfg)
    return results
