"""The stage registry is the one table: one CLI command per stage, its help string, lazy imports."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys

from typer.testing import CliRunner

from bielik.cli import RENDERERS, TABLES_RENDERER, _show_tables, app, command_paths
from bielik.stages import declarations, get, registry

# the commands that are not stages (anything else must come from a stage declaration)
EXTRA = {
    ("model", "info"),
    ("model", "presets"),
    ("bench", "peak"),
    ("doctor",),
    ("recipe", "run"),
    ("eval", "tasks"),
    ("eval", "export-lm-eval"),
}


def test_one_command_per_stage_and_one_stage_per_command():
    decls = declarations()
    kinds = [d.kind for d in decls]
    paths = [d.cli for d in decls]
    assert len(set(kinds)) == len(kinds), "a stage kind is declared twice"
    assert len(set(paths)) == len(paths), "two stages share a command"
    commands = set(command_paths())
    assert set(paths) <= commands, f"stages without a command: {sorted(set(paths) - commands)}"
    unknown = commands - set(paths) - EXTRA
    assert commands - set(paths) == EXTRA, f"commands that are neither stages nor known extras: {unknown}"
    for d in decls:
        assert commands and command_paths()[d.cli].callback.__name__ == f"{d.kind.replace('.', '_')}_cmd"


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", text)).strip()


def test_help_text_is_the_registry_string():
    runner = CliRunner()
    table = command_paths()
    for d in declarations():
        assert table[d.cli].help == d.help
        res = runner.invoke(app, [*d.cli, "--help"], terminal_width=400)
        assert res.exit_code == 0, res.output
        assert _normalise(d.help) in _normalise(res.output), (d.kind, res.output)


def test_registry_resolves_every_declaration():
    reg = registry()
    assert list(reg) == [d.kind for d in declarations()]
    for d in declarations():
        stage = reg[d.kind]
        module, _, attr = d.run.partition(":")
        assert stage.func is getattr(importlib.import_module(module), attr)
        assert stage.config.__name__ == d.config.partition(":")[2]
        assert stage.run.__wrapped__ is stage.func and stage.help == d.help and get(d.kind) is stage
        assert d.show in RENDERERS or d.show == TABLES_RENDERER, f"{d.kind}: unknown renderer {d.show!r}"


def test_cli_prints_the_reports_tables_of_every_stage_in_a_real_run(capsys):
    """The CLI's renderer for a stage is the report's tables of it (one place): run on every stage output
    of the report fixture (a real tiny-pl run), each prints its tables without error."""
    import json
    from pathlib import Path
    from types import SimpleNamespace

    from bielik.report.tables import tables_for

    root = Path(__file__).parent / "fixtures" / "report_run"
    kinds = {d.kind: d.show for d in declarations()}
    seen = 0
    for out in sorted(p for p in root.iterdir() if (p / "lineage.json").is_file()):
        kind = json.loads((out / "lineage.json").read_text(encoding="utf-8"))["stage"]
        if kinds.get(kind) != TABLES_RENDERER:
            continue
        _show_tables(kind, None, SimpleNamespace(output=str(out)))
        printed = "".join(capsys.readouterr().out.split())  # a narrow table wraps its title
        metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        for t in tables_for(kind, metrics):
            assert "".join(t.title.split()) in printed, (kind, t.title)
        assert f"done:{out}" in printed
        seen += 1
    assert seen >= 15


def test_help_imports_neither_torch_nor_transformers():
    for args in (["--help"], ["train", "sft", "--help"], ["data", "quality", "--help"]):
        res = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "bielik", *args], capture_output=True, text=True, timeout=120
        )
        assert res.returncode == 0, res.stderr
        imported = {
            line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")
        }
        assert "typer" in imported and "bielik.stages" in imported  # the probe sees imports at all
        assert not {"torch", "transformers", "datatrove", "lm_eval"} & imported, args
