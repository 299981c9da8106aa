"""The ``bielik`` command line: ``bielik <group> <command> [-c config.yaml] [key=value ...]``.

Every stage command loads its config model from defaults, an optional YAML file and ``key=value``
overrides, then calls the same stage function as the Python API and the recipe runner.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bielik.errors import BielikError

console = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 120)

app = typer.Typer(help="bielik: the Bielik recipe for language-specialised LLMs.", no_args_is_help=True, add_completion=False)
model_app = typer.Typer(help="Model presets, initialisation and inspection.", no_args_is_help=True)
tokenizer_app = typer.Typer(help="Tokenizer training, efficiency statistics and vocabulary merging.", no_args_is_help=True)
data_app = typer.Typer(help="Corpus preparation and packing.", no_args_is_help=True)
train_app = typer.Typer(help="Training stages (one engine, many objectives).", no_args_is_help=True)
bench_app = typer.Typer(help="Hardware and speed measurements.", no_args_is_help=True)
recipe_app = typer.Typer(help="Run whole recipes (stage graphs).", no_args_is_help=True)
quant_app = typer.Typer(help="GGUF export, importance matrices, quantisation and comparison (llama.cpp).", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluation: Open PL LLM Leaderboard tasks, Polish EQ-Bench, Polish MT-Bench.", no_args_is_help=True)
compress_app = typer.Typer(help="Minitron compression: importance, candidate shapes, structured pruning, logit distillation.", no_args_is_help=True)
quality_app = typer.Typer(help="The HIGH/MEDIUM/LOW quality classifier (XGBoost on stylometric features).", no_args_is_help=True)
for sub, name in [(model_app, "model"), (tokenizer_app, "tokenizer"), (data_app, "data"), (train_app, "train"),
                  (bench_app, "bench"), (recipe_app, "recipe"), (quant_app, "quant"), (eval_app, "eval"), (compress_app, "compress")]:
    app.add_typer(sub, name=name)
data_app.add_typer(quality_app, name="quality")

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config file", exists=False)
OverridesArg = typer.Argument(None, help="overrides as key=value, e.g. optim.lr=3e-4 train.steps=10", show_default=False)


def user_errors(fn: Callable) -> Callable:
    """Print BielikErrors as one clear line (no traceback) and exit with status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BielikError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper


def _run_stage(kind: str, config: Optional[Path], overrides: Optional[list[str]]) -> Any:
    from bielik.config import load_config
    from bielik.stages import registry

    stage = registry()[kind]
    cfg = load_config(stage.config, config, overrides or [])
    return stage.run(cfg)


def _stage_command(group: typer.Typer, name: str, kind: str, doc: str, show: Callable[[Any], None] | None = None) -> None:
    @user_errors
    def command(overrides: Optional[list[str]] = OverridesArg, config: Optional[Path] = ConfigOpt) -> None:
        result = _run_stage(kind, config, overrides)
        if show is not None:
            show(result)
        elif result is not None:
            out.print(f"[green]done:[/] {result}", highlight=False)

    command.__doc__ = doc
    group.command(name)(command)


def _show_summary(summary: dict) -> None:
    out.print_json(json.dumps(summary, default=str))


def _show_upscale(summary: dict) -> None:
    from bielik.model.upscale import format_summary

    out.print(format_summary(summary), highlight=False)


def _show_samples(samples: list[dict]) -> None:
    for s in samples:
        out.print(f"[bold]{s['prompt']}[/]{s['completion']}", highlight=False)


_stage_command(tokenizer_app, "train", "tokenizer.train", "Train a BPE tokenizer (HF directory); style=sentencepiece for byte fallback.")
_stage_command(tokenizer_app, "stats", "tokenizer.stats", "Tokens, CpT and TpW of tokenizers on texts (Markdown table + chart).",
               lambda res: out.print(res["table"] + f"\nwritten to {res['output']}", highlight=False, markup=False))
_stage_command(tokenizer_app, "merge", "tokenizer.merge", "Extend base=mistral-v0.1 with extra=DIR; report non-canonical words, unreachable tokens, conflicting merges.",
               lambda res: out.print((Path(res["output"]) / "report.md").read_text(encoding="utf-8"), highlight=False, markup=False))
_stage_command(data_app, "pack", "data.pack", "Tokenize, mix languages by token share and pack fixed-length shards.")
_stage_command(data_app, "instruct", "data.instruct",
               "Construct Polish SFT dialogues (diacritics, punctuation, cloze, numbers, dates, headlines) from the corpus.")


def _show_funnel(metrics: dict) -> None:
    if metrics.get("status") == "incomplete":
        out.print(f"[yellow]{metrics['message']}[/] ({metrics['work_dir']})", highlight=False)
        return
    table = Table(title=f"funnel: {metrics['input']:,} -> {metrics['kept']:,} documents")
    for col in ("step", "dropped", "remaining"):
        table.add_column(col, justify="left" if col == "step" else "right")
    for row in metrics["funnel"]:
        table.add_row(row["step"], f"{row['dropped']:,}", f"{row['remaining']:,}")
    out.print(table)
    if metrics.get("bad_records_skipped"):
        out.print(f"bad records skipped: {metrics['bad_records_skipped']:,}")
    for key in ("changed", "pii_spans"):
        if metrics.get(key):
            out.print(f"{key}: " + ", ".join(f"{k} {v:,}" for k, v in metrics[key].items()), highlight=False)


def _show_quality(report: dict) -> None:
    from bielik.data.curate.quality import format_report

    if "per_class" in report:
        out.print(format_report(report), highlight=False)
    else:
        out.print_json(json.dumps(report, default=str))


_stage_command(data_app, "clean", "data.clean", "Cleaning heuristics with a drop reason per document: inputs=[...] output=DIR.", _show_funnel)
_stage_command(data_app, "anonymize", "data.anonymize", "Replace Polish PII (e-mail, URL, phone, address, PESEL, NIP, IBAN) by placeholders.", _show_funnel)
_stage_command(data_app, "dedup", "data.dedup", "Exact + MinHash-LSH near-duplicate removal: dedup.threshold=0.8.", _show_funnel)
_stage_command(data_app, "features", "data.features", "Stylometric features (Morfeusz 2) of every document to Parquet.", _show_funnel)
_stage_command(data_app, "curate", "data.curate", "Clean + anonymise + quality filter + dedup on datatrove (executor.kind=local|slurm|ray).", _show_funnel)
_stage_command(quality_app, "build", "quality.build", "Construct the labelled HIGH/MEDIUM/LOW set from edited Polish text (train/test).", _show_summary)
_stage_command(quality_app, "train", "quality.train", "Train the classifier: train=labelled.jsonl|DIR output=DIR.", _show_summary)
_stage_command(quality_app, "eval", "quality.eval", "Per-class/macro precision, recall, F1 and a confusion-matrix PNG: data=... model=DIR.", _show_quality)
_stage_command(quality_app, "filter", "data.quality_filter", "Keep documents with P(HIGH) > quality.threshold (default 0.90).", _show_funnel)
_stage_command(model_app, "init", "model.init", "Write a freshly initialised HF model from a preset.")
_stage_command(model_app, "upscale", "model.upscale", "Depth up-scaling: m=7 (s = 2(n-m) layers) or layer_map=[...]; dry_run=true counts on meta.", _show_upscale)
_stage_command(model_app, "merge", "model.merge", "Linear merge: models=[a,b] weights=[0.5,0.5] output=DIR.", _show_summary)
_stage_command(model_app, "swap-tokenizer", "model.swap_tokenizer", "New tokenizer, embeddings initialised with FOCUS (init=focus|mean|random).", _show_summary)
_stage_command(train_app, "pretrain", "train.pretrain", "(Continued) pretraining; works under torchrun (DDP/FSDP2).", _show_summary)
_stage_command(train_app, "sft", "train.sft", "SFT on chat data (default: the shipped mix): assistant-only loss, packing, WICE, adaptive LR; torchrun-ready.",
               _show_summary)
_stage_command(train_app, "dpo", "train.dpo", "DPO-P on preference pairs (default: the shipped pairs): beta=0.1 lam=5; reference log-probs cached; torchrun-ready.",
               _show_summary)
_stage_command(train_app, "grpo", "train.grpo", "GRPO on math tasks (default: the shipped ones): group_size=8, rewards accuracy+format, k3 KL; torchrun-ready.",
               _show_summary)
_stage_command(app, "generate", "generate", "Sample continuations of prompts from an HF model directory.", _show_samples)


def _show_quantized(metrics: dict) -> None:
    for f in metrics["files"]:
        out.print(f"{f['file']}: {f['bits_per_weight']:.2f} bits/weight, {f['bytes'] / 2**20:,.1f} MiB", highlight=False)


def _show_compare(result: dict) -> None:
    from bielik.quant.compare import markdown_table

    out.print(markdown_table(result), highlight=False, markup=False)


_stage_command(quant_app, "export", "quant.export", "HF checkpoint -> GGUF: model=DIR output=DIR outtype=f16|bf16|f32.")
_stage_command(quant_app, "imatrix", "quant.imatrix", "Importance matrix on PL/EN calibration text: model=GGUF text.mix={pl:0.5,en:0.5}.")
_stage_command(quant_app, "quantize", "quant.quantize", "Quantise: model=GGUF types=[Q4_K_M,Q2_K] imatrix=FILE (with and without it).", _show_quantized)
_stage_command(quant_app, "compare", "quant.compare", "Quantised vs reference on held-out Polish text: PPL, KLD, Δp, same top.", _show_compare)
_stage_command(compress_app, "importance", "compress.importance", "Importance of channels, neurons, heads and Block Influence per layer: model=DIR.", _show_summary)
_stage_command(compress_app, "plan", "compress.plan", "Candidate shapes and exact parameter counts: base=bielik-11b-v3 budget=7.35B.",
               lambda res: out.print(res["table"], highlight=False, markup=False, soft_wrap=True))
_stage_command(compress_app, "prune", "compress.prune", "Prune to a shape: model=DIR importance=DIR layers=40 intermediate_size=11264.", _show_summary)
_stage_command(compress_app, "distill", "compress.distill", "Logit distillation: teacher=DIR student=DIR data=DIR tau=1 alpha=0 top_k=0.", _show_summary)


@model_app.command("info")
@user_errors
def model_info_cmd(
    names: list[str] = typer.Argument(..., help="preset names or HF model directories"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Shape and parameter counts (built on the meta device: no memory needed)."""
    from bielik.model.factory import human, model_info

    infos = [model_info(n) for n in names]
    if as_json:
        out.print_json(json.dumps(infos))
        return
    table = Table(title="model info")
    for col in ("model", "arch", "layers", "hidden", "ffn", "heads/kv", "vocab", "parameters", "non-embedding", "bf16 GiB"):
        table.add_column(col, justify="right" if col not in ("model", "arch") else "left")
    for i in infos:
        table.add_row(i["name"], i["architecture"], str(i["layers"]), str(i["hidden_size"]), str(i["intermediate_size"]),
                      f"{i['attention_heads']}/{i['kv_heads']}", str(i["vocab_size"]), i["parameters_human"],
                      human(i["non_embedding_parameters"]), str(i["bf16_weights_gib"]))
    out.print(table)


@model_app.command("presets")
def model_presets_cmd() -> None:
    """List the named presets."""
    from bielik.model.presets import preset_names

    for n in preset_names():
        out.print(n)


@bench_app.command("peak")
@user_errors
def bench_peak_cmd(overrides: Optional[list[str]] = OverridesArg, config: Optional[Path] = ConfigOpt) -> None:
    """Measure matmul peak FLOP/s (fp32, bf16); cached for MFU."""
    from bielik.bench import PeakConfig, measure_peak
    from bielik.config import load_config

    cfg = load_config(PeakConfig, config, overrides or [])
    res = measure_peak(cfg)
    table = Table(title="matmul peak")
    table.add_column("device:dtype")
    table.add_column("GFLOP/s", justify="right")
    for k, v in res.items():
        table.add_row(k, f"{v / 1e9:,.0f}")
    out.print(table)


@bench_app.command("speed")
@user_errors
def bench_speed_cmd(overrides: Optional[list[str]] = OverridesArg, config: Optional[Path] = ConfigOpt) -> None:
    """Single-stream decode speed: models=[HF_DIR,model.gguf] (HF: fp32 and bf16); TTFT, TPOT, tokens/s."""
    result = _run_stage("bench.speed", config, overrides)
    table = Table(title="single-stream speed: median (min-max)")
    for col in ("model", "engine", "weights", "output tok/s", "TTFT ms", "TPOT ms", "prompt tok/s"):
        table.add_column(col, justify="left" if col in ("model", "engine", "weights") else "right")

    def cell(s: dict, fmt: str) -> str:
        return f"{s['median']:{fmt}} ({s['min']:{fmt}}-{s['max']:{fmt}})"

    for r in result:
        table.add_row(Path(r["model"]).name, r["engine"], r["dtype"], cell(r["output_tok_s"], ".1f"), cell(r["ttft_ms"], ".1f"),
                      cell(r["tpot_ms"], ".2f"), cell(r["prompt_tok_s"], ".0f"))
    out.print(table)


@app.command("doctor")
def doctor_cmd(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Versions, devices, bf16 support, optional components (and how to install them)."""
    from bielik.doctor import report

    rep = report()
    if as_json:
        out.print_json(json.dumps(rep))
        return
    out.print(f"[bold]bielik {rep['bielik']}[/] · Python {rep['python']} · {rep['platform']}")
    out.print("core: " + ", ".join(f"{k} {v or '[red]missing[/]'}" for k, v in rep["core"].items()))
    for dev in rep["devices"]:
        out.print(f"device {dev['device']}: {dev['name']} · bf16: {dev['bf16']}")
    dist = rep["distributed"]
    out.print(f"torch.distributed: {'yes' if dist['available'] else 'no'} (gloo {dist['gloo']}, nccl {dist['nccl']}) · CUDA {rep['cuda']}")
    table = Table(title="optional components")
    for col in ("component", "status", "for", "install"):
        table.add_column(col)
    for o in rep["optional"]:
        table.add_row(o["component"], f"[green]{o['version']}[/]" if o["installed"] else "[yellow]missing[/]", o["for"], "" if o["installed"] else escape(o["install"]))
    out.print(table)
    out.print(f"llama.cpp builds: {', '.join(rep['llama_cpp_builds']) or 'none (built on first use by the quantisation stages)'}")
    out.print(f"peak FLOP/s cache: {rep['peak_flops_cache'] or 'none (run `bielik bench peak` for MFU)'}")


@recipe_app.command("run")
@user_errors
def recipe_run_cmd(
    path: Path = typer.Argument(..., help="recipe YAML, e.g. recipes/tiny-pl.yaml"),
    overrides: Optional[list[str]] = OverridesArg,
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan, run nothing"),
    force: bool = typer.Option(False, "--force", help="re-run stages that are already done"),
) -> None:
    """Run a recipe's stages in order, skipping those already done."""
    from bielik.recipe import load_recipe, run_recipe

    results = run_recipe(load_recipe(path, overrides or []), dry_run=dry_run, force=force)
    for name, res in results.items():
        if isinstance(res, list) and res and isinstance(res[0], dict) and "completion" in res[0]:
            out.print(f"\n[bold]{name}[/]:")
            _show_samples(res)


# ---------------------------------------------------------------------------------------- eval


def _show_leaderboard(summary: dict) -> None:
    from bielik.eval.leaderboard import markdown

    out.print(markdown({int(k): v for k, v in summary["shots"].items()}, summary.get("perplexity")), highlight=False, markup=False)


def _show_mt_bench(summary: dict) -> None:
    from bielik.eval.mt_bench import markdown

    out.print(markdown(summary, summary["model"]), highlight=False, markup=False)


_stage_command(eval_app, "leaderboard", "eval.leaderboard",
               "Open PL LLM Leaderboard tasks: model=DIR num_fewshot=[0,5] data_dir=[DIR]; see `bielik eval tasks`.", _show_leaderboard)
_stage_command(eval_app, "eq-bench", "eval.eq_bench", "Polish EQ-Bench (zero-shot): model=DIR.", _show_leaderboard)
_stage_command(eval_app, "mt-bench", "eval.mt_bench",
               "Polish MT-Bench: model=DIR judge.base_url=URL judge.model=NAME (key from $BIELIK_JUDGE_API_KEY).", _show_mt_bench)


@eval_app.command("tasks")
@user_errors
def eval_tasks_cmd(
    data_dir: Optional[list[Path]] = typer.Option(None, "--data-dir", "-d", help="folders holding task data"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """List the tasks, their leaderboard metric and baseline, and which splits have data."""
    from bielik.eval.data import find_split_file, search_dirs
    from bielik.eval.tasks import all_tasks

    dirs = search_dirs([str(d) for d in data_dir or []])
    rows = []
    for name, t in all_tasks().items():
        have = [s for s in t.dataset.files if find_split_file(t, s, dirs)]
        rows.append({"task": name, "family": t.family, "type": t.output_type, "metric": t.leaderboard.metric if t.leaderboard else None,
                     "baseline": t.leaderboard.baseline if t.leaderboard else None, "data": have})
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title="evaluation tasks")
    for col in ("task", "type", "leaderboard metric", "baseline", "splits with data"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["task"], "mc" if r["type"] == "multiple_choice" else "gen", r["metric"] or "", "" if r["baseline"] is None else f"{r['baseline']:.3f}",
                      ", ".join(r["data"]) or "[yellow]none[/]")
    out.print(table)


@eval_app.command("export-lm-eval")
@user_errors
def eval_export_cmd(
    tasks: list[str] = typer.Argument(..., help="task names"),
    output: Path = typer.Option(..., "--output", "-o", help="folder for the lm-eval YAMLs (pass it to lm_eval --include_path)"),
    data_dir: Optional[list[Path]] = typer.Option(None, "--data-dir", "-d", help="folders holding task data"),
) -> None:
    """Write tasks as lm-evaluation-harness YAMLs over the local data files (dataset_path: json)."""
    from bielik.eval.data import find_split_file, search_dirs
    from bielik.eval.lmeval_export import write_lmeval_task
    from bielik.eval.tasks import get_task

    dirs = search_dirs([str(d) for d in data_dir or []])
    for name in tasks:
        spec = get_task(name)
        files = {s: f for s in spec.dataset.files if (f := find_split_file(spec, s, dirs))}
        if not files:
            raise BielikError(f"task {name}: no data files found. {spec.get_data}")
        out.print(f"wrote {write_lmeval_task(spec, files, output)}", highlight=False)


def main() -> None:
    from bielik.log import setup_logging

    setup_logging()
    app()


if __name__ == "__main__":
    sys.exit(main())
