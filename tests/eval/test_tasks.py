"""Task definitions: every leaderboard family loads, prompts render exactly, few-shot sampling is lm-eval's."""

from __future__ import annotations

import pytest

from bielik.errors import ConfigError, DataError
from bielik.eval.data import load_split, search_dirs
from bielik.eval.harness import prepare_task
from bielik.eval.tasks import FewshotSampler, Prompter, all_tasks, get_task, leaderboard_tasks

FAMILIES = {"polemo2", "klej_ner", "8tags", "belebele", "dyk", "ppc", "psc", "cbd", "polqa", "poquad"}


def test_every_leaderboard_family_in_both_forms():
    tasks = all_tasks()
    assert {t.family for t in tasks.values()} >= FAMILIES
    for fam in FAMILIES - {"polqa", "poquad"}:
        types = {t.output_type for t in tasks.values() if t.family == fam}
        assert types == {"multiple_choice", "generate_until"}, fam
    lb = leaderboard_tasks()
    assert "polish_polqa_reranking_multiple_choice" in lb and "polish_poquad_open_book" in lb
    # the leaderboard's group `polish` (TASKS.md) is covered
    for name in [
        "polemo2_in",
        "polemo2_out_multiple_choice",
        "polish_8tags_regex",
        "polish_belebele_mc",
        "polish_dyk_regex",
        "polish_ppc_multiple_choice",
        "polish_psc_regex",
        "polish_cbd_multiple_choice",
        "polish_klej_ner_regex",
        "polish_polqa_closed_book",
        "polish_polqa_open_book",
    ]:
        assert name in lb


def test_prompts_match_speakleash_templates():
    doc = {"sentence": "Super lekarz .", "target": "__label__meta_plus_m"}
    mc, gen = Prompter(get_task("polemo2_in_multiple_choice")), Prompter(get_task("polemo2_out"))
    assert mc.text(doc) == (
        'Opinia: "Super lekarz ."\nOkreśl sentyment podanej opinii: Neutralny, Negatywny, Pozytywny, '
        "Niejednoznaczny.\nSentyment:"
    )
    assert mc.target(doc) == 2 and mc.choices(doc)[2] == "Pozytywny"
    assert gen.target(doc) == "C" and gen.spec.until == [".", ","]  # polemo2_out extends polemo2_in
    assert gen.spec.dataset.hf_path == "allegro/klej-polemo2-out"
    ppc = Prompter(get_task("polish_ppc_regex"))
    assert [ppc.target({"sentence_A": "a", "sentence_B": "b", "label": lab}) for lab in (1, 2, 3)] == ["B", "C", "D"]
    psc = Prompter(get_task("polish_psc_regex"))
    assert [psc.target({"extract_text": "a", "summary_text": "b", "label": lab}) for lab in (0, 1)] == ["C", "B"]
    cbd = Prompter(get_task("polish_cbd_multiple_choice"))
    assert [cbd.target({"TEXT": "x", "CATEGORIES": c}) for c in ("grozba", "", "obelga")] == [4, 0, 2]
    bel = Prompter(get_task("polish_belebele_mc"))
    assert (
        bel.target(
            {
                "flores_passage": "p",
                "question": "q",
                "mc_answer1": "a",
                "mc_answer2": "b",
                "mc_answer3": "c",
                "mc_answer4": "d",
                "correct_answer_num": "3",
            }
        )
        == 2
    )


def test_fewshot_context_layout():
    spec = get_task("polemo2_in")
    pr = Prompter(spec)
    shots = [
        {"sentence": "Źle .", "target": "__label__meta_minus_m"},
        {"sentence": "Tak sobie .", "target": "__label__meta_amb"},
    ]
    ctx = pr.context({"sentence": "Dobrze .", "target": "__label__meta_plus_m"}, shots)
    parts = ctx.split("\n\n")
    assert (
        len(parts) == 3
        and parts[0].endswith("Prawidłowa odpowiedź: B")
        and parts[1].endswith("Prawidłowa odpowiedź: D")
    )
    assert parts[2].endswith("Prawidłowa odpowiedź:")


def test_sampler_is_lm_evals_context_sampler():
    from lm_eval.api.samplers import ContextSampler, FirstNSampler

    pool = [{"i": i} for i in range(40)]
    ours, theirs = FewshotSampler(pool, 1234), ContextSampler(pool, rnd=1234)
    for _ in range(20):
        assert ours.sample(5, {"x": 1}) == list(theirs.sample(5))
    ours, theirs = FewshotSampler(pool, 7, exclude_self=True), ContextSampler(pool, rnd=7)
    for i in range(20):
        assert ours.sample(3, pool[i]) == list(theirs.sample(3, eval_doc=pool[i]))
    assert FewshotSampler(pool, 0, "first_n", exclude_self=True).sample(3, pool[0]) == list(
        FirstNSampler(pool, rnd=0).sample(3, eval_doc=pool[0])
    )


def test_missing_data_names_the_source(tmp_path):
    spec = get_task("polish_psc_multiple_choice")
    with pytest.raises(DataError, match="allegro/klej-psc"):
        prepare_task(spec, 0, search_dirs([str(tmp_path)]))


def test_unknown_task_suggests():
    with pytest.raises(ConfigError, match="polemo2_in"):
        get_task("polemo2_inn")


def test_shipped_data_loads_and_polqa_processing(tmp_path):
    docs = load_split(get_task("polemo2_in"), "validation", search_dirs(None))
    assert len(docs) == 723
    import csv

    rows = [
        {"question": "Kto?", "passage_text": "P1", "relevant": "True", "answers": "['Mickiewicz']"},
        {"question": "Kto?", "passage_text": "P1", "relevant": "True", "answers": "['Mickiewicz']"},
        {"question": "Kto?", "passage_text": "P2", "relevant": "False", "answers": "['Mickiewicz']"},
        {"question": "Gdzie?", "passage_text": "P3", "relevant": "True", "answers": "['w Krakowie', 'Kraków']"},
    ]
    (tmp_path / "polqa").mkdir()
    with open(tmp_path / "polqa" / "test.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    dirs = search_dirs([str(tmp_path)])
    rerank = load_split(get_task("polish_polqa_reranking_multiple_choice"), "test", dirs)
    assert [d["relevant"] for d in rerank] == [True, False, True]
    assert Prompter(get_task("polish_polqa_reranking_multiple_choice")).target(rerank[1]) == 0
    open_book = load_split(get_task("polish_polqa_open_book"), "test", dirs)
    assert [d["answers"] for d in open_book] == [["Mickiewicz"], ["w Krakowie", "Kraków"]]
    assert len(load_split(get_task("polish_polqa_closed_book"), "test", dirs)) == 2


def test_templates_render_in_a_sandbox():
    from bielik.eval.tasks import render

    assert render("{{ {'a': 1}.get(x, 0) }}-{{ ['p', 'q'].index(y) }}", {"x": "a", "y": "q"}) == "1-1"
    with pytest.raises(DataError):
        render("{{ x.__class__.__mro__[1].__subclasses__() }}", {"x": ""})
    with pytest.raises(DataError):
        render("{{ missing }}", {})
