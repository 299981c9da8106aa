"""`bielik compress importance | plan | prune | distill` as a user runs them (real subprocesses)."""

import json
import subprocess
import sys

import pytest


@pytest.fixture(autouse=True)
def _registered():
    from bielik.stages import registry

    if "compress.plan" not in registry():
        pytest.skip("compress stages are not registered in bielik/stages.py yet")


def bielik(*args):
    return subprocess.run(
        [sys.executable, "-m", "bielik.cli", "compress", *args], capture_output=True, text=True, timeout=600
    )


def test_plan_prints_the_reports_table():
    res = bielik("plan", "base=bielik-11b-v3")
    assert res.returncode == 0, res.stderr
    assert "| mix | 40 layers + FFN 11264 | 40 | 4096 | 11264 | 32/8 | 7,345,606,656 (7.35B) | -33.4% |" in res.stdout
    for cell in ("| depth | 32 layers |", "| hidden | hidden 3648 |", "| FFN | FFN 8192 |"):
        assert cell in res.stdout


def test_importance_prune_distill_chain(tmp_path, tiny_model, tiny_data):
    imp, pruned, kd = tmp_path / "imp", tmp_path / "pruned", tmp_path / "kd"
    res = bielik("importance", f"model={tiny_model}", f"output={imp}", f"data={tiny_data}", "samples=8", "ctx=32")
    assert res.returncode == 0, res.stderr
    assert json.loads((imp / "metrics.json").read_text())["layers"] == 2 and (imp / "importance.png").is_file()
    assert "Block Influence" in res.stdout  # the report's tables of the stage
    res = bielik(
        "prune", f"model={tiny_model}", f"importance={imp}", f"output={pruned}", "layers=1", "intermediate_size=96"
    )
    assert res.returncode == 0, res.stderr
    assert json.loads((pruned / "metrics.json").read_text())["shape"]["ffn"] == 96
    res = bielik(
        "distill",
        f"teacher={tiny_model}",
        f"student={pruned}",
        f"data={tiny_data}",
        f"output={kd}",
        "train.steps=2",
        "train.micro_batch_size=2",
        "train.eval.batches=1",
    )
    assert res.returncode == 0, res.stderr
    assert json.loads((kd / "metrics.json").read_text())["heldout"]["tokens"] > 0


def test_bad_target_is_a_clear_error(tmp_path, tiny_model):
    res = bielik("prune", f"model={tiny_model}", f"output={tmp_path / 'p'}", "num_attention_heads=3")
    assert res.returncode == 2 and "num_attention_heads=3" in res.stderr and "Traceback" not in res.stderr
    res = bielik("prune", f"model={tiny_model}", "layerz=1")
    assert res.returncode == 2 and "did you mean 'layers'" in res.stderr
    assert not (tmp_path / "p").exists()


def test_recipe_plans():
    from pathlib import Path

    from bielik.recipe import load_recipe, plan

    steps = plan(load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "minitron-tiny.yaml"))
    kinds = [stage.kind for _, stage, _ in steps]
    assert kinds[-5:] == ["compress.importance", "compress.plan", "compress.prune", "compress.distill", "report"]
    distill_cfg = steps[-2][2]
    assert (
        distill_cfg.alpha == 0.0
        and distill_cfg.student.endswith("prune")
        and distill_cfg.teacher.endswith("teacher/final")
    )
