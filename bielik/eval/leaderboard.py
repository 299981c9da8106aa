"""``bielik eval leaderboard``: the Open PL LLM Leaderboard tasks, 0- and k-shot, with its summary scores.

Summary (RECIPE.md §9.1):

* per task, the leaderboard metric ``s`` (e.g. ``acc,none`` or ``f1,score-first``) and its
  **baseline-normalised** score ``n = 100 · (s − b) / (M − b)``, where ``b`` is the task's baseline
  (published, else the majority-class score of the evaluated split — how the published ones were made)
  and ``M`` the metric's maximum (1, or 100 for EQ-Bench); a model at the baseline scores 0, a perfect
  one 100, a worse-than-baseline one below 0. (The leaderboard's own ``read_evals.py`` was not
  available; this is the formula its description — "average normalized by baseline scores" — implies.)
* **average**: the mean of ``n`` over the scored leaderboard tasks (EQ-Bench, a separate table on the
  leaderboard, is reported but not averaged), and the same mean over the multiple-choice and the
  generation tasks separately;
* **RAG Reranking**: PolQA reranking accuracy; **RAG Reader**: the mean Levenshtein score of PolQA
  open-book and PoQuAD open-book;
* **perplexity** (bonus, lower is better) of held-out text, token level, lm-eval's rolling windows.

Outputs: ``results_{k}shot.json`` (lm-eval's shape), ``samples_{k}shot/<task>.jsonl``, ``results.md``
(Markdown tables), ``scores.png``, ``metrics.json`` (the summary) + ``config.yaml`` / ``lineage.json``.
"""

from __future__ import annotations

import json
import math
from itertools import islice
from pathlib import Path
from typing import Any

from pydantic import Field

from bielik.artifacts import atomic_write_text, staged_dir, write_json, write_stage_record
from bielik.config import StageConfig
from bielik.errors import ConfigError
from bielik.eval.tasks import TaskSpec, all_tasks
from bielik.log import get_logger

log = get_logger(__name__)

GROUPS = {
    "leaderboard": lambda t: t.leaderboard is not None and (t.leaderboard.group != "eq_bench"),
    "polish_mc": lambda t: t.leaderboard is not None and t.output_type == "multiple_choice",
    "polish_generate": lambda t: (
        t.leaderboard is not None and t.output_type == "generate_until" and t.leaderboard.group != "eq_bench"
    ),
    "eq_bench": lambda t: t.family == "eq_bench",
    "all": lambda t: True,
}


class PerplexityConfig(StageConfig):
    inputs: list[str] = Field(default_factory=list, description="held-out JSONL corpora ('text' field) or .txt files")
    max_docs: int = Field(64, ge=1)
    max_chars: int = Field(20_000, ge=100, description="characters scored per document")
    window: int | None = Field(None, description="tokens per window (default: the model's context)")


class ModelOptions(StageConfig):
    device: str = "auto"
    dtype: str = Field("float32", pattern="^(float32|bfloat16|float16)$")
    batch_tokens: int = Field(8192, ge=64, description="rows x padded length per forward pass (log-likelihood)")
    gen_batch_tokens: int = Field(32768, ge=64, description="rows x (prompt + new tokens) per generation batch")
    max_batch: int = Field(64, ge=1)


class LeaderboardConfig(StageConfig):
    model: str = Field("runs/pretrain/final", description="HF model directory (with tokenizer)")
    output: str = "runs/eval/leaderboard"
    tasks: list[str] = Field(
        default_factory=lambda: ["leaderboard"], description="task names or groups: " + ", ".join(GROUPS)
    )
    num_fewshot: list[int] = Field(default_factory=lambda: [0, 5])
    data_dir: list[str] = Field(
        default_factory=list, description="folders holding task data (searched before the shipped data)"
    )
    include_path: list[str] = Field(default_factory=list, description="folders of extra task YAML files")
    split: str | None = Field(
        None, description="score this split only (default: test, else validation, else split_fallback)"
    )
    split_fallback: list[str] = Field(default_factory=list)
    limit: int | None = Field(None, ge=1, description="score the first N documents of each task")
    seed: int = Field(1234, description="few-shot sampling seed (lm-eval's default)")
    hf_datasets: bool = Field(False, description="load missing splits from the Hugging Face Hub (needs network)")
    apply_chat_template: bool = False
    bootstrap_iters: int = Field(1000, ge=0, description="bootstrap resamples for the F1 standard error")
    write_samples: bool = True
    lm: ModelOptions = Field(default_factory=ModelOptions)
    perplexity: PerplexityConfig = Field(default_factory=PerplexityConfig)
    overwrite: bool = True


def resolve_tasks(names: list[str], include_path: list[str] | None = None) -> list[TaskSpec]:
    tasks = all_tasks(include_path)
    out: dict[str, TaskSpec] = {}
    for n in names:
        if n in GROUPS:
            out.update({k: t for k, t in tasks.items() if GROUPS[n](t)})
        elif n in tasks:
            out[n] = tasks[n]
        else:
            from bielik.eval.tasks import get_task

            get_task(n, include_path)  # raises with a suggestion
    if not out:
        raise ConfigError(f"no tasks selected by {names}")
    return list(out.values())


def summarize(results: dict, specs: list[TaskSpec]) -> dict[str, Any]:
    """Leaderboard scores of one results JSON: per task, normalised average, RAG, EQ-Bench."""
    rows, by = [], {s.task: s for s in specs}
    base = results.get("bielik", {}).get("baselines", {})
    for task, entry in results["results"].items():
        spec = by.get(task)
        if spec is None or spec.leaderboard is None or spec.leaderboard.metric not in entry:
            continue
        s = float(entry[spec.leaderboard.metric])
        b = base.get(task, {}).get("value")
        scale = spec.leaderboard.scale
        norm = 100 * (s - b) / (scale - b) if b is not None and scale != b else None
        rows.append(
            {
                "task": task,
                "metric": spec.leaderboard.metric,
                "score": s,
                "baseline": b,
                "baseline_source": base.get(task, {}).get("source"),
                "normalised": norm,
                "type": spec.output_type,
                "group": spec.leaderboard.group,
                "aggregate": spec.leaderboard.aggregate,
                "split": results.get("bielik", {}).get("splits", {}).get(task),
            }
        )

    def mean(xs):
        xs = [x for x in xs if x is not None and not math.isnan(x)]
        return sum(xs) / len(xs) if xs else None

    main = [r for r in rows if r["group"] != "eq_bench"]
    reader = [r["score"] for r in rows if r["aggregate"] == "rag_reader"]
    rerank = [r["score"] for r in rows if r["aggregate"] == "rag_reranking"]
    eq = {r["task"]: r["score"] for r in rows if r["group"] == "eq_bench"}
    return {
        "tasks": rows,
        "average_normalised": mean(r["normalised"] for r in main),
        "average_normalised_mc": mean(r["normalised"] for r in main if r["type"] == "multiple_choice"),
        "average_normalised_generate": mean(r["normalised"] for r in main if r["type"] == "generate_until"),
        "tasks_averaged": len([r for r in main if r["normalised"] is not None]),
        "rag_reranking": mean(rerank),
        "rag_reader": mean(reader),
        "eq_bench": eq or None,
        "skipped": sorted(results.get("bielik", {}).get("skipped", {})),
    }


def _fmt(x, digits=4) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def markdown(summaries: dict[int, dict], perplexity: dict | None = None) -> str:
    """The results tables. Tasks without data are listed once, after the tables, when every shot setting
    skipped the same ones (they do: data does not depend on the number of shots)."""
    lines = []
    skipped = [tuple(s["skipped"]) for s in summaries.values()]
    same_skipped = len(set(skipped)) == 1
    for k, summ in summaries.items():
        lines += [
            f"## {k}-shot",
            "",
            "| task | split | metric | score | baseline | normalised |",
            "|---|---|---|---:|---:|---:|",
        ]
        for r in summ["tasks"]:
            lines.append(
                f"| {r['task']} | {r['split']} | {r['metric']} | {_fmt(r['score'])} | {_fmt(r['baseline'], 3)} | "
                f"{_fmt(r['normalised'], 2)} |"
            )
        lines.append("")
        if summ["tasks_averaged"]:
            lines += [
                (
                    f"- **average (baseline-normalised)**: {_fmt(summ['average_normalised'], 2)} "
                    f"over {summ['tasks_averaged']} tasks (mc {_fmt(summ['average_normalised_mc'], 2)}, "
                    f"generation {_fmt(summ['average_normalised_generate'], 2)})"
                ),
                f"- **RAG Reranking**: {_fmt(summ['rag_reranking'])} · **RAG Reader**: {_fmt(summ['rag_reader'])}",
            ]
        if summ["eq_bench"]:
            lines.append("- **EQ-Bench**: " + ", ".join(f"{t} {v:.2f}" for t, v in summ["eq_bench"].items()))
        if summ["skipped"] and not same_skipped:
            lines.append(f"- no data (skipped): {', '.join(summ['skipped'])}")
        lines.append("")
    if same_skipped and skipped[0]:
        lines += [
            f"No data for {len(skipped[0])} tasks (skipped; `bielik eval tasks` lists which splits have data): "
            f"{', '.join(skipped[0])}",
            "",
        ]
    if perplexity:
        lines += [
            "## Perplexity (held-out text, lower is better)",
            "",
            f"- token perplexity {perplexity['token_perplexity']:.3f} over {perplexity['tokens']:,} tokens "
            f"({perplexity['documents']} documents); bits per byte {perplexity['bits_per_byte']:.4f}",
            "",
        ]
    return "\n".join(lines)


def _plot(summaries: dict[int, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for s in summaries.values() for r in s["tasks"] if r["normalised"] is not None})
    if not tasks:
        return
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(tasks) + 2), 4.5))
    width = 0.8 / len(summaries)
    for j, (k, s) in enumerate(summaries.items()):
        vals = {r["task"]: r["normalised"] for r in s["tasks"]}
        ax.bar([i + j * width for i in range(len(tasks))], [vals.get(t) or 0 for t in tasks], width, label=f"{k}-shot")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks([i + width * (len(summaries) - 1) / 2 for i in range(len(tasks))])
    ax.set_xticklabels(tasks, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("baseline-normalised score")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def held_out_perplexity(lm, cfg: PerplexityConfig) -> dict | None:
    from bielik.data.corpus import read_corpus
    from bielik.eval.lm import perplexity

    if not cfg.inputs:
        return None
    texts = []
    for p in cfg.inputs:
        if str(p).endswith(".txt"):
            texts.append(Path(p).read_text(encoding="utf-8"))
        else:
            texts.extend(d.text for d in islice(read_corpus([p]), cfg.max_docs - len(texts)))
        if len(texts) >= cfg.max_docs:
            break
    texts = [t[: cfg.max_chars] for t in texts[: cfg.max_docs] if t.strip()]
    res = lm.loglikelihood_rolling(texts, cfg.window)
    ll = sum(r[0] for r in res)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    return {
        "token_perplexity": perplexity(res),
        "tokens": sum(r[1] for r in res),
        "documents": len(texts),
        "bits_per_byte": -ll / n_bytes / math.log(2),
        "inputs": cfg.inputs,
    }


def run_leaderboard(cfg: LeaderboardConfig) -> dict:
    from bielik.eval.data import search_dirs
    from bielik.eval.harness import evaluate, skipped_summary
    from bielik.eval.lm import EvalLM

    specs = resolve_tasks(cfg.tasks, cfg.include_path)
    data_dirs = search_dirs(cfg.data_dir)
    lm = EvalLM.from_pretrained(
        cfg.model,
        cfg.lm.device,
        cfg.lm.dtype,
        batch_tokens=cfg.lm.batch_tokens,
        max_batch=cfg.lm.max_batch,
        gen_batch_tokens=cfg.lm.gen_batch_tokens,
    )
    summaries, all_results = {}, {}
    reported: set[str] = set()  # tasks without data are named once per run, not once per shot setting
    for k in cfg.num_fewshot:
        log.info("leaderboard: %d-shot, %d tasks", k, len(specs))
        results, samples = evaluate(
            lm,
            specs,
            k,
            data_dirs,
            split=cfg.split,
            split_fallback=cfg.split_fallback,
            limit=cfg.limit,
            seed=cfg.seed,
            hf_datasets=cfg.hf_datasets,
            apply_chat_template=cfg.apply_chat_template,
            bootstrap_iters=cfg.bootstrap_iters,
            model_name=cfg.model,
        )
        all_results[k] = (results, samples)
        summaries[k] = summarize(results, specs)
        line = skipped_summary([t for t in results["bielik"]["skipped"] if t not in reported], len(specs))
        if line:
            log.warning("%s", line)
        reported.update(results["bielik"]["skipped"])
    ppl = held_out_perplexity(lm, cfg.perplexity)
    summary = {"model": cfg.model, "shots": {str(k): s for k, s in summaries.items()}, "perplexity": ppl}
    with staged_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
        for k, (results, samples) in all_results.items():
            write_json(tmp / f"results_{k}shot.json", results)
            if cfg.write_samples:
                for task, recs in samples.items():
                    atomic_write_text(
                        tmp / f"samples_{k}shot" / f"{task}.jsonl",
                        "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in recs),
                    )
        atomic_write_text(
            tmp / "results.md", f"# Open PL LLM Leaderboard tasks: {cfg.model}\n\n" + markdown(summaries, ppl)
        )
        _plot(summaries, tmp / "scores.png")
        stage = "eval.eq_bench" if isinstance(cfg, EqBenchConfig) else "eval.leaderboard"
        write_stage_record(tmp, stage, cfg, inputs={"model": cfg.model}, metrics=summary)
    return summary


class EqBenchConfig(LeaderboardConfig):
    """``bielik eval eq-bench``: Polish EQ-Bench, zero-shot (the leaderboard stage with other defaults)."""

    output: str = "runs/eval/eq_bench"
    tasks: list[str] = Field(
        default_factory=lambda: ["polish_eq_bench"], description="polish_eq_bench and/or polish_eq_bench_first_turn"
    )
    num_fewshot: list[int] = Field(default_factory=lambda: [0])


def run_eq_bench(cfg: EqBenchConfig) -> dict:
    return run_leaderboard(cfg)
