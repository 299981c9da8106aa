"""Surgery commands as a user runs them: real subprocesses, exit codes, messages."""

import subprocess
import sys

from tests.model.tiny_models import save_tiny


def bielik(*args):
    return subprocess.run([sys.executable, "-m", "bielik.cli", *args], capture_output=True, text=True, timeout=300)


def test_upscale_dry_run_prints_counts():
    res = bielik("model", "upscale", "model=mistral-7b-v0.2", "m=7", "dry_run=true")
    assert res.returncode == 0, res.stderr
    assert "32 -> 50 layers (map 0:25,7:32)" in res.stdout and "7.24B -> 11.17B" in res.stdout
    res = bielik("model", "upscale", "model=qwen2.5-3b", "m=8", "dry_run=true")
    assert res.returncode == 0 and "36 -> 56 layers (map 0:28,8:36)" in res.stdout


def test_merge_mismatch_is_one_clear_line(tmp_path):
    a = save_tiny(tmp_path / "a")
    b = save_tiny(tmp_path / "b", hidden_size=96)
    res = bielik("model", "merge", f"models=[{a}, {b}]", f"output={tmp_path / 'm'}")
    assert res.returncode == 2
    assert (
        "cannot merge: tensor lm_head.weight has shape [300, 64] in" in res.stderr and "vocabularies" not in res.stderr
    )
    assert "Traceback" not in res.stderr and not (tmp_path / "m").exists()
    res = bielik("model", "upscale", f"model={a}", "m=1", "layer_map=[0, 1]", f"output={tmp_path / 'u'}")
    assert res.returncode == 2 and "exactly one of 'm'" in res.stderr
