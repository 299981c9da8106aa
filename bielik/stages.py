"""The registry of stages: every stage is declared exactly once, here.

A declaration names the stage kind, its command-line path, its one help string, its config model and
function (as lazy ``"module:attr"`` references) and how the command line shows its result (the name
of a renderer in :data:`bielik.cli.RENDERERS`). The CLI (:mod:`bielik.cli`) generates one command
per declaration, the recipe runner and Python users call ``registry()[kind].run``; so the three
surfaces cannot drift apart (the help strings once did, when the table was written twice).

References stay strings until :func:`registry` resolves them, so ``bielik --help`` and the CLI's
command table import neither torch nor transformers.

Running a stage through the registry first checks every HF directory its config names
(:func:`bielik.model.loading.check_config_dirs`: header reads only), then enters
:func:`bielik.runtime.stage_context`, which enables flush-to-zero of denormals on the CPU for the
duration of the stage and restores the previous state afterwards (process-wide settings belong to
the caller, see :mod:`bielik.runtime`).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bielik.config import StageConfig


@dataclass(frozen=True)
class StageDecl:
    """One stage, declared once: everything the CLI needs without importing the stage's module.

    ``cli`` is the command path: ``("train", "sft")`` is ``bielik train sft``, ``("generate",)`` is a
    top-level command, ``("data", "quality", "build")`` a command of a nested group. ``show`` names
    the renderer the CLI uses for the stage's result (``"tables"``: the report's tables of the stage,
    :func:`bielik.report.tables_for`). ``reads_run`` marks a stage that reads the whole
    run directory (the report): the recipe runner takes every other stage's records as its inputs.
    """

    kind: str
    cli: tuple[str, ...]
    help: str
    config: str
    run: str
    show: str = "tables"
    reads_run: bool = False
    arg: str | None = None  # a bare first command-line argument sets this field (`bielik report RUN_DIR`)


@dataclass(frozen=True)
class Stage:
    """A resolved stage: its declaration plus the imported config model and function.

    ``run(config)`` runs the stage function (``func``) inside :func:`bielik.runtime.stage_context`;
    everything else (kind, help, command path, renderer, ``reads_run``) is read from ``decl``.
    """

    decl: StageDecl
    config: type[StageConfig]
    run: Callable[[Any], Any]
    func: Callable[[Any], Any]

    @property
    def kind(self) -> str:
        return self.decl.kind

    @property
    def help(self) -> str:
        return self.decl.help

    @property
    def reads_run(self) -> bool:
        return self.decl.reads_run


_C = "bielik.data.curate.api"
STAGES: tuple[StageDecl, ...] = (
    # tokenizer
    StageDecl(
        "tokenizer.train",
        ("tokenizer", "train"),
        "Train a BPE tokenizer (HF directory): byte-level, or style=sentencepiece with byte fallback.",
        "bielik.tokenizer.train:TokenizerTrainConfig",
        "bielik.tokenizer.train:train_tokenizer",
    ),
    StageDecl(
        "tokenizer.stats",
        ("tokenizer", "stats"),
        "Tokens, characters per token and tokens per word of tokenizers on texts (Markdown table + chart).",
        "bielik.tokenizer.stats:TokenizerStatsConfig",
        "bielik.tokenizer.stats:tokenizer_stats",
        "table",
    ),
    StageDecl(
        "tokenizer.merge",
        ("tokenizer", "merge"),
        "Extend base=mistral-v0.1 with extra=DIR (a Polish BPE vocabulary); report non-canonical words, "
        "unreachable tokens and conflicting merges.",
        "bielik.tokenizer.merge:TokenizerMergeConfig",
        "bielik.tokenizer.merge:merge_tokenizers",
        "report_md",
    ),
    # data
    StageDecl(
        "data.pack",
        ("data", "pack"),
        "Tokenize, mix languages by token share and pack fixed-length token shards.",
        "bielik.data.pack:PackConfig",
        "bielik.data.pack:pack",
    ),
    StageDecl(
        "data.instruct",
        ("data", "instruct"),
        "Construct Polish SFT dialogues with checkable references (diacritics, punctuation, cloze, numbers, "
        "dates, headlines) from the corpus.",
        "bielik.data.instruct:InstructConfig",
        "bielik.data.instruct:instruct",
    ),
    StageDecl(
        "data.clean",
        ("data", "clean"),
        "Cleaning heuristics (encoding, boilerplate, tables, language, ...) with a drop reason per document: "
        "inputs=[...] output=DIR.",
        f"{_C}:CleanStageConfig",
        f"{_C}:clean",
    ),
    StageDecl(
        "data.anonymize",
        ("data", "anonymize"),
        "Replace Polish PII (e-mail, URL, phone, address, PESEL, NIP, IBAN) by typed placeholders; span-level report.",
        f"{_C}:AnonymizeStageConfig",
        f"{_C}:anonymize",
    ),
    StageDecl(
        "data.dedup",
        ("data", "dedup"),
        "Exact (normalised hash) and MinHash-LSH near-duplicate removal: dedup.threshold=0.8.",
        f"{_C}:DedupStageConfig",
        f"{_C}:dedup",
    ),
    StageDecl(
        "data.features",
        ("data", "features"),
        "Stylometric features (Morfeusz 2) of every document to Parquet.",
        f"{_C}:FeaturesStageConfig",
        f"{_C}:features",
    ),
    StageDecl(
        "data.quality_filter",
        ("data", "quality", "filter"),
        "Keep documents with P(HIGH) > quality.threshold (default 0.90).",
        f"{_C}:QualityFilterStageConfig",
        f"{_C}:quality_filter",
    ),
    StageDecl(
        "data.curate",
        ("data", "curate"),
        "Clean + anonymise + quality filter + dedup on datatrove (executor.kind=local|slurm|ray).",
        f"{_C}:CurateConfig",
        f"{_C}:curate",
    ),
    StageDecl(
        "quality.build",
        ("data", "quality", "build"),
        "Construct the labelled HIGH/MEDIUM/LOW set from edited Polish text (train/test).",
        f"{_C}:QualitySetConfig",
        f"{_C}:quality_build",
    ),
    StageDecl(
        "quality.train",
        ("data", "quality", "train"),
        "Train the XGBoost quality classifier: train=labelled.jsonl|DIR output=DIR.",
        f"{_C}:QualityTrainConfig",
        f"{_C}:quality_train",
    ),
    StageDecl(
        "quality.eval",
        ("data", "quality", "eval"),
        "Per-class/macro precision, recall, F1 and a confusion-matrix PNG of a quality model: data=... model=DIR.",
        f"{_C}:QualityEvalConfig",
        f"{_C}:quality_eval",
    ),
    # model
    StageDecl(
        "model.init",
        ("model", "init"),
        "Write a freshly initialised HF model from a preset.",
        "bielik.model.factory:ModelInitConfig",
        "bielik.model.factory:init_model",
    ),
    StageDecl(
        "model.upscale",
        ("model", "upscale"),
        "Depth up-scaling (SOLAR DUS): m=7 (n, m -> 2(n-m) layers) or layer_map=[...]; dry_run=true counts on meta.",
        "bielik.model.upscale:UpscaleConfig",
        "bielik.model.upscale:upscale",
        "upscale",
    ),
    StageDecl(
        "model.merge",
        ("model", "merge"),
        "Linear (weighted-average) merge of checkpoints: models=[a,b] weights=[0.5,0.5] output=DIR.",
        "bielik.model.merge:MergeConfig",
        "bielik.model.merge:merge",
    ),
    StageDecl(
        "model.swap_tokenizer",
        ("model", "swap-tokenizer"),
        "Replace a model's tokenizer; new embeddings initialised with FOCUS (init=focus|mean|random).",
        "bielik.model.swap:SwapTokenizerConfig",
        "bielik.model.swap:swap_tokenizer",
    ),
    # train
    StageDecl(
        "train.pretrain",
        ("train", "pretrain"),
        "(Continued) pretraining with the bielik engine; torchrun-ready (DDP/FSDP2).",
        "bielik.train.pretrain:PretrainConfig",
        "bielik.train.pretrain:pretrain",
    ),
    StageDecl(
        "train.sft",
        ("train", "sft"),
        "SFT on chat data (default: the shipped mix): assistant-only loss, packing, weighted instruction CE, "
        "adaptive LR; torchrun-ready.",
        "bielik.train.sft:SFTConfig",
        "bielik.train.sft:sft",
    ),
    StageDecl(
        "train.dpo",
        ("train", "dpo"),
        "DPO-Positive on preference pairs (default: the shipped pairs): beta=0.1 lam=5; frozen reference "
        "(log-probs cached), shared-prompt rows, pair weights; torchrun-ready.",
        "bielik.train.dpo:DPOConfig",
        "bielik.train.dpo:dpo",
    ),
    StageDecl(
        "train.grpo",
        ("train", "grpo"),
        "GRPO with verifiable rewards on math tasks (default: the shipped ones): group_size=8 sampled answers "
        "per prompt, group advantages, clipped objective, k3 KL; torchrun-ready.",
        "bielik.train.grpo:GRPOConfig",
        "bielik.train.grpo:grpo",
    ),
    # compress
    StageDecl(
        "compress.importance",
        ("compress", "importance"),
        "Minitron importance of hidden channels, FFN neurons, heads and Block Influence per layer: model=DIR.",
        "bielik.compress.importance:ImportanceConfig",
        "bielik.compress.importance:importance",
    ),
    StageDecl(
        "compress.plan",
        ("compress", "plan"),
        "Candidate pruned shapes with exact parameter counts (the Minitron table): base=bielik-11b-v3 budget=7.35B.",
        "bielik.compress.plan:PlanConfig",
        "bielik.compress.plan:plan",
        "plan",
    ),
    StageDecl(
        "compress.prune",
        ("compress", "prune"),
        "Structured pruning (depth, hidden, FFN, heads/KV heads) of an HF checkpoint: model=DIR importance=DIR "
        "layers=40 intermediate_size=11264.",
        "bielik.compress.prune:PruneConfig",
        "bielik.compress.prune:prune",
    ),
    StageDecl(
        "compress.distill",
        ("compress", "distill"),
        "Logit distillation (forward KL with temperature) from a frozen teacher: teacher=DIR student=DIR "
        "data=DIR tau=1 alpha=0 top_k=0.",
        "bielik.compress.distill:DistillConfig",
        "bielik.compress.distill:distill",
    ),
    # generation
    StageDecl(
        "generate",
        ("generate",),
        "Sample continuations of prompts from an HF model directory.",
        "bielik.generate:GenerateConfig",
        "bielik.generate:generate",
        "samples",
    ),
    # quant
    StageDecl(
        "quant.export",
        ("quant", "export"),
        "HF checkpoint -> GGUF (f32/f16/bf16) with llama.cpp's converter: model=DIR output=DIR outtype=f16.",
        "bielik.quant.export:ExportConfig",
        "bielik.quant.export:export",
    ),
    StageDecl(
        "quant.imatrix",
        ("quant", "imatrix"),
        "Importance matrix from Polish-English calibration text: model=GGUF text.mix={pl:0.5,en:0.5}.",
        "bielik.quant.imatrix:ImatrixConfig",
        "bielik.quant.imatrix:compute_imatrix",
    ),
    StageDecl(
        "quant.quantize",
        ("quant", "quantize"),
        "GGUF quantisation (Q8_0...Q2_K, IQ2_XXS), with and without imatrix: model=GGUF types=[Q4_K_M,Q2_K] "
        "imatrix=FILE.",
        "bielik.quant.quantize:QuantizeConfig",
        "bielik.quant.quantize:quantize",
    ),
    StageDecl(
        "quant.compare",
        ("quant", "compare"),
        "Quantised GGUFs vs the reference on held-out Polish text: PPL, KLD, delta-p, same top.",
        "bielik.quant.compare:CompareConfig",
        "bielik.quant.compare:compare",
    ),
    StageDecl(
        "bench.speed",
        ("bench", "speed"),
        "Single-stream decode speed of HF and GGUF models: models=[HF_DIR,model.gguf] (HF: fp32 and bf16); "
        "TTFT, TPOT, tokens/s.",
        "bielik.quant.speed:SpeedConfig",
        "bielik.quant.speed:bench_speed",
    ),
    # eval
    StageDecl(
        "eval.leaderboard",
        ("eval", "leaderboard"),
        "Open PL LLM Leaderboard tasks, 0/5-shot, normalised average, RAG, perplexity: model=DIR "
        "num_fewshot=[0,5] data_dir=[DIR]; see `bielik eval tasks`.",
        "bielik.eval.leaderboard:LeaderboardConfig",
        "bielik.eval.leaderboard:run_leaderboard",
    ),
    StageDecl(
        "eval.eq_bench",
        ("eval", "eq-bench"),
        "Polish EQ-Bench (zero-shot; first/revised ratings, v2 scoring): model=DIR.",
        "bielik.eval.leaderboard:EqBenchConfig",
        "bielik.eval.leaderboard:run_eq_bench",
    ),
    StageDecl(
        "eval.mt_bench",
        ("eval", "mt-bench"),
        "Polish MT-Bench: two-turn answers judged 1-10 by an OpenAI-compatible judge: model=DIR "
        "judge.base_url=URL judge.model=NAME (key from $BIELIK_JUDGE_API_KEY).",
        "bielik.eval.mt_bench:MTBenchConfig",
        "bielik.eval.mt_bench:run_mt_bench",
        "mt_bench",
    ),
    # report
    StageDecl(
        "report",
        ("report",),
        "One self-contained HTML page (and Markdown) of everything a run did: run_dir=DIR (default output: "
        "RUN_DIR/report).",
        "bielik.report:ReportConfig",
        "bielik.report:report",
        "report",
        reads_run=True,
        arg="run_dir",
    ),
)


def declarations() -> tuple[StageDecl, ...]:
    """Every stage declaration, in CLI order (no stage module is imported)."""
    return STAGES


def resolve(ref: str) -> Any:
    """Import ``"package.module:attr"`` and return the attribute."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def _in_stage_context(func: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``func`` preceded by a check of the HF directories its config names, run in the stage context."""

    @functools.wraps(func)
    def run(cfg: Any) -> Any:
        from bielik.model.loading import check_config_dirs
        from bielik.runtime import stage_context

        if hasattr(cfg, "model_dump"):  # a truncated model fails here, in a second, naming the file and tensor
            check_config_dirs(cfg.model_dump(mode="python"))
        with stage_context():
            return func(cfg)

    return run


@functools.cache
def _resolved(decl: StageDecl) -> Stage:
    func = resolve(decl.run)
    return Stage(decl, resolve(decl.config), _in_stage_context(func), func)


def get(kind: str) -> Stage:
    """The resolved stage ``kind`` (imports only that stage's module)."""
    for decl in STAGES:
        if decl.kind == kind:
            return _resolved(decl)
    from bielik.errors import ConfigError

    raise ConfigError(f"unknown stage kind '{kind}'; known kinds: {', '.join(d.kind for d in STAGES)}")


def registry() -> dict[str, Stage]:
    """kind -> resolved :class:`Stage` (imports every stage module: use :func:`get` for one stage)."""
    return {decl.kind: _resolved(decl) for decl in STAGES}
