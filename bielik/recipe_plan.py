"""The dry run of a recipe: validate it, build its models on ``meta``, estimate cost, print launch commands.

:func:`dry_run` resolves and validates every stage config (nothing is read, written or allocated:
inputs need not exist; the ones neither present nor made by an earlier stage are listed as "inputs to
provide"). It follows the model *shape* through the stages -- a preset named by an input
(``inputs.base.preset``), ``model.init``, ``model.upscale`` (SOLAR map), ``model.swap_tokenizer`` (new
vocabulary), ``compress.prune`` (layers / hidden / FFN / heads), training and merging (shape kept) --
and instantiates each distinct shape with ``AutoModelForCausalLM.from_config`` on ``torch.device("meta")``
for exact parameter counts (an 11B model costs no memory there).

Token budget of a training stage: ``D = steps x global batch x seq_len`` with ``global batch =
micro_batch_size x grad_accum x GPUs`` (GPUs = ``cluster.nodes x cluster.gpus_per_node``, else 1).

Compute: ``C = F x D`` with the engine's FLOPs per token (:func:`bielik.train.metrics.flops_per_token`,
PaLM App. B: ``F = 6 N + 12 L d T``; N = parameters in matmuls, L layers, d width, T sequence length) --
the same count the engine's MFU uses, so an MFU measured by the engine plugs straight in. Frozen
forward passes add ``F/3`` per token (DPO's reference, distillation's teacher, GRPO's reference and
sampling). GPU-hours = ``C / (MFU x P x 3600)`` with P the per-GPU peak (``cluster.peak_tflops_bf16``)
and MFU from ``cluster.mfu`` or the median ``mfu`` of a measured run's ``metrics.jsonl``
(``cluster.mfu_from``); wall-clock hours = GPU-hours / GPUs. GRPO is an upper bound (every prompt and
completion at its maximum length).

Launch commands: training stages under ``torchrun`` (one node: ``--standalone``; several: ``--nnodes``,
``--node_rank``, ``--rdzv-backend c10d``, ``--rdzv-endpoint``), each rank running ``bielik recipe run
<recipe> --only <stage>`` (only global rank 0 writes records); FSDP2 or DDP comes from the stage's
``train.distributed``. Curation stages print their datatrove executor (Slurm array job or Ray).
"""

from __future__ import annotations

import json
import math
import shlex
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bielik.artifacts import read_log_rows
from bielik.config import StageConfig
from bielik.errors import BielikError, ConfigError
from bielik.log import get_logger
from bielik.recipe import (
    ClusterSpec,
    Recipe,
    forced,
    missing_upstream,
    not_done_reason,
    plan,
    references,
    select,
)

log = get_logger(__name__)


def is_training(cfg: StageConfig) -> bool:
    """A stage that runs the training engine: its config has an engine config under ``train``."""
    from bielik.train.config import EngineConfig

    return isinstance(getattr(cfg, "train", None), EngineConfig)


@dataclass
class StagePlan:
    name: str
    kind: str
    output: str | None
    status: str
    inputs_to_provide: list[str] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)
    model: dict[str, Any] | None = None
    tokens: int | None = None
    tokens_formula: str | None = None
    flops: float | None = None
    gpu_hours: float | None = None
    wall_hours: float | None = None
    commands: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DryRun:
    recipe: str
    source: str | None
    cluster: dict[str, Any] | None
    mfu: float | None
    mfu_source: str | None
    stages: list[StagePlan]

    @property
    def gpu_hours(self) -> float:
        return sum(s.gpu_hours or 0.0 for s in self.stages)

    def text(self) -> str:
        return format_dry_run(self)


def measured_mfu(path: str | Path) -> float:
    """Median of the ``mfu`` field over the rows of an engine ``metrics.jsonl``."""
    path = Path(path)
    if not path.is_file():
        raise BielikError(f"cluster.mfu_from: {path} does not exist (a metrics.jsonl written by a training stage)")
    values = [
        float(row["mfu"])
        for row in read_log_rows(path)
        if isinstance(row, dict) and isinstance(row.get("mfu"), (int, float)) and row["mfu"] > 0
    ]
    if not values:
        raise BielikError(
            f"{path}: no row has an 'mfu' value (was peak_flops known when it ran? see `bielik bench peak`)"
        )
    return statistics.median(values)


class _Shapes:
    """Model shapes (HF config dicts) by path, and meta-device parameter counts by shape."""

    def __init__(self) -> None:
        self.configs: dict[str, dict[str, Any]] = {}
        self.vocab: dict[str, int] = {}
        self.seq_len: dict[str, int] = {}
        self._models: dict[str, Any] = {}

    @staticmethod
    def _key(path: str) -> str:
        return str(Path(path))

    def set(self, path: str, config: dict[str, Any], also_final: bool = False) -> None:
        self.configs[self._key(path)] = config
        if also_final:
            self.configs[self._key(str(Path(path) / "final"))] = config

    def get(self, path: str | None) -> dict[str, Any] | None:
        if not path:
            return None
        hit = self.configs.get(self._key(path))
        if hit is not None:
            return hit
        from bielik.model.presets import PRESETS

        if path in PRESETS:
            from bielik.model.factory import build_config

            return build_config(path).to_dict()
        if (Path(path) / "config.json").is_file():  # an existing checkpoint (e.g. after a real run)
            from transformers import AutoConfig

            return AutoConfig.from_pretrained(path).to_dict()
        return None

    def model(self, config: dict[str, Any]):
        """The model of ``config`` built on the meta device (cached per distinct config)."""
        from bielik.model.factory import build_model
        from bielik.model.upscale import _hf_config

        key = json.dumps(config, sort_keys=True, default=str)
        if key not in self._models:
            self._models[key] = build_model(_hf_config(dict(config)), device="meta", seed=None)
        return self._models[key]

    def describe(self, config: dict[str, Any], source: str) -> dict[str, Any]:
        from bielik.model.factory import ParamCount, human

        pc = ParamCount.of(self.model(config))
        return {
            "source": source,
            "model_type": config.get("model_type"),
            "layers": config.get("num_hidden_layers"),
            "hidden_size": config.get("hidden_size"),
            "intermediate_size": config.get("intermediate_size"),
            "attention_heads": config.get("num_attention_heads"),
            "kv_heads": config.get("num_key_value_heads"),
            "vocab_size": config.get("vocab_size"),
            "tied_embeddings": bool(config.get("tie_word_embeddings")),
            "parameters": pc.total,
            "parameters_human": human(pc.total),
            "non_embedding_parameters": pc.non_embedding,
        }

    def flops_per_token(self, config: dict[str, Any], seq_len: int) -> float:
        from bielik.train.metrics import flops_per_token

        return flops_per_token(self.model(config), seq_len)


def _pruned(src: dict[str, Any], cfg) -> dict[str, Any]:
    new = dict(src)
    if "head_dim" not in new or new.get("head_dim") is None:
        new["head_dim"] = src["hidden_size"] // src["num_attention_heads"]
    if cfg.drop_layers:
        new["num_hidden_layers"] = src["num_hidden_layers"] - len(set(cfg.drop_layers))
    elif cfg.layers:
        new["num_hidden_layers"] = min(cfg.layers, src["num_hidden_layers"])
    for key in ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads"):
        if getattr(cfg, key) is not None:
            new[key] = getattr(cfg, key)
    n = new["num_hidden_layers"]
    for key, value in src.items():  # per-layer lists (layer_types) keep their first n entries
        if isinstance(value, list) and len(value) == src["num_hidden_layers"] and key != "architectures":
            new[key] = value[:n]
    return new


def _world(cluster: ClusterSpec | None) -> int:
    return cluster.nodes * cluster.gpus_per_node if cluster else 1


def _train_commands(recipe: Recipe, name: str, cfg, cluster: ClusterSpec | None) -> list[str]:
    tail = ["-m", "bielik.cli", "recipe", "run", recipe._source or "<recipe.yaml>", *recipe._overrides, "--only", name]
    tail_s = " ".join(shlex.quote(t) if not t.startswith("<") else t for t in tail)
    strategy = cfg.train.distributed.strategy
    gpn = cluster.gpus_per_node if cluster else 8
    cmds = [
        f"# {strategy.upper()} ({cfg.train.precision}); one node:",
        f"torchrun --standalone --nproc_per_node {gpn} {tail_s}",
    ]
    nodes = cluster.nodes if cluster and cluster.nodes > 1 else 4
    ep = cluster.rdzv_endpoint if cluster else "$MASTER_ADDR:29500"
    cmds += [
        f"# {nodes} nodes: on node i (0..{nodes - 1}) with NODE_RANK=i, shared filesystem:",
        (
            f"torchrun --nnodes {nodes} --nproc_per_node {gpn} --node_rank $NODE_RANK --rdzv-id {recipe.name}-{name} "
            f"--rdzv-backend c10d --rdzv-endpoint {ep} {tail_s}"
        ),
    ]
    return cmds


def _curate_commands(recipe: Recipe, name: str, cfg) -> list[str]:
    ex = cfg.executor
    run = " ".join(
        shlex.quote(t)
        for t in ["bielik", "recipe", "run", recipe._source or "<recipe.yaml>", *recipe._overrides, "--only", name]
    )
    tasks = ex.tasks or "one per input file"
    if ex.kind == "slurm":
        return [
            (
                f"# datatrove SlurmPipelineExecutor: array job of {tasks} tasks, partition {ex.partition}, "
                f"{ex.cpus_per_task} CPU(s) x {ex.mem_per_cpu_gb} GB, {ex.time} each; run on the login node, "
                "again when the array finishes (dedup + funnel):"
            ),
            run,
        ]
    if ex.kind == "ray":
        return [
            (
                "# datatrove RayPipelineExecutor: `ray start --head` on one node, "
                "`ray start --address=<head>:6379` on the others,"
            ),
            f"# then ({tasks} tasks, {ex.cpus_per_task} CPU(s) each):",
            run,
        ]
    return [f"# datatrove LocalPipelineExecutor ({ex.workers} worker(s)):", run]


def _global_batch(e, cluster) -> int:
    return e.micro_batch_size * e.grad_accum * _world(cluster)


def dry_run(
    recipe: Recipe,
    force: bool = False,
    from_stage: str | None = None,
    until_stage: str | None = None,
    only: str | None = None,
) -> DryRun:
    """Plan every selected stage of ``recipe`` (see the module docstring); nothing runs or is written."""
    from bielik.model.factory import build_config

    steps = plan(recipe)
    start, end = select(recipe, from_stage, until_stage, only)
    rerun = forced(force, from_stage, only)
    cluster = recipe.cluster
    mfu, mfu_source = None, None
    if cluster is not None:
        if cluster.mfu_from:
            mfu, mfu_source = measured_mfu(cluster.mfu_from), f"median of {cluster.mfu_from}"
        else:
            mfu, mfu_source = cluster.mfu, "cluster.mfu"
    shapes = _Shapes()
    for spec in recipe.inputs.values():
        if spec.preset:
            shapes.set(spec.path, build_config(spec.preset).to_dict())
        if spec.vocab_size:
            shapes.vocab[str(Path(spec.path))] = spec.vocab_size
        if spec.seq_len:
            shapes.seq_len[str(Path(spec.path))] = spec.seq_len
    missing = {s for s, _, _ in missing_upstream(recipe, steps, start, end)}
    plans: list[StagePlan] = []
    for idx, (name, stage, cfg) in enumerate(steps):
        out = getattr(cfg, "output", None)
        selected = start <= idx <= end
        refs = sorted(references(recipe.stages[name].config))
        p = StagePlan(name, stage.kind, out, "not selected", reads=refs)
        # inputs: paths in the config that neither exist nor come from an earlier stage
        for ref in refs:
            if ref in recipe.inputs and not Path(recipe.inputs[ref].path).exists():
                path = recipe.inputs[ref].path
                about = recipe.inputs[ref].about
                p.inputs_to_provide.append(path + (f" ({about})" if about else ""))
        if selected:
            if name in missing:
                p.status = "blocked: reads an unfinished earlier stage outside the selection"
            elif rerun:
                p.status = "run (forced)"
            else:
                reason = not_done_reason(cfg, {}, None)
                p.status = "done (skip, if its inputs are unchanged)" if reason is None else f"run ({reason})"
        _plan_stage(recipe, p, stage.kind, cfg, shapes, cluster, mfu)
        if selected:
            plans.append(p)
    return DryRun(recipe.name, recipe._source, cluster.model_dump() if cluster else None, mfu, mfu_source, plans)


def _plan_stage(recipe: Recipe, p: StagePlan, kind: str, cfg: StageConfig, shapes: _Shapes, cluster, mfu) -> None:
    from bielik.model.factory import build_config
    from bielik.model.upscale import (
        dus_layer_map,
        parse_layer_map,
        upscaled_config_dict,
    )

    out = p.output
    shape = None
    if kind == "model.init":
        extra = dict(cfg.overrides)
        if cfg.tokenizer and shapes.vocab.get(str(Path(cfg.tokenizer))):
            extra.setdefault("vocab_size", shapes.vocab[str(Path(cfg.tokenizer))])
        shape = build_config(cfg.preset, **extra).to_dict()
        p.model = shapes.describe(shape, f"preset {cfg.preset}")
    elif kind == "model.upscale":
        src = shapes.get(cfg.model)
        if src is None:
            p.notes.append(f"shape of {cfg.model} unknown (give the input a `preset:`)")
        else:
            n = int(src["num_hidden_layers"])
            layer_map = dus_layer_map(n, cfg.m) if cfg.m is not None else parse_layer_map(cfg.layer_map or [], n)
            shape = upscaled_config_dict(src, layer_map)
            before = shapes.describe(src, cfg.model)["parameters"]
            p.model = shapes.describe(shape, f"DUS of {cfg.model}: {n} -> {len(layer_map)} layers")
            p.notes.append(f"parameters {before:,} -> {p.model['parameters']:,}")
    elif kind == "model.swap_tokenizer":
        src = shapes.get(cfg.model)
        vocab = shapes.vocab.get(str(Path(cfg.tokenizer)))
        if src is not None:
            shape = dict(src)
            if vocab:
                shape["vocab_size"] = vocab
            else:
                p.notes.append(
                    f"vocabulary of {cfg.tokenizer} unknown (give the input a `vocab_size:`); kept {src['vocab_size']}"
                )
            p.model = shapes.describe(shape, f"{cfg.model} with tokenizer {cfg.tokenizer} ({cfg.init} init)")
    elif kind == "model.merge":
        shape = shapes.get(cfg.models[0])
        if shape is not None:
            p.model = shapes.describe(shape, f"linear merge of {len(cfg.models)} checkpoints")
    elif kind == "compress.prune":
        src = shapes.get(cfg.model)
        if src is not None:
            shape = _pruned(src, cfg)
            before = shapes.describe(src, cfg.model)["parameters"]
            p.model = shapes.describe(shape, f"pruned {cfg.model}")
            after = p.model["parameters"]
            p.notes.append(f"parameters {before:,} -> {after:,} ({after / before - 1:+.1%})")
    elif kind in ("tokenizer.train", "tokenizer.merge"):
        if getattr(cfg, "vocab_size", None) and out:
            shapes.vocab[str(Path(out))] = cfg.vocab_size
    elif kind == "data.pack":
        if out:
            shapes.seq_len[str(Path(out))] = cfg.seq_len
        if cfg.max_tokens:
            p.tokens, p.tokens_formula = cfg.max_tokens, "max_tokens"
    elif kind == "data.curate":
        p.commands = _curate_commands(recipe, p.name, cfg)
    elif kind == "compress.importance":
        src = shapes.get(cfg.model)
        if src is not None:
            p.model = shapes.describe(src, cfg.model)
            p.tokens = cfg.samples * cfg.ctx
            p.tokens_formula = f"{cfg.samples:,} windows x {cfg.ctx:,} tokens (forward only)"
            p.flops = shapes.flops_per_token(src, cfg.ctx) / 3 * p.tokens
    training = is_training(cfg)
    if training:
        shape = _plan_training(recipe, p, kind, cfg, shapes, cluster)
        p.commands = _train_commands(recipe, p.name, cfg, cluster)
    if shape is not None and out:
        shapes.set(out, shape, also_final=training)
    if p.flops is not None and mfu is not None and cluster is not None:
        p.gpu_hours = p.flops / (mfu * cluster.peak_tflops_bf16 * 1e12) / 3600.0
        p.wall_hours = p.gpu_hours / _world(cluster)
    if p.flops is not None and not (math.isfinite(p.flops) and p.flops > 0):
        raise ConfigError(f"recipe stage '{p.name}': computed FLOPs {p.flops} are not positive and finite")


def _plan_training(recipe: Recipe, p: StagePlan, kind: str, cfg, shapes: _Shapes, cluster) -> dict[str, Any] | None:
    e = cfg.train
    gb = _global_batch(e, cluster)
    model_path = cfg.student if kind == "compress.distill" else cfg.model
    shape = shapes.get(model_path)
    if kind in ("train.pretrain", "compress.distill"):
        seq = shapes.seq_len.get(str(Path(cfg.data)))
        if seq is None:
            p.notes.append(f"row length of {cfg.data} unknown (give the input a `seq_len:`)")
    else:
        seq = cfg.seq_len if kind != "train.grpo" else cfg.max_prompt_tokens + cfg.max_new_tokens
    if shape is None:
        p.notes.append(f"shape of {model_path} unknown (give the input a `preset:`)")
        return None
    p.model = shapes.describe(shape, model_path)
    if seq is None:
        return shape
    fpt = shapes.flops_per_token(shape, seq)
    if kind == "train.grpo":
        rollouts = math.ceil(e.steps / cfg.reuse)
        completions = rollouts * cfg.prompts_per_rollout * cfg.group_size
        p.tokens = completions * seq
        p.tokens_formula = (
            f"{rollouts:,} rollouts x {cfg.prompts_per_rollout} prompts x G={cfg.group_size} x "
            f"({cfg.max_prompt_tokens} + {cfg.max_new_tokens}) tokens (upper bound)"
        )
        frozen = (1 if cfg.beta > 0 else 0) + 1  # reference log-probs + sampling (forward passes)
        p.flops = p.tokens * (fpt * cfg.reuse + frozen * fpt / 3)
        return shape
    p.tokens = e.steps * gb * seq
    p.tokens_formula = (
        f"{e.steps:,} steps x {gb:,} sequences ({e.micro_batch_size} micro x {e.grad_accum} accum x "
        f"{_world(cluster)} GPUs) x {seq:,} tokens"
    )
    p.flops = fpt * p.tokens
    if kind == "train.dpo":
        p.flops += fpt / 3 * p.tokens  # frozen reference forward, once per row
    if kind == "compress.distill":
        teacher = shapes.get(cfg.teacher)
        if teacher is None:
            p.notes.append(f"shape of teacher {cfg.teacher} unknown: its forward passes are not counted")
        else:
            p.flops += shapes.flops_per_token(teacher, seq) / 3 * p.tokens
            n_teacher = shapes.describe(teacher, cfg.teacher)["parameters"]
            p.notes.append(f"teacher {cfg.teacher}: {n_teacher:,} parameters (forward only)")
    return shape


def _hours(x: float) -> str:
    """Hours with three significant figures (thousands separated)."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _num(x: float) -> str:
    for unit, div in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.0f}"


def format_dry_run(d: DryRun) -> str:
    """The dry run as text: per stage its status, model, token budget, compute and commands."""
    lines = [f"recipe {d.recipe}" + (f" ({d.source})" if d.source else "")]
    if d.cluster:
        c = d.cluster
        lines.append(
            f"cluster: {c['nodes']} node(s) x {c['gpus_per_node']} {c['gpu']} "
            f"(peak {c['peak_tflops_bf16']:g} TFLOP/s bf16), "
            f"MFU {d.mfu:.1%} ({d.mfu_source})"
        )
        lines.append(
            "GPU-hours = F x D / (MFU x peak x 3600), F = 6N + 12 L d T FLOPs per token "
            "(engine's MFU count), D = tokens"
        )
    else:
        lines.append("no `cluster:` block: FLOPs only, no GPU-hour estimate")
    to_provide = sorted({x for s in d.stages for x in s.inputs_to_provide})
    if to_provide:
        lines.append("inputs to provide:")
        lines += [f"  - {x}" for x in to_provide]
    for s in d.stages:
        lines.append("")
        lines.append(f"[{s.name}] {s.kind} -> {s.output or '-'}  {s.status}")
        if s.reads:
            lines.append(f"  reads: {', '.join(s.reads)}")
        if s.model:
            m = s.model
            lines.append(
                f"  model: {m['source']}: {m['layers']} layers, hidden {m['hidden_size']}, "
                f"FFN {m['intermediate_size']}, "
                f"heads {m['attention_heads']}/{m['kv_heads']} kv, vocab {m['vocab_size']}"
                f"{' (tied)' if m['tied_embeddings'] else ''}: "
                f"{m['parameters']:,} parameters ({m['parameters_human']})"
            )
        if s.tokens is not None:
            lines.append(f"  tokens: {_num(s.tokens)} = {s.tokens_formula}")
        if s.flops is not None:
            cost = f"  compute: {s.flops:.3e} FLOPs"
            if s.gpu_hours is not None:
                cost += f" -> {_hours(s.gpu_hours)} GPU-hours ({_hours(s.wall_hours)} h wall-clock on the cluster)"
            lines.append(cost)
        lines += [f"  note: {n}" for n in s.notes]
        lines += [f"  {c}" for c in s.commands]
    if d.cluster:
        lines.append("")
        lines.append(f"total: {_hours(d.gpu_hours)} GPU-hours")
    return "\n".join(lines)
