"""``bielik eval leaderboard`` end to end on the tiny model: outputs, lm-eval-shaped results, summary scores."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bielik.cli import app
from bielik.eval.leaderboard import LeaderboardConfig, summarize
from bielik.eval.tasks import get_task
from tests.conftest import REPO, shared_dir

runner = CliRunner()


def test_cli_leaderboard_zero_and_few_shot(tmp_path, tiny_model):
    out = tmp_path / "lb"
    res = runner.invoke(
        app,
        [
            "eval",
            "leaderboard",
            f"model={tiny_model}",
            f"output={out}",
            "limit=6",
            "num_fewshot=[0,2]",
            "tasks=[polemo2_in_multiple_choice,polemo2_out,polish_eq_bench,polish_dyk_multiple_choice]",
            "split_fallback=[train]",
            "lm.device=cpu",
            "bootstrap_iters=20",
            f"perplexity.inputs=[{REPO / 'bielik/resources/corpus/constitution_preamble_pl.txt'}]",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "average (baseline-normalised)" in res.output
    for f in (
        "results_0shot.json",
        "results_2shot.json",
        "results.md",
        "scores.png",
        "metrics.json",
        "config.yaml",
        "lineage.json",
        "samples_2shot/polemo2_out.jsonl",
    ):
        assert (out / f).is_file(), f
    r2 = json.loads((out / "results_2shot.json").read_text())
    assert set(r2) >= {"results", "configs", "versions", "n-shot", "higher_is_better", "n-samples", "config"}
    assert r2["n-shot"]["polemo2_out"] == 2 and r2["n-shot"]["polish_eq_bench"] == 0  # EQ-Bench is zero-shot only
    assert r2["n-samples"]["polemo2_in_multiple_choice"] == {"original": 723, "effective": 6}
    assert r2["bielik"]["splits"]["polish_dyk_multiple_choice"] == "train"
    entry = r2["results"]["polemo2_in_multiple_choice"]
    assert 0 <= entry["acc,none"] <= 1 and isinstance(entry["acc_stderr,none"], float)
    assert "f1,none" in r2["results"]["polish_dyk_multiple_choice"]
    summary = json.loads((out / "metrics.json").read_text())
    rows = {r["task"]: r for r in summary["shots"]["2"]["tasks"]}
    s, b = rows["polemo2_out"]["score"], rows["polemo2_out"]["baseline"]
    assert b == 0.368 and rows["polemo2_out"]["normalised"] == pytest.approx(100 * (s - b) / (1 - b))
    main = [r["normalised"] for r in rows.values() if r["group"] != "eq_bench"]
    assert summary["shots"]["2"]["average_normalised"] == pytest.approx(sum(main) / len(main))
    assert summary["perplexity"]["token_perplexity"] > 1 and summary["perplexity"]["tokens"] > 100


def test_summary_rag_aggregates():
    specs = [
        get_task(n)
        for n in ("polish_polqa_open_book", "polish_poquad_open_book", "polish_polqa_reranking_multiple_choice")
    ]
    results = {
        "results": {
            "polish_polqa_open_book": {"levenshtein,none": 0.4},
            "polish_poquad_open_book": {"levenshtein,none": 0.6},
            "polish_polqa_reranking_multiple_choice": {"acc,none": 0.7},
        },
        "bielik": {"baselines": {t.task: {"value": t.leaderboard.baseline, "source": "published"} for t in specs}},
    }
    s = summarize(results, specs)
    assert s["rag_reader"] == pytest.approx(0.5) and s["rag_reranking"] == 0.7
    b = 0.5335588952710677
    assert s["average_normalised"] == pytest.approx((40 + 60 + 100 * (0.7 - b) / (1 - b)) / 3)


def test_unpublished_baseline_is_the_split_majority(tmp_path, eval_lm):
    """KLEJ-NER's baseline was not retrieved: the majority class of its validation split (0.3132, TASKS.md) is used."""
    from bielik.eval.data import search_dirs
    from bielik.eval.harness import evaluate

    results, _ = evaluate(
        eval_lm,
        [get_task("polish_klej_ner_multiple_choice")],
        0,
        search_dirs([str(shared_dir() / "data" / "eval")]),
        limit=4,
        bootstrap_iters=0,
    )
    base = results["bielik"]["baselines"]["polish_klej_ner_multiple_choice"]
    assert round(base["value"], 4) == 0.3132 and base["source"].startswith("majority")


def test_cli_errors_and_task_listing(tmp_path, tiny_model):
    res = runner.invoke(
        app, ["eval", "leaderboard", f"model={tiny_model}", f"output={tmp_path / 'x'}", "tasks=[polemo2_inn]"]
    )
    assert res.exit_code == 2 and "did you mean" in res.output and not (tmp_path / "x").exists()
    res = runner.invoke(
        app,
        [
            "eval",
            "leaderboard",
            f"model={tiny_model}",
            f"output={tmp_path / 'y'}",
            "tasks=[polish_psc_regex]",
            "split=test",
        ],
    )
    assert res.exit_code == 2 and "allegro/klej-psc" in res.output
    res = runner.invoke(app, ["eval", "tasks", "--json"])
    assert res.exit_code == 0
    rows = {r["task"]: r for r in json.loads(res.output)}
    assert rows["polemo2_in"]["data"] == ["validation"] and rows["polish_psc_regex"]["data"] == []


def test_export_lm_eval_yaml(tmp_path):
    import yaml

    res = runner.invoke(app, ["eval", "export-lm-eval", "polemo2_in", "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    y = yaml.safe_load((tmp_path / "polemo2_in.yaml").read_text())
    assert y["dataset_path"] == "json" and y["test_split"] == "validation"
    assert y["doc_to_text"] == get_task("polemo2_in").doc_to_text and y["filter_list"][0]["name"] == "score-first"


def test_config_is_validated():
    from bielik.config import load_config
    from bielik.errors import ConfigError

    with pytest.raises(ConfigError, match="num_fewshot"):
        load_config(LeaderboardConfig, None, ["num_fewshots=[0]"])


def test_cli_eq_bench(tmp_path, tiny_model):
    res = runner.invoke(
        app, ["eval", "eq-bench", f"model={tiny_model}", f"output={tmp_path / 'eq'}", "limit=2", "lm.device=cpu"]
    )
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "eq" / "results_0shot.json").read_text())
    assert set(r["results"]) == {"polish_eq_bench"} and "average_eqbench,none" in r["results"]["polish_eq_bench"]
    assert json.loads((tmp_path / "eq" / "lineage.json").read_text())["stage"] == "eval.eq_bench"


def test_eval_recipe_plan():
    from bielik.recipe import load_recipe, plan

    steps = plan(load_recipe(REPO / "recipes" / "eval-pl.yaml", ["leaderboard.model=/m", "leaderboard.limit=5"]))
    assert [s[1].kind for s in steps] == ["eval.leaderboard", "eval.eq_bench", "eval.mt_bench", "report"]
    assert steps[0][2].model == "/m" and steps[0][2].limit == 5


@pytest.mark.slow
def test_eval_recipe_runs(tmp_path, tiny_model):
    from bielik.recipe import load_recipe, run_recipe

    over = [
        f"run_dir={tmp_path}",
        "leaderboard.limit=4",
        "leaderboard.num_fewshot=[0,1]",
        "leaderboard.perplexity.max_docs=2",
        "eq_bench.limit=2",
        "mt_bench.max_new_tokens=4",
    ] + [f"{s}.model={tiny_model}" for s in ("leaderboard", "eq_bench", "mt_bench")]
    results = run_recipe(load_recipe(REPO / "recipes" / "eval-pl.yaml", over))
    assert set(results) == {"leaderboard", "eq_bench", "mt_bench", "report"}
    assert (tmp_path / "leaderboard" / "results.md").is_file() and (
        tmp_path / "mt_bench" / "model_answer.jsonl"
    ).is_file()


def test_chat_template_option(eval_lm):
    """apply_chat_template wraps the whole (few-shot) prompt in one user turn; choices follow without a space
    (lm-eval)."""
    from bielik.eval.data import search_dirs
    from bielik.eval.harness import evaluate

    names = ["polemo2_in_multiple_choice", "polemo2_in"]
    _, samples = evaluate(
        eval_lm,
        [get_task(n) for n in names],
        1,
        search_dirs(None),
        limit=2,
        apply_chat_template=True,
        bootstrap_iters=0,
    )
    ctx, cont = samples["polemo2_in_multiple_choice"][0]["arguments"][0]
    assert ctx.startswith("<s><|im_start|>user\nOpinia:") and ctx.endswith(
        "Sentyment:<|im_end|>\n<|im_start|>assistant\n"
    )
    assert cont == "Neutralny" and ctx.count("<|im_start|>user") == 1 and "\n\nOpinia:" in ctx
    assert samples["polemo2_in"][0]["arguments"][0][0].endswith("<|im_start|>assistant\n")


def test_rag_tasks_end_to_end(tmp_path, tiny_model):
    """PolQA (CSV, as ipipan/polqa ships it) and PoQuAD (SQuAD-style JSONL) through process_docs, generation,
    the Levenshtein metric and the RAG aggregates."""
    import csv

    from tests.eval.conftest import write_jsonl

    (tmp_path / "polqa").mkdir()
    rows = [
        {
            "question": "Kto napisał Pana Tadeusza?",
            "passage_text": "Pan Tadeusz to epopeja Adama Mickiewicza.",
            "relevant": "True",
            "answers": "['Adam Mickiewicz']",
        },
        {
            "question": "Kto napisał Pana Tadeusza?",
            "passage_text": "Kraków leży nad Wisłą.",
            "relevant": "False",
            "answers": "['Adam Mickiewicz']",
        },
        {
            "question": "W którym roku była bitwa pod Grunwaldem?",
            "passage_text": "Bitwa pod Grunwaldem odbyła się w 1410 roku.",
            "relevant": "True",
            "answers": "['1410']",
        },
    ]
    with open(tmp_path / "polqa" / "test.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    write_jsonl(
        tmp_path / "poquad" / "validation.jsonl",
        [
            {
                "id": "1",
                "title": "Wisła",
                "context": "Wisła jest najdłuższą rzeką Polski.",
                "question": "Jaka rzeka jest najdłuższa w Polsce?",
                "answers": {"text": ["Wisła"], "answer_start": [0]},
                "is_impossible": False,
            }
        ],
    )
    cfg = LeaderboardConfig(
        model=str(tiny_model),
        output=str(tmp_path / "out"),
        data_dir=[str(tmp_path)],
        num_fewshot=[0],
        lm={"device": "cpu"},
        tasks=[
            "polish_polqa_open_book",
            "polish_polqa_closed_book",
            "polish_poquad_open_book",
            "polish_polqa_reranking_multiple_choice",
        ],
        bootstrap_iters=0,
    )
    from bielik.eval.leaderboard import run_leaderboard

    summary = run_leaderboard(cfg)["shots"]["0"]
    r = json.loads((tmp_path / "out" / "results_0shot.json").read_text())
    assert r["n-samples"]["polish_polqa_reranking_multiple_choice"]["effective"] == 3
    assert (
        r["n-samples"]["polish_polqa_open_book"]["effective"] == 2
        and r["n-samples"]["polish_poquad_open_book"]["effective"] == 1
    )
    reader = (
        r["results"]["polish_polqa_open_book"]["levenshtein,none"]
        + r["results"]["polish_poquad_open_book"]["levenshtein,none"]
    ) / 2
    assert summary["rag_reader"] == pytest.approx(reader)
    assert summary["rag_reranking"] == r["results"]["polish_polqa_reranking_multiple_choice"]["acc,none"]
    samples = (tmp_path / "out" / "samples_0shot" / "polish_poquad_open_book.jsonl").read_text()
    assert json.loads(samples)["target"] == " Wisła"
