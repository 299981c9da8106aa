"""Run tasks on a model: build lm-eval's requests, score them with :class:`bielik.eval.lm.EvalLM`,
apply filters and metrics, and return results in lm-eval's JSON shape.

Splits: a task is scored on its ``test_split`` when that split has data, else on its
``validation_split``, else on the extra ``split_fallback`` splits (e.g. ``train`` for DYK, whose test
labels are not public); the split used is recorded. Few-shot examples come from ``fewshot_split``, else
the training split, else the validation split (lm-eval's order); when none of those has data here, from
another split of the task's files, and only then from the evaluated split itself — in which case the
document is never one of its own examples.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bielik.errors import DataError
from bielik.eval import metrics as M
from bielik.eval.data import MissingDataError, load_split, missing_data_message
from bielik.eval.lm import EvalLM
from bielik.eval.tasks import FewshotSampler, Prompter, TaskSpec
from bielik.log import get_logger

log = get_logger(__name__)


@dataclass
class PreparedTask:
    spec: TaskSpec
    split: str
    docs: list[dict]
    n_original: int
    pool_split: str | None
    contexts: list[str] = field(default_factory=list)
    prompter: Prompter | None = None
    all_docs: list[dict] = field(default_factory=list)
    num_fewshot: int = 0


def prepare_task(
    spec: TaskSpec,
    num_fewshot: int,
    data_dirs: list[Path],
    *,
    split: str | None = None,
    split_fallback: list[str] = (),
    limit: int | None = None,
    seed: int = 1234,
    hf_datasets: bool = False,
    chat_template=None,
) -> PreparedTask:
    """Load the documents and build every prompt; raises DataError (with where-to-get-it) when there is no data."""
    if spec.max_fewshot is not None:
        num_fewshot = min(num_fewshot, spec.max_fewshot)
    cands = [split] if split else [s for s in (spec.test_split, spec.validation_split, *split_fallback) if s]
    docs, used = None, None
    for s in dict.fromkeys(cands):
        docs = load_split(spec, s, data_dirs, hf_datasets)
        if docs is not None:
            used = s
            break
    if docs is None:
        raise MissingDataError(missing_data_message(spec, cands[0] if cands else "test", data_dirs))
    if not docs:
        raise DataError(f"task {spec.task}: split '{used}' has no documents")
    n_original = len(docs)
    docs_all = docs
    if limit is not None:
        docs = docs[:limit]
    prompter = Prompter(spec, frozenset().union(*(d.keys() for d in docs[:1])))
    pool, pool_split = None, None
    if num_fewshot > 0:
        # the named split, then (if it has no data here) any other split of the task's files before the evaluated one
        order = [spec.fewshot_split, spec.training_split, spec.validation_split, *spec.dataset.files]
        for s in dict.fromkeys(x for x in order if x and x != used):
            pool = load_split(spec, s, data_dirs, hf_datasets)
            if pool:
                pool_split = s
                break
        if not pool:
            pool, pool_split = docs_all, used
        log.info(
            "%s: %d-shot examples from split '%s'%s",
            spec.task,
            num_fewshot,
            pool_split,
            " (the evaluated split, each document excluded from its own examples)" if pool_split == used else "",
        )
    sampler = FewshotSampler(pool or [], seed, spec.fewshot_config.sampler, exclude_self=pool_split == used)
    contexts = []
    for d in docs:
        ctx = prompter.context(d, sampler.sample(num_fewshot, d))
        if chat_template is not None:
            ctx = chat_template(ctx)
        contexts.append(ctx)
    return PreparedTask(spec, used, docs, n_original, pool_split, contexts, prompter, docs_all, num_fewshot)


def run_task(lm: EvalLM, task: PreparedTask, chat: bool = False) -> list[dict]:
    """Per-document records: arguments, raw responses, filtered responses and metric values."""
    spec, pr = task.spec, task.prompter
    records: list[dict] = []
    if spec.output_type == "multiple_choice":
        delim = "" if chat else spec.target_delimiter
        per_doc = lm.loglikelihood(
            [
                lm.encode_choices(ctx, [delim + c for c in pr.choices(doc)])
                for doc, ctx in zip(task.docs, task.contexts)
            ],
            desc=spec.task,
        )
        for i, (doc, ctx, resps) in enumerate(zip(task.docs, task.contexts, per_doc)):
            choices = pr.choices(doc)
            gold = pr.target(doc)
            if not isinstance(gold, int) or not 0 <= gold < len(choices):
                raise DataError(
                    f"task {spec.task}, document {i}: target {gold!r} is not a choice index (0..{len(choices) - 1})"
                )
            values, pred = M.score_choice(spec.metric_list, [r[0] for r in resps], choices, gold)
            records.append(
                {
                    "doc_id": i,
                    "target": gold,
                    "arguments": [[ctx, delim + c] for c in choices],
                    "resps": [[list(r)] for r in resps],
                    "filtered_resps": [list(r) for r in resps],
                    "pred": pred["pred"],
                    "pred_norm": pred["pred_norm"],
                    "metrics": {"none": values},
                }
            )
        return records
    outs = lm.generate_until(task.contexts, spec.until, spec.max_gen_toks, desc=spec.task)
    for i, (doc, ctx, out) in enumerate(zip(task.docs, task.contexts, outs)):
        gold = pr.target(doc)
        rec: dict[str, Any] = {
            "doc_id": i,
            "target": gold,
            "arguments": [[ctx, {"until": spec.until, "max_gen_toks": spec.max_gen_toks}]],
            "resps": [[out]],
            "filtered_resps": {},
            "metrics": {},
        }
        if spec.process_results:
            from bielik.eval.eq_bench import PROCESS_RESULTS

            rec["filtered_resps"]["none"] = out
            rec["metrics"]["none"] = PROCESS_RESULTS[spec.process_results](doc, out)
        else:
            for f in spec.filter_list or [None]:
                name = f.name if f else "none"
                pred = M.apply_filter(f, out) if f else out
                rec["filtered_resps"][name] = pred
                rec["metrics"][name] = M.score_generation(spec.metric_list, pred, gold)
        records.append(rec)
    return records


def aggregate_task(spec: TaskSpec, records: list[dict], bootstrap_iters: int = 1000) -> dict[str, Any]:
    """lm-eval's ``results[task]`` entry: ``"metric,filter"`` and ``"metric_stderr,filter"`` keys."""
    out: dict[str, Any] = {"alias": spec.task}
    by_name = {m.metric: m for m in spec.metric_list}
    filters = list(records[0]["metrics"]) if records else []
    for fname in filters:
        for m in spec.metric_list:
            vals = [r["metrics"][fname][m.metric] for r in records if m.metric in r["metrics"][fname]]
            if not vals:
                continue
            value, stderr = M.aggregate(m.metric, vals, by_name[m.metric], bootstrap_iters)
            out[f"{m.metric},{fname}"] = value
            out[f"{m.metric}_stderr,{fname}"] = stderr
    return out


def task_baseline(spec: TaskSpec, task: PreparedTask) -> tuple[float | None, str]:
    """The leaderboard baseline of a task: the published one, else the majority-class score of the whole
    evaluated split."""
    lb = spec.leaderboard
    if lb is None:
        return None, "none"
    if lb.baseline is not None:
        return lb.baseline, "published"
    metric, _, fname = lb.metric.partition(",")
    mspec = next((m for m in spec.metric_list if m.metric == metric), None)
    golds = []
    for doc in task.all_docs:
        g = task.prompter.target(doc)
        if spec.output_type == "generate_until":
            g = (mspec.label_map or {}).get(str(g), mspec.default_label) if metric == "f1" and mspec else str(g)
        golds.append(g)
    return M.majority_baseline(metric, golds, mspec), "majority class of the evaluated split"


def evaluate(
    lm: EvalLM,
    specs: list[TaskSpec],
    num_fewshot: int,
    data_dirs: list[Path],
    *,
    split: str | None = None,
    split_fallback: list[str] = (),
    limit: int | None = None,
    seed: int = 1234,
    hf_datasets: bool = False,
    apply_chat_template: bool = False,
    bootstrap_iters: int = 1000,
    model_name: str = "",
) -> tuple[dict, dict[str, list[dict]]]:
    """Score ``specs``; returns (results in lm-eval's shape, per-task sample records). Tasks without data are
    listed under ``results["bielik"]["skipped"]`` with the message saying where to get the data; they are
    not logged one by one (:func:`skipped_summary` makes the one line a run prints)."""
    start = time.time()
    chat = _chat_fn(lm) if apply_chat_template else None
    results: dict[str, Any] = {
        "results": {},
        "group_subtasks": {},
        "configs": {},
        "versions": {},
        "n-shot": {},
        "higher_is_better": {},
        "n-samples": {},
    }
    extra: dict[str, Any] = {"splits": {}, "fewshot_split": {}, "baselines": {}, "skipped": {}}
    samples: dict[str, list[dict]] = {}
    for spec in specs:
        try:
            task = prepare_task(
                spec,
                num_fewshot,
                data_dirs,
                split=split,
                split_fallback=split_fallback,
                limit=limit,
                seed=seed,
                hf_datasets=hf_datasets,
                chat_template=chat,
            )
        except MissingDataError as exc:
            if split is not None:  # the user asked for this split: not having it is an error
                raise
            # no line per task: the caller prints one summary (skipped_summary) for the whole run
            log.debug("skipping %s: %s", spec.task, exc)
            extra["skipped"][spec.task] = str(exc)
            continue
        t0 = time.time()
        records = run_task(lm, task, chat=chat is not None)
        entry = aggregate_task(spec, records, bootstrap_iters)
        log.info(
            "%s (%s, %d docs, %.1fs): %s",
            spec.task,
            task.split,
            len(records),
            time.time() - t0,
            ", ".join(f"{k}={v:.4f}" for k, v in entry.items() if isinstance(v, float) and "_stderr" not in k),
        )
        results["results"][spec.task] = entry
        results["group_subtasks"][spec.task] = []
        results["configs"][spec.task] = {
            **spec.model_dump(mode="json", exclude={"get_data"}),
            "num_fewshot": task.num_fewshot,
        }
        results["versions"][spec.task] = 1.0
        results["n-shot"][spec.task] = task.num_fewshot
        results["higher_is_better"][spec.task] = {m.metric: m.higher_is_better for m in spec.metric_list}
        results["n-samples"][spec.task] = {"original": task.n_original, "effective": len(records)}
        extra["splits"][spec.task] = task.split
        extra["fewshot_split"][spec.task] = task.pool_split
        base, how = task_baseline(spec, task)
        if base is not None:
            extra["baselines"][spec.task] = {"value": base, "source": how}
        samples[spec.task] = records
    results["config"] = {
        "model": "bielik",
        "model_args": model_name,
        "batch_tokens": lm.batch_tokens,
        "limit": limit,
        "fewshot_seed": seed,
        "apply_chat_template": apply_chat_template,
        "bootstrap_iters": bootstrap_iters,
    }
    results["date"] = start
    results["total_evaluation_time_seconds"] = str(time.time() - start)
    results["bielik"] = extra
    return results, samples


def skipped_summary(skipped: list[str], n_tasks: int) -> str | None:
    """One line naming the tasks that had no data, or None when every task had some.

    The where-to-get-the-data text of each task (a paragraph per task) is not repeated here: it stays in
    ``results_*.json`` (``bielik.skipped``) and the task definitions; ``bielik eval tasks`` lists which
    splits have data.
    """
    if not skipped:
        return None
    return (
        f"skipped {len(skipped)} of {n_tasks} tasks without data: {', '.join(skipped)} — "
        "see `bielik eval tasks`; add folders holding their splits with data_dir=[DIR]"
    )


def _chat_fn(lm: EvalLM):
    if not getattr(lm.tok, "chat_template", None):
        from bielik.errors import ConfigError

        raise ConfigError("apply_chat_template=true but the model's tokenizer has no chat template")

    def apply(ctx: str) -> str:
        return lm.tok.apply_chat_template(
            [{"role": "user", "content": ctx}], tokenize=False, add_generation_prompt=True
        )

    return apply
