"""Typed stage configs: YAML files, ``key=value`` overrides and validation errors that name the key.

Every stage has a pydantic model deriving from :class:`StageConfig`. Unknown keys are errors (a
misspelt key must never be silently ignored) and the message suggests the nearest valid key::

    recipes/tiny-pl.yaml:7: unknown key 'optim.lerning_rate'; did you mean 'optim.lr'?

``load_config(Model, path, overrides)`` merges, in order: the model's defaults, the YAML file, the
overrides (``optim.lr=3e-4``; values are parsed as YAML scalars, so ``true``, ``1e-3`` and
``[1, 2]`` work).
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from bielik.errors import ConfigError


class StageConfig(BaseModel):
    """Base of every config model: unknown keys are rejected, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


C = TypeVar("C", bound=BaseModel)
_SCI = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into the nested dict ``{"a": {"b": 1}, "c": "x"}``."""
    tree: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. optim.lr=3e-4)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str) and _SCI.match(value.strip()):
            value = float(value)  # YAML 1.1 reads 3e-4 as a string
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier override of {part!r}")
            node = child
        node[parts[-1]] = value
    return tree


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_error(path, exc)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: config file is not UTF-8 text (byte {exc.start})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: config file must hold a mapping of keys, not {type(data).__name__}")
    return data


def _yaml_error(path: Path, exc: yaml.YAMLError) -> str:
    """One line ``file:line:column: not valid YAML (problem)`` from PyYAML's multi-line message."""
    mark = getattr(exc, "problem_mark", None)
    where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    return f"{path}{where}: not valid YAML ({problem}{', ' + context if context else ''})"


def key_lines(path: str | Path) -> dict[tuple[str, ...], int]:
    """1-based line of every mapping key in a YAML file, by its dotted path (``("optim", "lr")``).

    Used to point a validation error at the line that holds the bad key; empty when the file cannot
    be composed (its syntax error is reported by :func:`read_yaml`).
    """
    try:
        root = yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, prefix: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                dotted = prefix + (str(key.value),)
                lines[dotted] = key.start_mark.line + 1
                walk(value, dotted)

    if root is not None:
        walk(root, ())
    return lines


def _valid_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        keys.append(dotted)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(_valid_keys(ann, dotted + "."))
    return keys


def _explain(
    model: type[BaseModel], exc: ValidationError, source: str, lines_of: dict[tuple[str, ...], int] | None = None
) -> ConfigError:
    """One line naming the source (``file:line`` when the bad key's line is known) and every bad key."""
    valid = _valid_keys(model)
    lines = []
    where = source
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        line = (lines_of or {}).get(tuple(str(p) for p in err["loc"]))
        if line is not None and where == source:
            where = f"{source}:{line}" if " + " not in source else f"{source.split(' + ')[0]}:{line} (+ overrides)"
        if err["type"] == "extra_forbidden":
            leaf = key.rsplit(".", 1)[-1]
            parent = key[: len(key) - len(leaf)]
            siblings = [k[len(parent) :] for k in valid if k.startswith(parent) and "." not in k[len(parent) :]]
            near = difflib.get_close_matches(leaf, siblings, n=1, cutoff=0.5)
            hint = f"; did you mean '{parent}{near[0]}'?" if near else f"; valid keys: {', '.join(siblings)}"
            lines.append(f"unknown key '{key}'{hint}")
        elif err["type"] == "missing":
            lines.append(f"key '{key}' is required")
        else:
            got = err.get("input")
            lines.append(f"key '{key}': {err['msg']} (got {got!r})")
    prefix = "config (defaults)" if where == "defaults" else where
    return ConfigError(f"{prefix}: " + "; ".join(lines))


def validate(
    model: type[C], data: dict[str, Any], source: str = "config", lines_of: dict[tuple[str, ...], int] | None = None
) -> C:
    """``model`` from ``data``; a :class:`ConfigError` naming ``source`` (and the line, from ``lines_of``)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _explain(model, exc, source, lines_of) from None


def load_config(
    model: type[C],
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    base: dict[str, Any] | None = None,
) -> C:
    """Build ``model`` from defaults <- ``base`` <- YAML file at ``path`` <- ``overrides``."""
    data: dict[str, Any] = dict(base or {})
    sources = []
    lines_of: dict[tuple[str, ...], int] = {}
    if path is not None:
        data = deep_merge(data, read_yaml(path))
        sources.append(str(path))
        lines_of = key_lines(path)
    if overrides:
        parsed = parse_overrides(overrides)
        data = deep_merge(data, parsed)
        sources.append("command-line overrides")
        lines_of = {k: v for k, v in lines_of.items() if not _overridden(k, parsed)}
    return validate(model, data, " + ".join(sources) or "defaults", lines_of)


def _overridden(key: tuple[str, ...], tree: dict[str, Any]) -> bool:
    """Whether an override sets ``key`` (or a parent of it): its line in the file is then not the culprit."""
    node: Any = tree
    for part in key:
        if not isinstance(node, dict):
            return True  # an override replaced a parent of the key by a value
        if part not in node:
            return False
        node = node[part]
    return True


def looks_like_path(value: str) -> bool:
    """A config string names a path when it has a directory part or a file suffix (``data/pl``,
    ``runs/x/sft``, ``corpus.jsonl``). A bare word (``wandb_project: bielik``, ``preset: tiny-llama``)
    is not a path even when a file of that name happens to exist in the working directory: taking it
    for one made every training stage of a recipe rerun whenever that file (there: the ``bielik``
    package) changed.
    """
    return "/" in value or os.sep in value or bool(Path(value).suffix)


def config_paths(values: Any, skip: tuple[str, ...] = ("output",)) -> list[str]:
    """Every string in a dumped config that names an existing file or directory, in order, once each.

    Top-level keys in ``skip`` (the stage's own output) are left out; strings that do not look like
    paths (:func:`looks_like_path`), or are not paths at all (a prompt), are ignored. The recipe runner
    hashes these as a stage's inputs; stages check the HF directories among them before they start.
    """
    found: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        elif isinstance(v, str) and v and "\n" not in v and len(v) < 4096 and looks_like_path(v):
            try:
                exists = Path(v).exists()
            except OSError:  # not a path at all
                return
            if exists and v not in found:
                found.append(v)

    if isinstance(values, dict):
        for key, value in values.items():
            if key not in skip:
                walk(value)
    else:
        walk(values)
    return found
