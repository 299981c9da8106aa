"""The registry of stages: one (config model, function) pair per stage kind.

The CLI, the recipe runner and Python users call the same functions through this table. A stage
function takes its validated config and returns its outputs (a path or a summary dict); its
artifacts land in ``config.output``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from bielik.config import StageConfig


@dataclass(frozen=True)
class Stage:
    kind: str
    config: type[StageConfig]
    run: Callable[[Any], Any]
    help: str


def registry() -> dict[str, Stage]:
    # imported lazily: `bielik --help` must not pay for torch/transformers imports
    from bielik.compress.distill import DistillConfig, distill
    from bielik.compress.importance import ImportanceConfig, importance
    from bielik.compress.plan import PlanConfig, plan
    from bielik.compress.prune import PruneConfig, prune
    from bielik.data.instruct import InstructConfig, instruct
    from bielik.data.pack import PackConfig, pack
    from bielik.data.curate import api as curate
    from bielik.eval.leaderboard import EqBenchConfig, LeaderboardConfig, run_eq_bench, run_leaderboard
    from bielik.eval.mt_bench import MTBenchConfig, run_mt_bench
    from bielik.generate import GenerateConfig, generate
    from bielik.model.factory import ModelInitConfig, init_model
    from bielik.model.merge import MergeConfig, merge
    from bielik.model.swap import SwapTokenizerConfig, swap_tokenizer
    from bielik.model.upscale import UpscaleConfig, upscale
    from bielik.quant.compare import CompareConfig, compare
    from bielik.quant.export import ExportConfig, export
    from bielik.quant.imatrix import ImatrixConfig, compute_imatrix
    from bielik.quant.quantize import QuantizeConfig, quantize
    from bielik.quant.speed import SpeedConfig, bench_speed
    from bielik.tokenizer.merge import TokenizerMergeConfig, merge_tokenizers
    from bielik.tokenizer.stats import TokenizerStatsConfig, tokenizer_stats
    from bielik.tokenizer.train import TokenizerTrainConfig, train_tokenizer
    from bielik.train.pretrain import PretrainConfig, pretrain
    from bielik.train.sft import SFTConfig, sft
    from bielik.train.dpo import DPOConfig, dpo
    from bielik.train.grpo import GRPOConfig, grpo

    stages = [
        Stage("tokenizer.train", TokenizerTrainConfig, train_tokenizer, "train a BPE tokenizer (byte-level or SentencePiece-style with byte fallback)"),
        Stage("tokenizer.stats", TokenizerStatsConfig, tokenizer_stats, "tokens, characters per token, tokens per word of tokenizers on texts"),
        Stage("tokenizer.merge", TokenizerMergeConfig, merge_tokenizers, "extend a base BPE vocabulary with a Polish one and measure merge ambiguity"),
        Stage("data.pack", PackConfig, pack, "tokenize, mix languages and pack fixed-length token shards"),
        Stage("data.instruct", InstructConfig, instruct, "construct Polish SFT dialogues with checkable references from the Polish corpus"),
        Stage("data.clean", curate.CleanStageConfig, curate.clean, "cleaning heuristics (encoding, boilerplate, tables, language, ...) with drop reasons"),
        Stage("data.anonymize", curate.AnonymizeStageConfig, curate.anonymize, "Polish PII -> typed placeholders, span-level report"),
        Stage("data.dedup", curate.DedupStageConfig, curate.dedup, "exact (normalised hash) and MinHash-LSH near-duplicate removal"),
        Stage("data.features", curate.FeaturesStageConfig, curate.features, "stylometric features (Morfeusz 2) to Parquet"),
        Stage("data.quality_filter", curate.QualityFilterStageConfig, curate.quality_filter, "keep documents with P(HIGH) > threshold"),
        Stage("data.curate", curate.CurateConfig, curate.curate, "clean + anonymise + quality filter + dedup on datatrove"),
        Stage("quality.build", curate.QualitySetConfig, curate.quality_build, "construct the HIGH/MEDIUM/LOW training set from edited text"),
        Stage("quality.train", curate.QualityTrainConfig, curate.quality_train, "train the XGBoost quality classifier"),
        Stage("quality.eval", curate.QualityEvalConfig, curate.quality_eval, "precision/recall/F1 and confusion matrix of a quality model"),
        Stage("model.init", ModelInitConfig, init_model, "write a freshly initialised model from a preset"),
        Stage("model.upscale", UpscaleConfig, upscale, "depth up-scaling (SOLAR DUS: n, m -> 2(n-m) layers, or a layer map)"),
        Stage("model.merge", MergeConfig, merge, "linear (weighted-average) merge of checkpoints"),
        Stage("model.swap_tokenizer", SwapTokenizerConfig, swap_tokenizer, "replace a model's tokenizer; FOCUS/mean/random init of new embeddings"),
        Stage("train.pretrain", PretrainConfig, pretrain, "(continued) pretraining with the bielik engine"),
        Stage("train.sft", SFTConfig, sft, "supervised fine-tuning: masked tokens, packing, weighted instruction CE, adaptive LR"),
        Stage("train.dpo", DPOConfig, dpo, "DPO-Positive on preference pairs: frozen reference (log-probs cached), shared-prompt rows, pair weights"),
        Stage("train.grpo", GRPOConfig, grpo, "GRPO with verifiable rewards: G sampled answers per prompt, group advantages, clipped objective, k3 KL"),
        Stage("compress.importance", ImportanceConfig, importance, "Minitron importance: hidden channels, FFN neurons, heads, Block Influence"),
        Stage("compress.plan", PlanConfig, plan, "candidate pruned shapes with exact parameter counts (the Minitron table)"),
        Stage("compress.prune", PruneConfig, prune, "structured pruning (depth, hidden, FFN, heads/KV heads) of an HF checkpoint"),
        Stage("compress.distill", DistillConfig, distill, "logit distillation (forward KL with temperature) from a frozen teacher"),
        Stage("generate", GenerateConfig, generate, "sample continuations from a model"),
        Stage("quant.export", ExportConfig, export, "HF checkpoint -> GGUF (f32/f16/bf16) with llama.cpp's converter"),
        Stage("quant.imatrix", ImatrixConfig, compute_imatrix, "importance matrix from Polish-English calibration text"),
        Stage("quant.quantize", QuantizeConfig, quantize, "GGUF quantisation (Q8_0...Q2_K, IQ2_XXS), with and without imatrix"),
        Stage("quant.compare", CompareConfig, compare, "quantised GGUFs vs the reference: PPL, KLD, delta-p, same top"),
        Stage("bench.speed", SpeedConfig, bench_speed, "single-stream decode speed of HF and GGUF models"),
        Stage("eval.leaderboard", LeaderboardConfig, run_leaderboard, "Open PL LLM Leaderboard tasks, 0/5-shot, normalised average, RAG, perplexity"),
        Stage("eval.eq_bench", EqBenchConfig, run_eq_bench, "Polish EQ-Bench (first/revised ratings, v2 scoring)"),
        Stage("eval.mt_bench", MTBenchConfig, run_mt_bench, "Polish MT-Bench: two-turn answers judged 1-10 by an OpenAI-compatible judge"),
    ]
    return {s.kind: s for s in stages}
