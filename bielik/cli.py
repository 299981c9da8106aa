"""The ``bielik`` command line: ``bielik <group> <command> [-c config.yaml] [key=value ...]``.

Every stage command is generated from the stage declarations in :mod:`bielik.stages` (kind, command
path, help string, renderer): it loads the stage's config model from defaults, an optional YAML file
and ``key=value`` overrides, then calls the same stage function as the Python API and the recipe
runner, and shows the result with the renderer the declaration names (:data:`RENDERERS`). The few
commands that are not stages (model info/presets, bench peak, doctor, recipe run, eval tasks,
eval export-lm-eval) are written out below.

Errors: a user's mistake (:class:`bielik.errors.BielikError`, or an ``OSError`` naming a file) is one
line ``error: <file>: <what>`` on stderr and exit status 2; anything else is a bug: one line, a hint
to rerun with ``--debug`` and status 1. ``bielik --debug ...`` or ``BIELIK_DEBUG=1`` shows the
traceback instead. Building this command table imports neither torch nor transformers.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bielik.errors import BielikError
from bielik.stages import StageDecl, declarations

console = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 120)

# rich_markup_mode=None: help strings are plain text (a stage's "models=[a,b]" is not rich markup)
app = typer.Typer(
    help="bielik: the Bielik recipe for language-specialised LLMs.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

# command groups, by path; a stage declaration or an extra command may use any of them
GROUPS: dict[tuple[str, ...], str] = {
    ("model",): "Model presets, initialisation and inspection.",
    ("tokenizer",): "Tokenizer training, efficiency statistics and vocabulary merging.",
    ("data",): "Corpus preparation and packing.",
    ("data", "quality"): "The HIGH/MEDIUM/LOW quality classifier (XGBoost on stylometric features).",
    ("train",): "Training stages (one engine, many objectives).",
    ("bench",): "Hardware and speed measurements.",
    ("recipe",): "Run whole recipes (stage graphs).",
    ("quant",): "GGUF export, importance matrices, quantisation and comparison (llama.cpp).",
    ("eval",): "Evaluation: Open PL LLM Leaderboard tasks, Polish EQ-Bench, Polish MT-Bench.",
    ("compress",): "Minitron compression: importance, candidate shapes, structured pruning, logit distillation.",
}
_groups: dict[tuple[str, ...], typer.Typer] = {(): app}
for _path, _help in GROUPS.items():
    _groups[_path] = typer.Typer(help=_help, no_args_is_help=True, rich_markup_mode=None)
    _groups[_path[:-1]].add_typer(_groups[_path], name=_path[-1])


def group(*path: str) -> typer.Typer:
    """The Typer of the command group ``path`` (``()`` is the top level)."""
    if path not in _groups:
        raise KeyError(f"no command group {' '.join(path)!r}; add it to bielik.cli.GROUPS")
    return _groups[path]


ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config file", exists=False)
OverridesArg = typer.Argument(
    None, help="overrides as key=value, e.g. optim.lr=3e-4 train.steps=10", show_default=False
)

# ------------------------------------------------------------------------------------------ errors

_debug = False


@app.callback()
def _global_options(
    debug: bool = typer.Option(False, "--debug", help="show the Python traceback of an error (or BIELIK_DEBUG=1)"),
) -> None:
    global _debug
    _debug = debug


def debug_enabled() -> bool:
    return _debug or os.environ.get("BIELIK_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def user_message(exc: BaseException) -> str | None:
    """The one-line message of an error the user caused (bad input), or ``None`` for a bug.

    :class:`BielikError` messages name the file (line, key, tensor) themselves; an ``OSError`` that
    carries a file name (missing file, permission denied, a directory where a file was expected) is
    shown as ``<file>: <reason>``.
    """
    if isinstance(exc, BielikError):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    return None


def user_errors(fn: Callable) -> Callable:
    """Run a command: user errors are one line and exit 2, bugs one line and exit 1 (tracebacks with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None
        except Exception as exc:
            if debug_enabled():
                raise
            message = user_message(exc)
            if message is not None:
                console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None
            first = (str(exc).strip().splitlines() or [""])[0]
            console.print(
                f"[bold red]error:[/] unexpected {type(exc).__name__}: {escape(first)} "
                "(a bug: run with --debug for the traceback)",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1) from None

    return wrapper


# --------------------------------------------------------------------------------------- renderers


def _show_done(result: Any) -> None:
    if result is not None:
        out.print(f"[green]done:[/] {escape(str(result))}", highlight=False)


def _show_json(summary: Any) -> None:
    out.print_json(json.dumps(summary, default=str))


def _show_table(res: dict) -> None:
    out.print(res["table"] + f"\nwritten to {res['output']}", highlight=False, markup=False)


def _show_report_md(res: dict) -> None:
    out.print((Path(res["output"]) / "report.md").read_text(encoding="utf-8"), highlight=False, markup=False)


def _show_plan(res: dict) -> None:
    out.print(res["table"], highlight=False, markup=False, soft_wrap=True)


def _show_upscale(summary: dict) -> None:
    from bielik.model.upscale import format_summary

    out.print(format_summary(summary), highlight=False)


def _show_samples(samples: list[dict]) -> None:
    for s in samples:
        out.print(f"[bold]{escape(s['prompt'])}[/]{escape(s['completion'])}", highlight=False)


def _show_tables(kind: str, result: Any, cfg: Any) -> None:
    """The stage's tables as the report shows them (one place: :func:`bielik.report.tables_for`), from the
    ``metrics.json`` the stage wrote (its return value when it wrote none)."""
    from bielik.artifacts import read_json
    from bielik.report.render import to_rich
    from bielik.report.tables import tables_for

    metrics = result
    output = getattr(cfg, "output", None)
    if output and (Path(output) / "metrics.json").is_file():
        metrics = read_json(Path(output) / "metrics.json")
    if isinstance(metrics, dict) and metrics.get("status") == "incomplete":  # curation stopped early or dry run
        for job in metrics.get("sbatch") or []:
            out.print(job["script"], highlight=False, markup=False)
        out.print(f"[yellow]{escape(metrics['message'])}[/] ({escape(metrics['work_dir'])})", highlight=False)
        return
    for t in tables_for(kind, metrics):
        out.print(to_rich(t))
    if output:
        out.print(f"[green]done:[/] {escape(str(output))}", highlight=False)


def _show_report(res: dict) -> None:
    files = ", ".join(str(Path(res["output"]) / f) for f in res["files"])
    out.print(
        f"[green]report:[/] {res['stages']} stages, {res['tables']} tables, {res['figures']} figures -> "
        f"{escape(files)}",
        highlight=False,
    )


def _show_mt_bench(summary: dict) -> None:
    from bielik.eval.mt_bench import markdown

    out.print(markdown(summary, summary["model"]), highlight=False, markup=False)


# renderer name (StageDecl.show) -> how the CLI prints the stage's result; "tables" (most stages) prints the
# report's tables of the stage (:func:`_show_tables`), the others show results the report has no table for
RENDERERS: dict[str, Callable[[Any], None]] = {
    "done": _show_done,
    "json": _show_json,
    "table": _show_table,
    "report_md": _show_report_md,
    "plan": _show_plan,
    "upscale": _show_upscale,
    "samples": _show_samples,
    "mt_bench": _show_mt_bench,
    "report": _show_report,
}
TABLES_RENDERER = "tables"

# ---------------------------------------------------------------------------------- stage commands


def load_stage_config(kind: str, config: Path | None, overrides: list[str] | None) -> Any:
    """``kind``'s config: defaults <- YAML <- ``key=value`` overrides (as the recipe runner builds it)."""
    from bielik.config import load_config
    from bielik.stages import get

    return load_config(get(kind).config, config, overrides or [])


def _add_stage_command(decl: StageDecl) -> None:
    if decl.show != TABLES_RENDERER and decl.show not in RENDERERS:
        raise KeyError(f"stage {decl.kind}: no renderer {decl.show!r} in bielik.cli.RENDERERS")

    @user_errors
    def command(overrides: list[str] | None = OverridesArg, config: Path | None = ConfigOpt) -> None:
        from bielik.stages import get

        overrides = list(overrides or [])
        if decl.arg and overrides and "=" not in overrides[0]:  # `bielik report RUN_DIR` = `run_dir=RUN_DIR`
            overrides[0] = f"{decl.arg}={overrides[0]}"
        cfg = load_stage_config(decl.kind, config, overrides)
        result = get(decl.kind).run(cfg)
        if decl.show == TABLES_RENDERER:
            _show_tables(decl.kind, result, cfg)
        else:
            RENDERERS[decl.show](result)

    command.__name__ = f"{decl.kind.replace('.', '_')}_cmd"
    command.__doc__ = decl.help
    group(*decl.cli[:-1]).command(decl.cli[-1], help=decl.help)(command)


for _decl in declarations():
    _add_stage_command(_decl)

# ---------------------------------------------------------------------------------- other commands


@group("model").command("info")
@user_errors
def model_info_cmd(
    names: list[str] = typer.Argument(..., help="preset names or HF model directories"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Shape and parameter counts (built on the meta device: no memory needed)."""
    from bielik.model.factory import human, model_info
    from bielik.model.loading import check_hf_dir

    for name in names:
        if Path(name).is_dir():
            check_hf_dir(name)  # a damaged directory: one line naming the file, not a transformers traceback
    infos = [model_info(n) for n in names]
    if as_json:
        out.print_json(json.dumps(infos))
        return
    table = Table(title="model info")
    for col in (
        "model",
        "arch",
        "layers",
        "hidden",
        "ffn",
        "heads/kv",
        "vocab",
        "parameters",
        "non-embedding",
        "bf16 GiB",
    ):
        table.add_column(col, justify="right" if col not in ("model", "arch") else "left")
    for i in infos:
        table.add_row(
            i["name"],
            i["architecture"],
            str(i["layers"]),
            str(i["hidden_size"]),
            str(i["intermediate_size"]),
            f"{i['attention_heads']}/{i['kv_heads']}",
            str(i["vocab_size"]),
            i["parameters_human"],
            human(i["non_embedding_parameters"]),
            str(i["bf16_weights_gib"]),
        )
    out.print(table)


@group("model").command("presets")
@user_errors
def model_presets_cmd() -> None:
    """List the named presets."""
    from bielik.model.presets import preset_names

    for n in preset_names():
        out.print(n)


@group("bench").command("peak")
@user_errors
def bench_peak_cmd(overrides: list[str] | None = OverridesArg, config: Path | None = ConfigOpt) -> None:
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


@app.command("doctor")
@user_errors
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
    out.print(
        f"torch.distributed: {'yes' if dist['available'] else 'no'} (gloo {dist['gloo']}, nccl {dist['nccl']})"
        f" · CUDA {rep['cuda']}"
    )
    table = Table(title="optional components")
    for col in ("component", "status", "for", "install"):
        table.add_column(col)
    for o in rep["optional"]:
        table.add_row(
            o["component"],
            f"[green]{o['version']}[/]" if o["installed"] else "[yellow]missing[/]",
            o["for"],
            "" if o["installed"] else escape(o["install"]),
        )
    out.print(table)
    builds = ", ".join(rep["llama_cpp_builds"]) or "none (built on first use by the quantisation stages)"
    out.print(f"llama.cpp builds: {builds}")
    out.print(f"peak FLOP/s cache: {rep['peak_flops_cache'] or 'none (run `bielik bench peak` for MFU)'}")


@group("recipe").command("run")
@user_errors
def recipe_run_cmd(
    path: Path = typer.Argument(..., help="recipe YAML, e.g. recipes/tiny-pl.yaml"),
    overrides: list[str] | None = OverridesArg,
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="validate, build the models on meta and print every "
        "stage's plan, parameter counts, token budget, GPU-hours and launch commands; run "
        "nothing",
    ),
    force: bool = typer.Option(False, "--force", help="re-run stages that are already done"),
    from_stage: str | None = typer.Option(None, "--from", help="run this stage and every stage after it"),
    until_stage: str | None = typer.Option(None, "--until", help="stop after this stage"),
    only: str | None = typer.Option(None, "--only", help="run just this stage (e.g. on every torchrun rank)"),
) -> None:
    """Run a recipe's stages in order, skipping those done with unchanged config and inputs."""
    from bielik.recipe import load_recipe, run_recipe

    recipe = load_recipe(path, overrides or [])
    if dry_run:
        from bielik.recipe_plan import dry_run as plan_dry_run

        plan = plan_dry_run(recipe, force, from_stage, until_stage, only)
        out.print(plan.text(), highlight=False, markup=False, soft_wrap=True)
        return
    results = run_recipe(recipe, force=force, from_stage=from_stage, until_stage=until_stage, only=only)
    for name, res in results.items():
        if isinstance(res, list) and res and isinstance(res[0], dict) and "completion" in res[0]:
            out.print(f"\n[bold]{name}[/]:")
            _show_samples(res)


@group("eval").command("tasks")
@user_errors
def eval_tasks_cmd(
    data_dir: list[Path] | None = typer.Option(None, "--data-dir", "-d", help="folders holding task data"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """List the tasks, their leaderboard metric and baseline, and which splits have data."""
    from bielik.eval.data import find_split_file, search_dirs
    from bielik.eval.tasks import all_tasks

    dirs = search_dirs([str(d) for d in data_dir or []])
    rows = []
    for name, t in all_tasks().items():
        have = [s for s in t.dataset.files if find_split_file(t, s, dirs)]
        rows.append(
            {
                "task": name,
                "family": t.family,
                "type": t.output_type,
                "metric": t.leaderboard.metric if t.leaderboard else None,
                "baseline": t.leaderboard.baseline if t.leaderboard else None,
                "data": have,
            }
        )
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title="evaluation tasks")
    for col in ("task", "type", "leaderboard metric", "baseline", "splits with data"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["task"],
            "mc" if r["type"] == "multiple_choice" else "gen",
            r["metric"] or "",
            "" if r["baseline"] is None else f"{r['baseline']:.3f}",
            ", ".join(r["data"]) or "[yellow]none[/]",
        )
    out.print(table)


@group("eval").command("export-lm-eval")
@user_errors
def eval_export_cmd(
    tasks: list[str] = typer.Argument(..., help="task names"),
    output: Path = typer.Option(
        ..., "--output", "-o", help="folder for the lm-eval YAMLs (pass it to lm_eval --include_path)"
    ),
    data_dir: list[Path] | None = typer.Option(None, "--data-dir", "-d", help="folders holding task data"),
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


# ------------------------------------------------------------------------------------------ entry


def command_paths() -> dict[tuple[str, ...], Any]:
    """Every leaf command of the CLI: path (e.g. ``("train", "sft")``) -> its click command."""
    found: dict[tuple[str, ...], Any] = {}

    def walk(cmd: Any, path: tuple[str, ...]) -> None:
        if hasattr(cmd, "commands"):  # a group (typer vendors its own click: no isinstance check)
            for name, sub in cmd.commands.items():
                walk(sub, path + (name,))
        else:
            found[path] = cmd

    walk(typer.main.get_command(app), ())
    return found


def main() -> None:
    """The ``bielik`` entry point: the process-wide settings (logging, per-rank threads), then the command."""
    from bielik.runtime import configure_process

    configure_process()
    app()


if __name__ == "__main__":
    sys.exit(main())
