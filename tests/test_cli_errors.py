"""Every CLI command on broken input: one line naming the file, exit status 2, no traceback.

The command list comes from the CLI itself (stage commands are generated from the registry), so a new
command that is not covered here fails :func:`test_every_command_is_exercised`. Commands run in-process
(CliRunner) so that the whole table takes seconds; two run as real subprocesses to see what a user sees
on stderr (datatrove and transformers write there directly).
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from bielik.cli import app, command_paths
from bielik.errors import BielikError
from bielik.stages import declarations

STAGE_PATHS = {d.cli: d.kind for d in declarations()}

# the broken model directory ({model}: truncated model.safetensors), where each command takes a model
MODEL_ARGS: dict[tuple[str, ...], list[str]] = {
    ("generate",): ["model={model}"],
    ("model", "info"): ["{model}"],
    ("model", "upscale"): ["model={model}", "m=1", "output={out}"],
    ("model", "merge"): ["models=[{model},{good}]", "output={out}"],
    ("model", "swap-tokenizer"): ["model={model}", "tokenizer={good}", "output={out}"],
    ("model", "init"): ["tokenizer={model}", "output={out}"],
    ("tokenizer", "stats"): ["tokenizers=[{model}]"],
    ("data", "pack"): ["tokenizer={model}", "output={out}"],
    ("train", "pretrain"): ["model={model}", "output={out}"],
    ("train", "sft"): ["model={model}", "output={out}"],
    ("train", "dpo"): ["model={model}", "output={out}"],
    ("train", "grpo"): ["model={model}", "output={out}"],
    ("compress", "importance"): ["model={model}", "output={out}"],
    ("compress", "prune"): ["model={model}", "output={out}"],
    ("compress", "distill"): ["teacher={model}", "student={good}", "output={out}"],
    ("compress", "plan"): ["base={model}"],
    ("quant", "export"): ["model={model}", "output={out}"],
    ("bench", "speed"): ["models=[{model}]"],
    ("eval", "leaderboard"): ["model={model}", "output={out}"],
    ("eval", "eq-bench"): ["model={model}", "output={out}"],
    ("eval", "mt-bench"): ["model={model}", "output={out}"],
    # the GGUF commands take a model file: a truncated GGUF ({gguf})
    ("quant", "imatrix"): ["model={gguf}", "output={out}"],
    ("quant", "quantize"): ["model={gguf}", "output={out}"],
    ("quant", "compare"): ["reference={gguf}", "models=[{gguf}]", "output={out}"],
}

# the broken data file ({data}: JSONL whose second line is cut), where each command takes data
DATA_ARGS: dict[tuple[str, ...], list[str]] = {
    ("tokenizer", "train"): ["inputs=[{data}]", "output={out}"],
    ("tokenizer", "stats"): ["tokenizers=[{good}]", "texts=[{data}]"],
    ("tokenizer", "merge"): ["extra={good}", "sample=[{data}]", "output={out}"],
    ("data", "pack"): ["inputs=[{data}]", "tokenizer={good}", "output={out}", "mix=null"],
    ("data", "instruct"): ["inputs=[{data}]", "output={out}"],
    ("data", "clean"): ["inputs=[{data}]", "output={out}"],
    ("data", "anonymize"): ["inputs=[{data}]", "output={out}"],
    ("data", "dedup"): ["inputs=[{data}]", "output={out}"],
    ("data", "features"): ["inputs=[{data}]", "output={out}"],
    ("data", "curate"): ["inputs=[{data}]", "output={out}"],
    ("data", "quality", "filter"): ["inputs=[{data}]", "output={out}"],
    ("data", "quality", "train"): ["train={data}", "output={out}"],
    ("data", "quality", "eval"): ["data={data}", "output={out}"],
    ("train", "sft"): ["model={good}", "data=[{data}]", "output={out}"],
    ("train", "dpo"): ["model={good}", "data=[{data}]", "output={out}"],
    ("train", "grpo"): ["model={good}", "data=[{data}]", "output={out}"],
    ("eval", "mt-bench"): ["model={good}", "questions={data}", "output={out}"],
}

# commands that read no file the user passes (they take names or nothing)
NO_INPUT = {("doctor",), ("model", "presets"), ("eval", "tasks"), ("eval", "export-lm-eval")}


@pytest.fixture(scope="module")
def broken(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("broken")
    model = root / "model"
    shutil.copytree(tiny_model, model)
    weights = model / "model.safetensors"
    with weights.open("r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    data = root / "corpus.jsonl"
    data.write_text('{"text": "Dzień dobry", "lang": "pl"}\n{"text": "zepsuty\n', encoding="utf-8")
    syntax = root / "syntax.yaml"
    syntax.write_text("output: x\n  steps: [1, 2\n", encoding="utf-8")
    unknown = root / "unknown.yaml"
    unknown.write_text("# a misspelt key\nlerning_rate: 3\n", encoding="utf-8")
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(root / "full.gguf", "llama")
    w.add_tensor("token_embd.weight", np.zeros((4, 256), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    full = (root / "full.gguf").read_bytes()
    (root / "cut.gguf").write_bytes(full[: len(full) // 2])
    return {
        "model": model,
        "data": data,
        "syntax": syntax,
        "unknown": unknown,
        "gguf": root / "cut.gguf",
        "good": tiny_model,
        "root": root,
    }


def _invoke(args: list[str]):
    return CliRunner().invoke(app, args)


def _check(res, path: tuple[str, ...], culprit: str) -> None:
    shown = f"bielik {' '.join(path)}: exit {res.exit_code}\n{res.output}"
    assert res.exit_code == 2, shown
    assert res.exception is None or isinstance(res.exception, SystemExit), shown
    assert "Traceback" not in res.output, shown
    assert culprit in res.output, shown
    assert res.output.startswith("error: "), shown


def _fill(args: list[str], broken, out) -> list[str]:
    names = {k: str(v) for k, v in broken.items()} | {"out": str(out)}
    return [a.format(**names) for a in args]


def test_every_command_is_exercised():
    paths = set(command_paths())
    covered = set(STAGE_PATHS) | set(MODEL_ARGS) | set(DATA_ARGS) | {("recipe", "run"), ("bench", "peak")}
    assert paths - NO_INPUT <= covered, f"commands without a broken-input case: {sorted(paths - NO_INPUT - covered)}"
    assert set(MODEL_ARGS) | set(DATA_ARGS) <= paths, "a case names a command that does not exist"


@pytest.mark.parametrize("path", sorted(MODEL_ARGS), ids=" ".join)
def test_broken_model(path, broken, tmp_path):
    res = _invoke([*path, *_fill(MODEL_ARGS[path], broken, tmp_path / "out")])
    culprit = "cut.gguf" if path[0] == "quant" and path[1] != "export" else "model.safetensors"
    _check(res, path, culprit)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("path", sorted(DATA_ARGS), ids=" ".join)
def test_broken_data(path, broken, tmp_path):
    res = _invoke([*path, *_fill(DATA_ARGS[path], broken, tmp_path / "out")])
    _check(res, path, "corpus.jsonl:")  # file:line
    assert not (tmp_path / "out").exists()


CONFIG_PATHS = sorted(STAGE_PATHS) + [("bench", "peak"), ("recipe", "run")]


@pytest.mark.parametrize("path", CONFIG_PATHS, ids=" ".join)
def test_broken_config(path, broken):
    for name, where in (("syntax", "syntax.yaml:2:"), ("unknown", "unknown.yaml:2")):
        args = [str(broken[name])] if path == ("recipe", "run") else ["-c", str(broken[name])]
        res = _invoke([*path, *args])
        if path == ("recipe", "run") and name == "unknown":
            where = "unknown.yaml"  # a recipe has its own schema (the recipe runner reports no line)
        _check(res, path, where)
        if name == "unknown":
            assert "unknown key 'lerning_rate'" in res.output, res.output


def test_debug_shows_the_traceback_and_bugs_exit_1(broken, monkeypatch):
    args = ["generate", f"model={broken['model']}"]
    res = _invoke(["--debug", *args])
    assert isinstance(res.exception, BielikError) and "model.safetensors" in str(res.exception)
    monkeypatch.setenv("BIELIK_DEBUG", "1")
    assert isinstance(_invoke(args).exception, BielikError)
    monkeypatch.delenv("BIELIK_DEBUG")

    def bug(*a, **k):
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr("bielik.cli.load_stage_config", bug)
    res = _invoke(args)
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.output.strip() == (
        "error: unexpected ZeroDivisionError: division by zero (a bug: run with --debug for the traceback)"
    )


def test_real_processes_show_no_traceback(broken, tmp_path):
    """What a user sees on the terminal: datatrove and transformers write to stderr directly."""
    for args, culprit in (
        (["generate", f"model={broken['model']}"], "model.safetensors"),
        (["data", "clean", f"inputs=[{broken['data']}]", f"output={tmp_path / 'o'}"], "corpus.jsonl:2"),
    ):
        res = subprocess.run([sys.executable, "-m", "bielik", *args], capture_output=True, text=True, timeout=300)
        assert res.returncode == 2, res.stderr
        assert "Traceback" not in res.stderr + res.stdout, res.stderr
        assert culprit in res.stderr
        assert res.stderr.strip().startswith("error: ") and len(res.stderr.strip().splitlines()) == 1, res.stderr
