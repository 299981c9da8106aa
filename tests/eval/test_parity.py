"""Parity with lm-evaluation-harness: the same task YAML run by lm-eval's hf back end and by bielik on the
same tiny model gives the same prompts, per-example predictions and scores."""

from __future__ import annotations

import pytest

from bielik.eval.data import search_dirs
from bielik.eval.harness import evaluate
from bielik.eval.lmeval_export import write_lmeval_task
from bielik.eval.tasks import get_task
from tests.conftest import shared_dir
from tests.eval.conftest import read_jsonl, write_jsonl


def run_lm_eval(model, task_dir, names, shots):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    return simple_evaluate(
        model="hf",
        model_args=f"pretrained={model},dtype=float32",
        tasks=names,
        num_fewshot=shots,
        batch_size=8,
        device="cpu",
        task_manager=TaskManager(include_path=str(task_dir)),
        log_samples=True,
        bootstrap_iters=100,
    )


def assert_parity(theirs, ours, samples, names, shots):
    for name in names:
        spec = get_task(name)
        a, b = theirs["results"]["bielik_" + name], ours["results"][name]
        keys = [k for k in a if "," in k and k != "alias"]
        assert keys and all(k in b for k in keys), (keys, list(b))
        for k in keys:
            if isinstance(a[k], str):
                assert b[k] == a[k]
            else:
                assert b[k] == pytest.approx(float(a[k]), abs=1e-9), (name, k)
        assert theirs["n-shot"]["bielik_" + name] == ours["n-shot"][name] == shots
        lm_samples = sorted(theirs["samples"]["bielik_" + name], key=lambda s: s["doc_id"])
        assert len(lm_samples) == len(samples[name])
        for s1, s2 in zip(lm_samples, samples[name]):
            args = s1["arguments"]
            ctx = args[0][0] if isinstance(args, list) else args["gen_args_0"]["arg_0"]
            assert ctx == s2["arguments"][0][0]
            if spec.output_type == "multiple_choice":
                l1 = [float(r[0][0]) for r in s1["resps"]]
                l2 = [r[0][0] for r in s2["resps"]]
                assert l1 == pytest.approx(l2, abs=1e-4)
                assert [bool(r[0][1]) for r in s1["resps"]] == [r[0][1] for r in s2["resps"]]
                assert max(range(len(l1)), key=l1.__getitem__) == s2["pred"]
            else:
                assert s1["resps"][0][0] == s2["resps"][0][0]
                assert s1["filtered_resps"][0] == s2["filtered_resps"]["score-first"]


def make_task_data(tmp_path, rows_test, rows_train, family_files: dict[str, str]):
    data = tmp_path / "data"
    write_jsonl(data / family_files["test"], rows_test)
    write_jsonl(data / family_files["train"], rows_train)
    return data, {"test": data / family_files["test"], "train": data / family_files["train"]}


def test_parity_polemo2_two_shot(tmp_path, tiny_model, eval_lm):
    """Fast default: PolEmo (shipped data) in both forms, 2-shot from a separate pool, 12 documents."""
    rows = read_jsonl(search_dirs(None)[-1] / "polemo2" / "in_validation.jsonl")
    data, files = make_task_data(
        tmp_path, rows[:12], rows[200:240], {"test": "polemo2/in_test.jsonl", "train": "polemo2/in_train.jsonl"}
    )
    names = ["polemo2_in_multiple_choice", "polemo2_in"]
    for n in names:
        write_lmeval_task(get_task(n), files, tmp_path / "tasks", name="bielik_" + n)
    theirs = run_lm_eval(tiny_model, tmp_path / "tasks", ["bielik_" + n for n in names], 2)
    ours, samples = evaluate(eval_lm, [get_task(n) for n in names], 2, [data], bootstrap_iters=100)
    assert_parity(theirs, ours, samples, names, 2)


@pytest.mark.slow
@pytest.mark.parametrize("shots", [0, 5])
def test_parity_leaderboard_tasks(tmp_path, tiny_model, eval_lm, shots):
    """Full: 8TAGS, PPC, KLEJ-NER (both forms), DYK with binary F1, 40 documents each, 0- and 5-shot."""
    root = shared_dir() / "data" / "eval"
    data = tmp_path / "data"
    pairs = {
        "8tags": ("8tags/test.jsonl", "8tags/validation.jsonl"),
        "ppc": ("ppc/test.jsonl", "ppc/validation.jsonl"),
        "klej_ner": ("klej_ner/validation.jsonl", "klej_ner/validation.jsonl"),
    }
    names = [
        "polish_8tags_multiple_choice",
        "polish_8tags_regex",
        "polish_ppc_multiple_choice",
        "polish_ppc_regex",
        "polish_klej_ner_multiple_choice",
        "polish_klej_ner_regex",
        "polish_dyk_multiple_choice",
    ]
    for fam, (test_f, pool_f) in pairs.items():
        rows_t, rows_p = read_jsonl(root / test_f), read_jsonl(root / pool_f)
        write_jsonl(data / fam / "test.jsonl", rows_t[:40])
        write_jsonl(data / fam / "train.jsonl", rows_p[-300:])
    dyk = read_jsonl(root / "dyk" / "train_subset.jsonl")
    write_jsonl(data / "dyk" / "test.jsonl", dyk[:40])
    write_jsonl(data / "dyk" / "train.jsonl", dyk[-200:])
    for n in names:
        fam = get_task(n).family
        write_lmeval_task(
            get_task(n),
            {"test": data / fam / "test.jsonl", "train": data / fam / "train.jsonl"},
            tmp_path / "tasks",
            name="bielik_" + n,
        )
    theirs = run_lm_eval(tiny_model, tmp_path / "tasks", ["bielik_" + n for n in names], shots)
    ours, samples = evaluate(eval_lm, [get_task(n) for n in names], shots, [data], bootstrap_iters=100)
    # lm-eval bootstraps the F1 standard error; compare the F1 itself only
    for n in names:
        for r in (theirs["results"]["bielik_" + n], ours["results"][n]):
            r.pop("f1_stderr,none", None)
    assert_parity(theirs, ours, samples, names, shots)
