"""Packaging: a distribution name that is not someone else's, extras that compose, and (slow) a wheel and
an sdist from ``python -m build`` that install in a clean virtualenv and run ``bielik doctor``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

tomllib = pytest.importorskip("tomllib")

# extras that are not a stage's: optional integrations and the references only the tests use
NOT_STAGE_EXTRAS = {"all", "dev", "ray", "tensorboard", "wandb", "lmeval", "trl"}


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _expand(extras: dict[str, list[str]], name: str, extra: str, seen: frozenset = frozenset()) -> set[str]:
    """Every third-party requirement an extra installs, following self-references like ``name[a,b]``."""
    out: set[str] = set()
    for line in extras[extra]:
        req = Requirement(line)
        if canonicalize_name(req.name) == canonicalize_name(name):
            for sub in req.extras:
                assert sub in extras, f"extra {extra!r} names an unknown extra {sub!r}"
                assert sub not in seen, f"extras refer to each other in a cycle through {sub!r}"
                out |= _expand(extras, name, sub, seen | {extra})
        else:
            out.add(str(req))
    return out


def test_distribution_name_and_extras_compose():
    project = _project()
    name, extras = project["name"], project["optional-dependencies"]
    # `bielik` on the package index is an unrelated assistant package: `pip install bielik` must not be ours
    assert canonicalize_name(name) != "bielik" and canonicalize_name(name).startswith("bielik")
    assert project["scripts"]["bielik"] == "bielik.cli:main"
    full = {e: _expand(extras, name, e) for e in extras}
    stage_extras = set(extras) - NOT_STAGE_EXTRAS
    assert {"curate", "quant", "tokenizer", "eval", "sft", "bench"} <= stage_extras
    for e in stage_extras:
        assert full[e] <= full["all"], f"`all` lacks {sorted(full[e] - full['all'])} of extra {e!r}"
    assert full["all"] <= full["dev"] and any(Requirement(r).name == "pytest" for r in full["dev"])
    assert not any(Requirement(r).name == "ray" for r in full["all"])  # heavy: its own extra only
    # composed, not repeated: `all` only names extras, and `dev` repeats nothing that `all` already brings
    assert all(canonicalize_name(Requirement(r).name) == canonicalize_name(name) for r in extras["all"])
    own = [r for r in extras["dev"] if canonicalize_name(Requirement(r).name) != canonicalize_name(name)]
    assert not {str(Requirement(r)) for r in own} & full["all"]


def test_install_hints_name_this_distribution():
    """`pip install 'bielik[eval]'` would install the unrelated `bielik` package: every hint in the code and
    the docs must name this project's distribution."""
    import re

    name = _project()["name"]
    wrong = re.compile(r"(?<![\w-])bielik\[")
    found = [
        f"{path.relative_to(REPO)}:{i}: {line.strip()}"
        for root in ("bielik", "docs", "scripts", "recipes", "benchmarks", "README.md")
        for path in ([REPO / root] if (REPO / root).is_file() else sorted((REPO / root).rglob("*")))
        if path.suffix in {".py", ".md", ".sh", ".yaml"} and path.is_file()
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if wrong.search(line)
    ]
    assert not found, f"{len(found)} hints name `bielik[...]` instead of `{name}[...]`:\n" + "\n".join(found)


def _numpy_caps(requirements: list[str]) -> list[Requirement]:
    return [r for r in map(Requirement, requirements) if r.name == "numpy" and r.marker is None]


def test_numpy_is_capped_for_mistral_common_in_the_metadata():
    caps = _numpy_caps(_project()["dependencies"])
    assert len(caps) == 1 and "2.3.5" in caps[0].specifier and "2.4.0" not in caps[0].specifier


def _run(cmd: list, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False, **kw)
    assert res.returncode == 0, f"{cmd} exited {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def _shipped_resources() -> set[str]:
    root = REPO / "bielik" / "resources"
    return {p.relative_to(REPO).as_posix() for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


@pytest.mark.slow
def test_wheel_and_sdist_install_in_a_clean_venv(tmp_path):
    pytest.importorskip("build", reason="`python -m build` needs the build package (in the dev extra)")
    name, version = _project()["name"], _project()["version"]
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--outdir", dist, REPO], cwd=tmp_path)
    (wheel,), (sdist,) = dist.glob("*.whl"), dist.glob("*.tar.gz")

    with tarfile.open(sdist) as tf:
        top = f"{canonicalize_name(name).replace('-', '_')}-{version}"
        members = {m.name.removeprefix(top + "/") for m in tf.getmembers() if m.isfile()}
    assert {"LICENSE", "pyproject.toml", "README.md", "bielik/cli.py"} <= members
    assert _shipped_resources() <= members, sorted(_shipped_resources() - members)[:10]

    with zipfile.ZipFile(wheel) as zf:
        files = set(zf.namelist())
        meta_path = next(f for f in files if f.endswith(".dist-info/METADATA"))
        meta = zf.read(meta_path).decode()
    assert _shipped_resources() <= files and any(f.endswith(".dist-info/licenses/LICENSE") for f in files)
    assert f"\nName: {name}\n" in meta
    prefix = "Requires-Dist: "
    requires = [line.removeprefix(prefix) for line in meta.splitlines() if line.startswith(prefix)]
    caps = _numpy_caps(requires)
    assert len(caps) == 1 and "2.4.0" not in caps[0].specifier, requires

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv])
    py, pip = venv / "bin" / "python", [venv / "bin" / "python", "-m", "pip", "--disable-pip-version-check", "-q"]
    # torch first and pinned, as scripts/setup.sh does, so nothing pulls another build
    torch_index = os.environ.get("BIELIK_TORCH_INDEX")
    torch_req = os.environ.get("BIELIK_TORCH", "torch==2.13.0")
    _run([*pip, "install", torch_req, *(["--index-url", torch_index] if torch_index else [])])
    for artefact in (wheel, sdist):
        _run([*pip, "install", artefact])
        code = f"import bielik, importlib.metadata as m; print(bielik.__file__); print(m.version({name!r}))"
        where = _run([py, "-c", code], cwd=tmp_path).stdout.split()
        assert Path(where[0]).is_relative_to(venv) and where[1] == version  # the installed copy, not the repository
        assert f"bielik {version}" in _run([venv / "bin" / "bielik", "doctor"], cwd=tmp_path).stdout
        doctor = json.loads(_run([venv / "bin" / "bielik", "doctor", "--json"], cwd=tmp_path).stdout)
        assert doctor["bielik"] == version and doctor["core"]["torch"]
        assert "recipe" in _run([venv / "bin" / "bielik", "--help"], cwd=tmp_path).stdout
        _run([*pip, "uninstall", "-y", name])
