"""Dry runs of the papers' full-size recipes: validation, meta-device parameter counts, budgets, GPU-hours."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bielik.errors import BielikError, ConfigError
from bielik.recipe import load_recipe, run_recipe
from bielik.recipe_plan import dry_run, format_dry_run

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
FULL = ["bielik-7b-v0.1", "bielik-11b-v2", "bielik-v3-4.5b", "bielik-minitron-7b"]
TRAIN = ("train.pretrain", "train.sft", "train.dpo", "train.grpo", "compress.distill")

# exact counts of the shapes (RECIPE §3, §4, §7.3): Mistral 7B v0.1; Mistral 7B v0.2 up-scaled 32 -> 50 layers;
# Bielik-11B-v3 (tied 32k vocabulary) and its 40-layer / FFN-11,264 student
PARAMS = {
    ("bielik-7b-v0.1", "pretrain"): 7_241_732_096,
    ("bielik-11b-v2", "upscale"): 11_167_748_096,
    ("bielik-11b-v2", "dpo"): 11_167_748_096,
    ("bielik-minitron-7b", "importance"): 11_036_676_096,
    ("bielik-minitron-7b", "prune"): 7_345_606_656,
    ("bielik-minitron-7b", "grpo"): 7_345_606_656,
}


@pytest.mark.parametrize("name", FULL)
def test_full_size_recipe_dry_run(name, tmp_path):
    recipe = load_recipe(RECIPES / f"{name}.yaml", [f"run_dir={tmp_path / 'run'}"])
    d = dry_run(recipe)
    by_name = {s.name: s for s in d.stages}
    assert list(by_name) == list(recipe.stages)
    assert all(s.status.startswith("run") for s in d.stages)
    assert any(s.inputs_to_provide for s in d.stages)  # the inputs do not exist here
    for (rname, stage), expected in PARAMS.items():
        if rname == name:
            assert by_name[stage].model["parameters"] == expected, stage
    trained = [s for s in d.stages if s.kind in TRAIN]
    assert trained
    for s in trained:
        assert s.model is not None and s.tokens and s.tokens > 0
        assert s.gpu_hours is not None and math.isfinite(s.gpu_hours) and s.gpu_hours > 0, s.name
        assert s.wall_hours == pytest.approx(s.gpu_hours / (recipe.cluster.nodes * recipe.cluster.gpus_per_node))
        assert any("--standalone" in c and f"--only {s.name}" in c for c in s.commands)
        assert any("--nnodes" in c and "--rdzv-endpoint" in c and "--node_rank" in c for c in s.commands)
    text = format_dry_run(d)
    assert "inputs to provide:" in text and "GPU-hours" in text and not (tmp_path / "run").exists()
    assert math.isfinite(d.gpu_hours) and d.gpu_hours > 0
    # the command line prints the same plan
    from typer.testing import CliRunner

    from bielik.cli import app

    res = CliRunner().invoke(
        app, ["recipe", "run", str(RECIPES / f"{name}.yaml"), "--dry-run", f"run_dir={tmp_path / 'run'}"]
    )
    assert res.exit_code == 0, res.output
    assert f"total: {d.gpu_hours:,.0f} GPU-hours" in res.output and "torchrun --nnodes" in res.output
    assert not (tmp_path / "run").exists()


def test_v3_shape_follows_swap_and_upscale():
    d = dry_run(load_recipe(RECIPES / "bielik-v3-4.5b.yaml"))
    s = {x.name: x for x in d.stages}
    assert s["swap"].model["vocab_size"] == 32000 and s["swap"].model["layers"] == 36
    assert s["upscale"].model["layers"] == 56 and s["pretrain"].model["layers"] == 56  # n = 36, m = 8
    assert s["pretrain"].model["parameters"] == s["upscale"].model["parameters"]


def test_token_budget_and_gpu_hours_formula():
    """7B v0.1 pretraining: 17,350 x 256 x 4,096 tokens; hours = (6N + 12 L d T) D / (MFU P 3600)."""
    d = dry_run(load_recipe(RECIPES / "bielik-7b-v0.1.yaml"))
    p = next(s for s in d.stages if s.name == "pretrain")
    assert p.tokens == 17_350 * 256 * 4096
    n_matmul = 7_241_732_096 - 32000 * 4096  # the input embedding does not multiply
    flops = (6 * n_matmul + 12 * 32 * 4096 * 4096) * p.tokens
    assert p.flops == pytest.approx(flops, rel=1e-12)
    assert p.gpu_hours == pytest.approx(flops / (0.46 * 989e12 * 3600), rel=1e-9)


def test_measured_mfu_replaces_the_assumed_one(tmp_path):
    rows = [{"step": i, "mfu": m} for i, m in enumerate([0.2, 0.3, 0.5])] + [{"kind": "eval", "step": 3}]
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    base = dry_run(load_recipe(RECIPES / "bielik-11b-v2.yaml", ["cluster.mfu=0.4"]))
    measured = dry_run(load_recipe(RECIPES / "bielik-11b-v2.yaml", [f"cluster.mfu_from={metrics}"]))
    assert measured.mfu == pytest.approx(0.3)
    assert measured.gpu_hours == pytest.approx(base.gpu_hours * 0.4 / 0.3)
    with pytest.raises(BielikError, match="does not exist"):
        dry_run(load_recipe(RECIPES / "bielik-11b-v2.yaml", [f"cluster.mfu_from={tmp_path / 'none.jsonl'}"]))


def test_run_recipe_dry_run_and_bad_recipes(tmp_path):
    res = run_recipe(
        load_recipe(RECIPES / "bielik-minitron-7b.yaml"), dry_run=True, from_stage="distill", until_stage="sft"
    )
    assert list(res) == ["distill", "sft"]
    assert res["distill"]["status"].startswith("blocked")  # reads prune, which has not run
    assert res["sft"]["gpu_hours"] > 0
    with pytest.raises(ConfigError, match="pretrain"):
        run_recipe(load_recipe(RECIPES / "bielik-11b-v2.yaml"), from_stage="sft")  # pretrain has not finished
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nstages:\n  m: {kind: model.upscale, config: {model: x, m: 7, layers: 3}}\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="layers"):
        dry_run(load_recipe(bad))
    bad.write_text("name: bad\ninputs: {m: {path: x}}\nstages:\n  m: {kind: generate, config: {}}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="both as an input and as a stage"):
        load_recipe(bad)
