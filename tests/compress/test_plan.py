"""The candidate planner: the report's grid for Bielik-11B-v3 with exact counts, budgets, other bases, ranking."""

import pytest

from bielik.compress.plan import PlanConfig, parse_budget, plan
from bielik.errors import ConfigError
from bielik.model.factory import ParamCount, build_config, build_model


def test_default_plan_is_the_reports_grid_with_exact_counts():
    res = plan(PlanConfig())  # base=bielik-11b-v3, budget 2/3
    rows = {r["candidate"]: r for r in res["rows"]}
    assert res["base_parameters"] == 11_036_676_096
    for name in [
        "44 layers",
        "40 layers",
        "36 layers",
        "32 layers",
        "hidden 3648",
        "hidden 3072",
        *(f"FFN {f}" for f in (12800, 12288, 11264, 10240, 9216, 8192)),
    ]:
        assert name in rows, name
    chosen = rows["40 layers + FFN 11264"]
    assert (
        chosen["parameters"] == 7_345_606_656
        and round(100 * chosen["vs_base"], 1) == -33.4
        and "report's choice" in chosen["note"]
    )
    assert "unstable" in rows["FFN 8192"]["note"] and "collapsed" in rows["32 layers"]["note"]
    for name in ("40 layers + FFN 11264", "hidden 3072", "36 layers + FFN 12800"):  # counts are transformers' counts
        r = rows[name]
        config = build_config(
            "bielik-11b-v3", num_hidden_layers=r["layers"], hidden_size=r["hidden"], intermediate_size=r["ffn"]
        )
        assert ParamCount.of(build_model(config, device="meta", seed=None)).total == r["parameters"]
    mixes = [r for r in res["rows"] if r["axis"] == "mix"]
    assert mixes and all(r["within_budget"] for r in mixes)
    assert "| mix | 40 layers + FFN 11264 | 40 | 4096 | 11264 | 32/8 | 7,345,606,656 (7.35B) | -33.4% |" in res["table"]


def test_budgets():
    assert parse_budget("7.35B", 10**10) == 7_350_000_000 and parse_budget("750M", 10**10) == 750_000_000
    assert parse_budget(0.5, 1000) == 500 and parse_budget(None, 900) == 600 and parse_budget(2e6, 10) == 2_000_000
    with pytest.raises(ConfigError, match="budget='lots'"):
        parse_budget("lots", 10)
    tight = plan(PlanConfig(budget="7.35B", tolerance=0.005))
    assert {r["candidate"] for r in tight["rows"] if r["axis"] == "mix"} >= {"40 layers + FFN 11264"}
    assert all(abs(r["vs_budget"]) <= 0.005 for r in tight["rows"] if r["axis"] == "mix")


def test_other_base_and_output(tmp_path, tiny_model):
    res = plan(PlanConfig(base=str(tiny_model), budget=0.8, heads=[2], output=str(tmp_path / "plan")))
    axes = {r["axis"] for r in res["rows"]}
    assert {"base", "depth", "FFN", "hidden", "heads"} <= axes
    heads = next(r for r in res["rows"] if r["axis"] == "heads")
    assert (heads["heads"], heads["kv_heads"]) == (2, 2)  # GQA groups kept, one query head each
    assert (tmp_path / "plan" / "plan.md").read_text().startswith("Candidates for") and (
        tmp_path / "plan" / "metrics.json"
    ).is_file()
    with pytest.raises(ConfigError, match="neither an HF model directory nor a preset"):
        plan(PlanConfig(base="no-such-model"))


def test_rank_by_short_distillation(tmp_path, tiny_model, tiny_data):
    from bielik.compress.importance import ImportanceConfig, importance

    importance(
        ImportanceConfig(model=str(tiny_model), output=str(tmp_path / "imp"), data=str(tiny_data), samples=8, ctx=32)
    )
    res = plan(
        PlanConfig(
            base=str(tiny_model),
            layers=[1],
            ffn=[96],
            hidden=[],
            budget=0.7,
            tolerance=0.3,
            output=str(tmp_path / "plan"),
            rank={
                "importance": str(tmp_path / "imp"),
                "data": str(tiny_data),
                "top": 2,
                "train": {
                    "steps": 2,
                    "micro_batch_size": 2,
                    "lm_head_chunk": 64,
                    "eval": {"every": 0, "batches": 2},
                    "checkpoint": {"every": 0, "save_final": False},
                },
            },
        )
    )
    ranked = [r for r in res["rows"] if "rank_val_ce" in r]
    assert len(ranked) == 2 and ranked[0]["rank_val_ce"] <= ranked[1]["rank_val_ce"] and res["rows"][:2] == ranked
    assert "short-KD held-out CE" in res["table"]
