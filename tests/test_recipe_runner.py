"""The recipe runner: skip rule with input digests, --from / --until / --only, failures, lineage records.

Tiny fast stages only (model.init of a 1-layer model, tokenizer.stats, generate of 2 tokens).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from bielik.artifacts import DigestCache, path_digest
from bielik.errors import ConfigError
from bielik.recipe import continue_command, load_recipe, run_recipe


@pytest.fixture
def recipe_file(tmp_path, tiny_tokenizer) -> Path:
    tok = tmp_path / "tok"
    shutil.copytree(tiny_tokenizer, tok)
    text = tmp_path / "text.txt"
    text.write_text("Litwo! Ojczyzno moja! Ty jesteś jak zdrowie.\n", encoding="utf-8")
    recipe = {
        "name": "runner-test",
        "run_dir": str(tmp_path / "run"),
        "inputs": {"tok": {"path": str(tok)}, "text": {"path": str(text)}},
        "stages": {
            "init": {
                "kind": "model.init",
                "config": {
                    "preset": "tiny-llama",
                    "tokenizer": "${tok}",
                    "overrides": {
                        "hidden_size": 64,
                        "intermediate_size": 128,
                        "num_hidden_layers": 1,
                        "num_attention_heads": 2,
                        "num_key_value_heads": 1,
                    },
                },
            },
            "stats": {
                "kind": "tokenizer.stats",
                "config": {"tokenizers": ["${tok}"], "texts": ["${text}"], "chart": False},
            },
            "sample": {
                "kind": "generate",
                "config": {
                    "model": "${init}",
                    "prompts": ["Ala"],
                    "max_new_tokens": 2,
                    "temperature": 0.0,
                    "device": "cpu",
                },
            },
        },
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def _replace_stage(monkeypatch, kind: str, func) -> None:
    """Make the registry hand the runner ``func`` for stage ``kind`` (a failing stage)."""
    import dataclasses

    import bielik.stages

    real = bielik.stages.get
    monkeypatch.setattr(
        bielik.stages, "get", lambda k: dataclasses.replace(real(k), run=func) if k == kind else real(k)
    )


def _state(path: Path) -> dict:
    return json.loads((Path(load_recipe(path).run_dir) / "recipe-state.json").read_text(encoding="utf-8"))


def _started(path: Path) -> dict[str, str]:
    """Per stage, the start time recorded in its lineage.json (changes exactly when the stage reruns)."""
    run = Path(load_recipe(path).run_dir)
    return {
        n: json.loads((run / n / "lineage.json").read_text(encoding="utf-8"))["started"]
        + "|"
        + str((run / n / "metrics.json").stat().st_mtime_ns)
        for n in ("init", "stats", "sample")
    }


def test_rerun_skips_everything_and_records_lineage(recipe_file, caplog):
    first = run_recipe(load_recipe(recipe_file))
    assert set(first) == {"init", "stats", "sample"}
    before = _started(recipe_file)
    second = run_recipe(load_recipe(recipe_file))
    assert _started(recipe_file) == before  # nothing reran
    assert second == {n: str(Path(load_recipe(recipe_file).run_dir) / n) for n in ("init", "stats", "sample")}

    run = Path(load_recipe(recipe_file).run_dir)
    lineage = json.loads((run / "init" / "lineage.json").read_text(encoding="utf-8"))
    for key in ("bielik_version", "git_rev", "host", "torch", "transformers", "started", "finished", "wall_time_s"):
        assert key in lineage
    assert lineage["wall_time_s"] > 0
    tok = str(Path(recipe_file).parent / "tok")
    assert lineage["recipe_inputs"] == {tok: path_digest(tok)}
    state = _state(recipe_file)
    assert state["source"] == str(recipe_file)
    assert {n: s["status"] for n, s in state["stages"].items()} == {"init": "done", "stats": "done", "sample": "done"}
    assert all(s["reused"] for s in state["stages"].values())
    assert all(s["wall_time_s"] > 0 for s in state["stages"].values())
    # generate reads init's output: its recorded inputs are the init directory's digest
    sample = json.loads((run / "sample" / "lineage.json").read_text())
    assert sample["recipe_inputs"] == {str(run / "init"): path_digest(run / "init")}


def test_touching_an_input_reruns_its_readers_and_what_follows(recipe_file):
    run_recipe(load_recipe(recipe_file))
    t0 = _started(recipe_file)
    # the text is read by 'stats' only
    text = Path(recipe_file).parent / "text.txt"
    text.write_text(text.read_text(encoding="utf-8") + "Panie Tadeuszu.\n", encoding="utf-8")
    run_recipe(load_recipe(recipe_file))
    t1 = _started(recipe_file)
    assert t1["stats"] != t0["stats"]
    assert t1["init"] == t0["init"] and t1["sample"] == t0["sample"]
    # an mtime-only touch re-hashes but the content is the same: nothing reruns
    text.touch()
    run_recipe(load_recipe(recipe_file))
    assert _started(recipe_file) == t1
    # the tokenizer is read by 'init' and 'stats'; 'sample' reads init's (new) output, so it reruns too
    tok_json = Path(recipe_file).parent / "tok" / "tokenizer.json"
    tok_json.write_text(tok_json.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    run_recipe(load_recipe(recipe_file))
    t2 = _started(recipe_file)
    assert all(t2[n] != t1[n] for n in ("init", "stats", "sample"))


def test_from_until_only(recipe_file):
    with pytest.raises(ConfigError, match="'init'"):
        run_recipe(load_recipe(recipe_file), only="sample")  # init has not run yet
    res = run_recipe(load_recipe(recipe_file), until_stage="init")
    assert list(res) == ["init"]
    run = Path(load_recipe(recipe_file).run_dir)
    assert not (run / "stats").exists() and not (run / "sample").exists()
    assert list(run_recipe(load_recipe(recipe_file), only="sample")) == ["sample"]
    assert not (run / "stats").exists()
    run_recipe(load_recipe(recipe_file))
    t0 = _started(recipe_file)
    res = run_recipe(load_recipe(recipe_file), from_stage="stats")
    t1 = _started(recipe_file)
    assert list(res) == ["stats", "sample"]
    assert t1["init"] == t0["init"] and t1["stats"] != t0["stats"] and t1["sample"] != t0["sample"]
    run_recipe(load_recipe(recipe_file), only="stats")
    t2 = _started(recipe_file)
    assert t2["stats"] != t1["stats"] and t2["init"] == t1["init"] and t2["sample"] == t1["sample"]
    with pytest.raises(ConfigError, match="stages: init, stats, sample"):
        run_recipe(load_recipe(recipe_file), from_stage="sft")
    with pytest.raises(ConfigError, match="cannot be combined"):
        run_recipe(load_recipe(recipe_file), only="init", until_stage="stats")


def test_failed_stage_prints_continue_command_and_keeps_earlier_outputs(recipe_file, capsys, monkeypatch):
    recipe = load_recipe(recipe_file, ["sample.max_new_tokens=3"])
    run_recipe(recipe, until_stage="stats")
    t0 = {n: (Path(recipe.run_dir) / n / "metrics.json").stat().st_mtime_ns for n in ("init", "stats")}

    def boom(cfg):
        Path(cfg.output).mkdir(parents=True, exist_ok=True)
        (Path(cfg.output) / "config.yaml").write_text("partial", encoding="utf-8")
        raise RuntimeError("out of memory")

    _replace_stage(monkeypatch, "generate", boom)
    with pytest.raises(RuntimeError, match="out of memory"):
        run_recipe(load_recipe(recipe_file, ["sample.max_new_tokens=3"]))
    err = capsys.readouterr().err
    assert f"to continue: bielik recipe run {recipe_file} sample.max_new_tokens=3 --from sample" in err
    assert {n: (Path(recipe.run_dir) / n / "metrics.json").stat().st_mtime_ns for n in ("init", "stats")} == t0
    state = _state(recipe_file)
    assert state["stages"]["sample"]["status"] == "failed" and "out of memory" in state["stages"]["sample"]["error"]
    monkeypatch.undo()
    res = run_recipe(load_recipe(recipe_file, ["sample.max_new_tokens=3"]))
    assert isinstance(res["sample"], list) and len(res["sample"]) == 1  # it ran (a skipped stage returns its path)
    assert _state(recipe_file)["stages"]["sample"]["status"] == "done"


def test_a_failed_rerun_is_not_mistaken_for_done(recipe_file, monkeypatch):
    """Old output with metrics.json, same config and inputs, but the latest attempt failed: it reruns."""
    run_recipe(load_recipe(recipe_file))

    def interrupted(cfg):
        raise KeyboardInterrupt

    _replace_stage(monkeypatch, "generate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(load_recipe(recipe_file), from_stage="sample")
    monkeypatch.undo()
    res = run_recipe(load_recipe(recipe_file))
    assert isinstance(res["sample"], list)
    assert isinstance(res["init"], str)


def test_continue_command_quotes_overrides(recipe_file):
    r = load_recipe(recipe_file, ["sample.prompts=[Ala ma kota]"])
    expected = f"bielik recipe run {recipe_file} 'sample.prompts=[Ala ma kota]' --from sample"
    assert continue_command(r, "sample") == expected


def test_digest_cache_rereads_only_changed_files(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "a.bin").write_bytes(b"x" * 1000)
    (d / "b.json").write_text("{}", encoding="utf-8")
    (d / ".tmp-partial").write_text("ignored", encoding="utf-8")
    cache = DigestCache(tmp_path / "cache.json")
    first = path_digest(d, cache)
    assert first == path_digest(d) and cache.hashed_bytes == 1002
    cache.save()
    again = DigestCache(tmp_path / "cache.json")
    assert path_digest(d, again) == first and again.hashed_bytes == 0
    (d / "b.json").write_text('{"x": 1}', encoding="utf-8")
    changed = path_digest(d, again)
    assert changed != first and again.hashed_bytes == len('{"x": 1}')
    (d / "b.json").rename(d / "c.json")  # names are part of a directory's digest
    assert path_digest(d, again) != changed


def _with_report(recipe_file: Path) -> Path:
    data = yaml.safe_load(recipe_file.read_text(encoding="utf-8"))
    data["stages"]["report"] = {"kind": "report"}
    recipe_file.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return recipe_file


def test_report_stage_is_rebuilt_exactly_when_another_stage_ran(recipe_file):
    path = _with_report(recipe_file)
    run = Path(load_recipe(path).run_dir)
    run_recipe(load_recipe(path))
    html = run / "report" / "report.html"
    assert html.is_file() and "tokenizer.stats" in html.read_text(encoding="utf-8")
    t0 = html.stat().st_mtime_ns
    res = run_recipe(load_recipe(path))
    assert all(isinstance(v, str) for v in res.values())  # every stage skipped, the report too
    assert html.stat().st_mtime_ns == t0
    run_recipe(load_recipe(path), only="stats")  # a stage reran: its lineage changed, so the report is stale
    res = run_recipe(load_recipe(path))
    assert isinstance(res["report"], dict) and isinstance(res["stats"], str)
    assert html.stat().st_mtime_ns != t0


def test_a_bare_word_in_a_config_is_not_an_input_path(recipe_file, tmp_path, monkeypatch):
    """``preset: tiny-llama`` is a name even when a file of that name exists in the working directory
    (the ``bielik`` package directory once made every training stage rerun after any source change)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny-llama").write_text("not a model", encoding="utf-8")
    run_recipe(load_recipe(recipe_file))
    t0 = _started(recipe_file)
    (tmp_path / "tiny-llama").write_text("changed", encoding="utf-8")
    run_recipe(load_recipe(recipe_file))
    assert _started(recipe_file) == t0


def test_a_finished_training_stage_trains_afresh_an_unfinished_one_resumes(tmp_path, tiny_model, tiny_data):
    recipe = {
        "name": "train-test",
        "run_dir": str(tmp_path / "run"),
        "inputs": {"model": {"path": str(tiny_model)}, "data": {"path": str(tiny_data)}},
        "stages": {
            "pretrain": {
                "kind": "train.pretrain",
                "config": {
                    "model": "${model}",
                    "data": "${data}",
                    "train": {
                        "steps": 4,
                        "micro_batch_size": 2,
                        "eval": {"every": 0},
                        "logging": {"every": 1},
                        "checkpoint": {"every": 2, "keep_last": 2},
                    },
                },
            }
        },
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    out = tmp_path / "run" / "pretrain"

    def train_steps() -> list[int]:
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
        return [r["step"] for r in rows if r.get("kind") == "train"]

    first = run_recipe(load_recipe(path))["pretrain"]
    assert first["start_step"] == 0 and train_steps() == [1, 2, 3, 4]
    again = run_recipe(load_recipe(path), from_stage="pretrain")["pretrain"]
    assert again["start_step"] == 0 and train_steps() == [1, 2, 3, 4]  # trained afresh, one run's log
    assert not (tmp_path / "run" / "pretrain.previous").exists()
    # killed after its step-2 checkpoint: the rerun resumes there
    import shutil as sh

    from bielik.train import checkpoint as ckpt

    sh.rmtree(out / "checkpoints" / ckpt.checkpoint_name(4))
    (out / "checkpoints" / "latest").write_text(ckpt.checkpoint_name(2))
    (out / "metrics.json").unlink()
    resumed = run_recipe(load_recipe(path))["pretrain"]
    assert resumed["start_step"] == 2 and resumed["steps"] == 4
