"""The command line as a user runs it: real subprocesses, exit codes, messages."""

import json
import subprocess
import sys


def bielik(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "bielik.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_model_info_prints_real_counts():
    res = bielik("model", "info", "mistral-7b-v0.1", "mistral-7b-v0.2", "qwen2.5-1.5b", "qwen2.5-3b", "qwen2.5-7b")
    assert res.returncode == 0, res.stderr
    for count in ("7.24B", "1.54B", "3.09B", "7.62B"):
        assert count in res.stdout


def test_misspelt_key_clear_error_no_output(tmp_path, tiny_model, tiny_data):
    out = tmp_path / "run"
    res = bielik(
        "train", "pretrain", f"model={tiny_model}", f"data={tiny_data}", f"output={out}", "train.optim.warmup_step=3"
    )
    assert res.returncode == 2
    assert "unknown key 'train.optim.warmup_step'; did you mean 'train.optim.warmup_steps'?" in res.stderr
    assert "Traceback" not in res.stderr and not out.exists()


def test_missing_data_clear_error_no_output(tmp_path, tiny_model):
    out = tmp_path / "run"
    res = bielik("train", "pretrain", f"model={tiny_model}", f"data={tmp_path / 'nodata'}", f"output={out}")
    assert res.returncode == 2 and "nodata is not a packed dataset" in res.stderr
    assert "Traceback" not in res.stderr and not out.exists()
    res = bielik(
        "data", "pack", f"inputs=[{tmp_path / 'missing.jsonl'}]", f"tokenizer={tiny_model}", f"output={tmp_path / 'd'}"
    )
    assert res.returncode == 2 and "missing.jsonl does not exist" in res.stderr and not (tmp_path / "d").exists()


def test_malformed_jsonl_via_cli(tmp_path, tiny_model):
    src = tmp_path / "c.jsonl"
    src.write_text('{"text": "Dzień dobry", "lang": "pl"}\n{"text": "zepsuty\n', encoding="utf-8")
    res = bielik("data", "pack", f"inputs=[{src}]", f"tokenizer={tiny_model}", f"output={tmp_path / 'd'}", "mix=null")
    assert res.returncode == 2 and "c.jsonl:2: not a valid JSON object" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "d").exists()


def test_doctor_json():
    res = bielik("doctor", "--json")
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["core"]["torch"] and any(d["device"] == "cpu" for d in rep["devices"])
    assert {o["component"] for o in rep["optional"]} >= {"tensorboard", "lm-eval", "datatrove"}


def test_generate_cli(tiny_model):
    res = bielik("generate", f"model={tiny_model}", "prompts=[Ala ma]", "max_new_tokens=5")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("Ala ma")


def test_recipe_dry_run_and_bad_reference(tmp_path):
    res = bielik("recipe", "run", "recipes/tiny-pl.yaml", "--dry-run", f"run_dir={tmp_path}", cwd=_repo())
    assert res.returncode == 0, res.stderr
    assert (
        "train.pretrain" in res.stdout and "run (no finished output)" in res.stdout and "[report] report" in res.stdout
    )
    bad = tmp_path / "r.yaml"
    bad.write_text("name: x\nstages:\n  a: {kind: model.init, config: {tokenizer: '${tok}'}}\n")
    res = bielik("recipe", "run", str(bad), "--dry-run")
    assert res.returncode == 2 and "'${tok}' refers to no earlier stage" in res.stderr


def _repo():
    from pathlib import Path

    return Path(__file__).resolve().parents[1]
