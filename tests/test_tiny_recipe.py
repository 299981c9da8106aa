"""recipes/tiny-pl.yaml is the whole Bielik recipe in one chain, and recipes/tiny-pl-smoke.yaml is that chain in
miniature without the llama.cpp stages; the smoke recipe runs end to end here (the full one in the slow suite).

The recipe loader has no ``extends``, so the two files are kept one chain by a test: the same stages in the same
order, of the same kinds, reading the same earlier stages (the smoke file only drops the four llama.cpp stages
and the GGUF rows of the speed table).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FULL = REPO / "recipes" / "tiny-pl.yaml"
SMOKE = REPO / "recipes" / "tiny-pl-smoke.yaml"
LLAMA_CPP_STAGES = ("export", "imatrix", "quantize", "compare")
# the chain of issue 13 in order (a stage kind may repeat: pretraining, then continued pretraining after DUS)
CHAIN = [
    "data.curate",
    "tokenizer.train",
    "data.pack",
    "model.init",
    "train.pretrain",
    "model.upscale",
    "train.pretrain",
    "train.sft",
    "train.dpo",
    "train.grpo",
    "model.merge",
    "compress.importance",
    "compress.prune",
    "compress.distill",
    "quant.export",
    "quant.imatrix",
    "quant.quantize",
    "quant.compare",
    "eval.leaderboard",
    "bench.speed",
    "report",
]
_REF = re.compile(r"\$\{([A-Za-z0-9_\-]+)\}")


def _refs(config: dict) -> list[str]:
    return sorted(set(_REF.findall(json.dumps(config))))


def _is_subsequence(needle: list[str], hay: list[str]) -> bool:
    it = iter(hay)
    return all(any(k == h for h in it) for k in needle)


def _metrics(run: Path, stage: str) -> dict:
    return json.loads((run / stage / "metrics.json").read_text(encoding="utf-8"))


def test_full_recipe_is_the_whole_chain_on_curated_shipped_data(tmp_path):
    from bielik.recipe import load_recipe, plan

    recipe = load_recipe(FULL, [f"run_dir={tmp_path}"])
    kinds = [s.kind for s in recipe.stages.values()]
    assert _is_subsequence(CHAIN, kinds), kinds
    cfgs = {name: cfg for name, _, cfg in plan(recipe)}  # every stage's config validates
    curated = [f"{tmp_path}/curate/data", f"{tmp_path}/curate_en/data"]
    assert cfgs["tokenizer"].inputs == curated and cfgs["data"].inputs == curated
    raw = cfgs["curate"].inputs + cfgs["curate_en"].inputs
    assert all((REPO / p).is_file() for p in raw)
    # the perplexity text is held out: no training stage reads it
    for name in ("leaderboard", "leaderboard_distilled"):
        held_out = cfgs[name].perplexity.inputs
        assert held_out and not set(held_out) & set(raw) and all((REPO / p).is_file() for p in held_out)
    assert cfgs["merge"].models == [f"{tmp_path}/dpo/final", f"{tmp_path}/grpo/final"]
    assert cfgs["export"].model == cfgs["speed"].models[1] == f"{tmp_path}/distill/final"


def test_smoke_recipe_is_the_same_chain_without_llama_cpp():
    from bielik.recipe import load_recipe

    full, smoke = load_recipe(FULL), load_recipe(SMOKE)
    assert list(smoke.stages) == [n for n in full.stages if n not in LLAMA_CPP_STAGES]
    for name, spec in smoke.stages.items():
        assert spec.kind == full.stages[name].kind, name
        if name != "speed":  # the smoke speed table has no GGUF rows
            assert _refs(spec.config) == _refs(full.stages[name].config), name
    assert _refs(smoke.stages["speed"].config) == ["distill", "merge"]
    assert not any(s.kind.startswith("quant.") for s in smoke.stages.values())


def test_smoke_recipe_end_to_end(tmp_path, monkeypatch):
    """The whole chain at smoke size: every stage finishes with real outcomes, and a re-run skips every stage."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoTokenizer

    from bielik.recipe import load_recipe, run_recipe

    monkeypatch.chdir(REPO)  # the recipe names the shipped files relative to the repository root
    recipe = load_recipe(SMOKE, [f"run_dir={tmp_path}"])
    run_recipe(recipe)
    for name in recipe.stages:
        assert (tmp_path / name / "metrics.json").is_file(), name
    m = {name: _metrics(tmp_path, name) for name in recipe.stages}

    # curation filtered documents, and the tokenizer / packer read exactly the curated ones
    assert 0 < m["curate"]["kept"] < m["curate"]["input"] and m["curate"]["dropped"].get("quality", 0) > 0
    assert m["data"]["documents"] == m["curate"]["kept"] + m["curate_en"]["kept"]
    assert set(m["data"]["train"]["tokens_by_lang"]) == {"pl", "en"}

    # pretraining learnt; DUS 4 -> 2(4 - 1) = 6 layers kept most of it; continued pretraining ran on it
    assert m["pretrain"]["final_val_loss"] < 0.85 * m["pretrain"]["initial_val_loss"]  # measured 7.66 -> 5.86
    assert AutoConfig.from_pretrained(tmp_path / "upscale").num_hidden_layers == 6
    assert m["cpt"]["initial_val_loss"] < m["pretrain"]["initial_val_loss"]
    assert math.isfinite(m["cpt"]["final_val_loss"])

    # SFT: held-out loss fell, and the model's turns end with <|im_end|> (its EOS, used by the chat sample)
    assert m["sft"]["final_val_loss"] < m["sft"]["initial_val_loss"]
    assert AutoTokenizer.from_pretrained(tmp_path / "sft" / "final").eos_token == "<|im_end|>"
    chat = json.loads((tmp_path / "chat" / "samples.json").read_text(encoding="utf-8"))
    assert all(s["chat"] for s in chat)

    # DPO-P and GRPO logged their own metrics
    dpo_rows = [json.loads(line) for line in (tmp_path / "dpo" / "metrics.jsonl").read_text().splitlines()]
    assert {"margin", "penalty", "accuracy"} <= set(next(r for r in dpo_rows if r["kind"] == "train"))
    assert {"initial_reward", "final_reward"} <= set(m["grpo"]) and m["grpo"]["steps"] == 2

    # the merge is the average of the DPO-P and GRPO weights
    merged = load_file(tmp_path / "merge" / "model.safetensors")
    a = load_file(tmp_path / "dpo" / "final" / "model.safetensors")
    b = load_file(tmp_path / "grpo" / "final" / "model.safetensors")
    key = "model.layers.0.mlp.down_proj.weight"
    assert torch.allclose(merged[key], 0.5 * a[key] + 0.5 * b[key], atol=1e-6) and not torch.equal(a[key], b[key])

    # pruned 6 -> 4 layers and FFN 384 -> 256; distillation brought the student closer to the teacher
    pruned = AutoConfig.from_pretrained(tmp_path / "prune")
    assert (pruned.num_hidden_layers, pruned.intermediate_size) == (4, 256)
    assert m["distill"]["final_val_loss"] < m["distill"]["initial_val_loss"]

    # evaluation: leaderboard rows on the shipped data, held-out perplexity, a speed row per model
    for name in ("leaderboard", "leaderboard_distilled"):
        tasks = {r["task"] for r in m[name]["shots"]["0"]["tasks"] if r.get("score") is not None}
        assert {"polemo2_in_multiple_choice", "polish_dyk_multiple_choice"} <= tasks, tasks
        # better than a uniform guess over the 2,048-token vocabulary
        assert 1 < m[name]["perplexity"]["token_perplexity"] < 2048
    speed = (tmp_path / "speed" / "speed.md").read_text(encoding="utf-8")
    assert "| merge | transformers |" in speed and "| final | transformers |" in speed

    # the last stage wrote the report: one section per stage that ran
    report_md = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert (tmp_path / "report" / "report.html").is_file()
    for name, spec in recipe.stages.items():
        if name != "report":
            assert f"`{spec.kind}`" in report_md, name

    # a re-run reuses every stage, the report included: no output is rewritten
    stamps = {name: (tmp_path / name / "metrics.json").stat().st_mtime_ns for name in recipe.stages}
    res = run_recipe(load_recipe(SMOKE, [f"run_dir={tmp_path}"]))
    assert all(isinstance(v, str) for v in res.values())  # a skipped stage returns its output path
    assert {name: (tmp_path / name / "metrics.json").stat().st_mtime_ns for name in recipe.stages} == stamps


@pytest.mark.slow
def test_full_recipe_end_to_end(tmp_path, monkeypatch):
    """The README's main job (~10 minutes on 2 cores; needs the llama.cpp tools, built once on first use)."""
    from bielik.recipe import load_recipe, run_recipe

    monkeypatch.chdir(REPO)
    recipe = load_recipe(FULL, [f"run_dir={tmp_path}"])
    run_recipe(recipe)
    m = {name: _metrics(tmp_path, name) for name in recipe.stages}
    assert m["pretrain"]["final_val_loss"] < 0.75 * m["pretrain"]["initial_val_loss"]
    assert m["sft"]["final_val_loss"] < m["sft"]["initial_val_loss"]
    assert m["distill"]["final_val_loss"] < 0.7 * m["distill"]["initial_val_loss"]
    rows = m["compare"]["rows"]
    assert {(r["type"], r["imatrix"]) for r in rows} >= {("Q4_K_M", True), ("Q4_K_M", False)}
    assert all(math.isfinite(r["kld_mean"]) and r["kld_mean"] >= 0 for r in rows)
    assert m["leaderboard"]["perplexity"]["token_perplexity"] > 1
    speed = (tmp_path / "speed" / "speed.md").read_text(encoding="utf-8")
    assert "llama.cpp" in speed and "Q4_K_M" in speed
