"""``bielik train grpo``: GRPO with verifiable rewards on the one engine (RECIPE §6.2).

Each optimizer step's batch is a *rollout*: ``prompts_per_rollout`` questions (split over the
processes), ``group_size`` = G completions of each sampled from the current policy with the shared
KV-cache sampler (:func:`bielik.model.generation.sample`, through
:meth:`~bielik.train.engine.Engine.policy_call`, in lockstep under FSDP2), rewarded by named
functions (:mod:`bielik.train.rewards`: ``accuracy`` of the final number in Polish or English
writing, ``format``), turned into group-normalised advantages and laid out as shared-prompt rows.
A rollout is replayed for ``reuse`` = μ optimizer steps (the sampling policy's log-probs are then
computed once, teacher-forced, when it is sampled); checkpoints are taken only between rollouts and
the sampler's generator is a function of (seed, rank, rollout number), so a resumed run samples the
rollouts an uninterrupted one would have (:class:`~bielik.train.rollout.RolloutSource`).

Simplifications relative to DeepSeekMath (stated here, as nanochat does): no reward model and no
process supervision (outcome rewards only); one rollout is one optimizer step (the paper splits a
rollout into several mini-batches); the reference stays the initial policy (the paper's iterative
GRPO refreshes it). Held-out questions are answered greedily before and after training
(``initial_*`` / ``final_*`` in ``metrics.json``: reward, accuracy, format, completion length).

``sampler=vllm`` (needs vLLM and a GPU) samples with vLLM instead (:mod:`bielik.train.vllm_rollout`).
"""

from __future__ import annotations

import importlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from bielik.artifacts import write_json, write_stage_record
from bielik.config import StageConfig
from bielik.errors import ConfigError, DataError
from bielik.log import get_logger
from bielik.train.config import engine_field
from bielik.train.group_rows import Group, completion_logprobs, group_batch, plan_rows
from bielik.train.losses import group_advantages
from bielik.train.rewards import RewardSample, get_rewards

log = get_logger(__name__)

GRPO_ENGINE = engine_field(
    "engine settings (GRPO defaults: lr 1e-5 constant after warm-up; micro_batch_size = prompts per micro-batch)",
    steps=50,
    micro_batch_size=4,
    optim={"lr": 1e-5, "min_lr": 1e-5, "warmup_steps": 0, "weight_decay": 0.0, "schedule": "constant"},
    eval={"every": 0, "at_start": False},
    logging={"every": 1},
)


class GRPOConfig(StageConfig):
    model: str = Field("runs/sft/final", description="HF model directory to train (the policy's starting point)")
    reference: str | None = Field(None, description="frozen reference model directory (default: a copy of `model`)")
    tokenizer: str | None = Field(None, description="tokenizer directory (default: the model's)")
    data: list[str] = Field(
        default_factory=lambda: ["shipped"],
        description="task JSONL/Parquet/HF-dataset paths ({question, answer}); 'shipped'",
    )
    output: str = "runs/grpo"
    system_prompt: str | None = Field(None, description="a system turn before every question")
    group_size: int = Field(8, ge=2, description="G: completions sampled per question")
    prompts_per_rollout: int = Field(8, ge=1, description="questions per rollout (all processes together)")
    reuse: int = Field(1, ge=1, description="μ: optimizer steps per rollout")
    max_new_tokens: int = Field(256, ge=1)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int | None = Field(None, ge=1)
    beta: float = Field(0.04, ge=0, description="KL weight (k3 estimator); 0 runs without a reference")
    clip_eps: float = Field(0.2, gt=0, description="ε: the ratio is clipped to [1 - ε, 1 + ε_high]")
    clip_eps_high: float | None = Field(None, gt=0, description="ε_high (default ε; DAPO's clip-higher uses 0.28)")
    scale_advantages: bool = Field(True, description="divide by the group's reward std (off: Dr. GRPO)")
    normalize: Literal["sequence", "token"] = Field(
        "sequence", description="per-completion token mean (paper) or token sum / tokens (DAPO)"
    )
    rewards: dict[str, float] = Field(
        default_factory=lambda: {"accuracy": 1.0, "format": 0.1}, description="reward name -> weight"
    )
    reward_modules: list[str] = Field(
        default_factory=list, description="modules to import first (they register rewards)"
    )
    share_prompt: bool = Field(True, description="run each prompt once for its G completions")
    max_prompt_tokens: int = Field(512, ge=8, description="questions whose rendered prompt is longer are skipped")
    max_tasks: int | None = Field(None, ge=1, description="use at most this many tasks (seeded sample)")
    val_fraction: float = Field(
        0.02, ge=0.0, lt=1.0, description="tasks held out (by hashed id) for the before/after evaluation"
    )
    eval_data: list[str] = Field(
        default_factory=list, description="held-out task files for the evaluation (instead of val_fraction)"
    )
    eval_tasks: int = Field(
        64, ge=0, description="held-out tasks answered greedily before and after training (0: none)"
    )
    sampler: Literal["bielik", "vllm"] = Field("bielik", description="bielik's KV-cache sampler, or vLLM (GPU)")
    seed: int = 0
    train: GRPO_ENGINE


@dataclass(frozen=True)
class Prompt:
    ids: np.ndarray
    answer: str
    question: str
    lang: str | None


def build_prompts(tokenizer, cfg: GRPOConfig) -> tuple[list[Prompt], list[Prompt], dict]:
    """Read, validate, sample, split and render the tasks: (train, held out, stats)."""
    from bielik.data.preferences import read_math_tasks, render_prompt, split_heldout

    tasks = list(read_math_tasks(cfg.data))
    if cfg.max_tasks is not None and len(tasks) > cfg.max_tasks:
        tasks = [tasks[i] for i in sorted(random.Random(cfg.seed).sample(range(len(tasks)), cfg.max_tasks))]
    train, val = split_heldout(tasks, 0.0 if cfg.eval_data else cfg.val_fraction, cfg.seed)
    if cfg.eval_data:
        val = list(read_math_tasks(cfg.eval_data))
    stats: dict[str, Any] = {"inputs": list(cfg.data), "read": len(tasks), "too_long": 0}
    parts = []
    for part in (train, val):
        out = []
        for t in part:
            ids = render_prompt(tokenizer, t.messages(cfg.system_prompt))
            if len(ids) > cfg.max_prompt_tokens:
                stats["too_long"] += 1
                continue
            out.append(Prompt(ids, t.answer, t.question, t.lang))
        parts.append(out)
    stats.update(train_tasks=len(parts[0]), val_tasks=len(parts[1]))
    if len(parts[0]) < cfg.prompts_per_rollout:
        raise DataError(
            f"{len(parts[0])} training tasks in {cfg.data}, fewer than one rollout of {cfg.prompts_per_rollout}"
        )
    return parts[0], parts[1][: cfg.eval_tasks], stats


# --------------------------------------------------------------------------------------- rollouts
class RolloutMaker:
    """``make_rollout`` for :class:`~bielik.train.rollout.RolloutSource`: sample, reward, advantages, rows."""

    def __init__(
        self,
        tokenizer,
        rewards: dict[str, float],
        params,
        group_size: int,
        micro_prompts: int,
        pad_id: int,
        share_prompt: bool = True,
        scale: bool = True,
        reuse: int = 1,
        chunk: int = 2048,
        sampler=None,
    ):
        self.tok, self.params, self.g, self.micro, self.pad = tokenizer, params, group_size, micro_prompts, pad_id
        self.weights = rewards
        self.fns = get_rewards(list(rewards))
        self.share, self.scale, self.reuse, self.chunk = share_prompt, scale, reuse, chunk
        self.sampler = sampler

    def score(self, prompts: list[Prompt], completions, per_prompt: int | None = None) -> dict[str, torch.Tensor]:
        """Per completion (prompt-major, ``per_prompt`` = G each): every named reward, their weighted sum,
        length, truncation."""
        per_prompt = per_prompt or self.g
        named = {n: [] for n in self.fns}
        for i, c in enumerate(completions):
            p = prompts[i // per_prompt]
            s = RewardSample(c.text, c.finish_reason != "length", p.answer, p.question, p.lang)
            for n, fn in self.fns.items():
                named[n].append(float(fn(s)))
        out = {f"reward_{n}": torch.tensor(v, dtype=torch.float32) for n, v in named.items()}
        out["reward"] = sum(self.weights[n] * out[f"reward_{n}"] for n in self.fns)
        out["completion_length"] = torch.tensor([len(c.token_ids) for c in completions], dtype=torch.float32)
        out["truncated"] = torch.tensor([c.finish_reason == "length" for c in completions], dtype=torch.float32)
        return out

    def sample(self, policy_call, prompt_ids: list[list[int]], generator):
        from bielik.model.generation import sample

        if self.sampler is not None:
            return self.sampler(policy_call, prompt_ids, self.params, generator)
        return policy_call(lambda m: sample(m, prompt_ids, self.params, self.tok, pad_id=self.pad, generator=generator))

    def micro_batch(
        self, prompts: list[Prompt], completions, per_seq: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Shared-prompt rows of ``prompts`` and their G completions each, per-completion values in row order."""
        comp = [np.asarray(c.token_ids, dtype=np.int64) for c in completions]
        if self.share:
            groups = [Group(p.ids, tuple(comp[i * self.g : (i + 1) * self.g])) for i, p in enumerate(prompts)]
        else:
            groups = [Group(prompts[j // self.g].ids, (comp[j],)) for j in range(len(comp))]
        b = group_batch(groups, plan_rows(groups, None, pack=False), self.pad)
        orig = b["seq_group"] * self.g + b["seq_part"] if self.share else b["seq_group"]
        b.update({k: v[orig] for k, v in per_seq.items()})
        r = per_seq["reward"].reshape(-1, self.g)
        b["group_reward_std"] = r.std(dim=1, unbiased=False)
        return b

    def __call__(self, policy_call, prompts: list[Prompt], generator: torch.Generator) -> list[dict[str, torch.Tensor]]:
        completions = self.sample(policy_call, [p.ids.tolist() for p in prompts for _ in range(self.g)], generator)
        per_seq = self.score(prompts, completions)
        per_seq["advantages"] = group_advantages(per_seq["reward"], self.g, self.scale)
        batches = []
        for s in range(0, len(prompts), self.micro):
            sl = slice(s * self.g, (s + self.micro) * self.g)
            b = self.micro_batch(prompts[s : s + self.micro], completions[sl], {n: v[sl] for n, v in per_seq.items()})
            if self.reuse > 1:  # π_old for the replays, teacher-forced now
                b["old_logps"] = policy_call(lambda m, b=b: completion_logprobs(m, _on(m, b), self.chunk)).float().cpu()
            batches.append(b)
        return batches


def _on(model, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    device = next(model.parameters()).device
    return {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}


def evaluate_prompts(
    policy_call, prompts: list[Prompt], maker: RolloutMaker, params, batch: int = 64
) -> dict[str, float]:
    """Greedy answers to ``prompts``: mean of every reward, their weighted sum and the completion length."""
    import dataclasses

    from bielik.model.generation import sample

    greedy = dataclasses.replace(params, temperature=0.0)
    sums: dict[str, float] = {}
    for s in range(0, len(prompts), batch):
        part = prompts[s : s + batch]
        comps = policy_call(
            lambda m, part=part: sample(m, [p.ids.tolist() for p in part], greedy, maker.tok, pad_id=maker.pad)
        )
        for k, v in maker.score(part, comps, per_prompt=1).items():
            sums[k] = sums.get(k, 0.0) + float(v.sum())
    return {k.removeprefix("reward_") if k != "reward" else "reward": v / max(1, len(prompts)) for k, v in sums.items()}


# ------------------------------------------------------------------------------------------ stage
def _check(cfg: GRPOConfig, world: int) -> None:
    e = cfg.train
    if e.prepare.cache:
        raise ConfigError(
            "train.prepare.cache: GRPO's reference log-probs depend on the sampled completions and are not "
            "cached on disk (they are kept for a rollout's replays in memory); set it to null"
        )
    if cfg.prompts_per_rollout % world:
        raise ConfigError(
            f"prompts_per_rollout ({cfg.prompts_per_rollout}) must be a multiple of the {world} processes"
        )
    if e.grad_accum != 1:
        log.warning("train.grad_accum is ignored by GRPO: a step accumulates over all micro-batches of its rollout")
    for mod in cfg.reward_modules:
        importlib.import_module(mod)
    get_rewards(list(cfg.rewards))


def grpo(cfg: GRPOConfig) -> dict:
    """Train ``cfg.model`` with GRPO; return the summary also written to ``metrics.json``."""
    from bielik.model.generation import SamplingParams, end_of_turn_ids
    from bielik.model.loading import load_hf_model
    from bielik.tokenizer.chat import ensure_chat_template
    from bielik.tokenizer.formats import load_hf_tokenizer
    from bielik.train.distributed import init_distributed
    from bielik.train.engine import Engine
    from bielik.train.objectives.grpo import GRPO
    from bielik.train.rollout import RolloutSource
    from bielik.train.sft import save_instruct_tokenizer

    e = cfg.train
    d = init_distributed(e.device, e.distributed)
    _check(cfg, d.world_size)
    tok_dir = Path(cfg.tokenizer or cfg.model)
    tokenizer = ensure_chat_template(load_hf_tokenizer(tok_dir), require_generation=False)
    train, val, stats = build_prompts(tokenizer, cfg)
    model = load_hf_model(cfg.model)
    reference = load_hf_model(cfg.reference or cfg.model) if cfg.beta > 0 else None
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    params = SamplingParams(
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        top_k=cfg.top_k,
        stop_token_ids=frozenset(end_of_turn_ids(tokenizer)),
        lockstep=d.enabled,
    )
    sampler = None
    if cfg.sampler == "vllm":
        from bielik.train.vllm_rollout import VLLMSampler

        sampler = VLLMSampler(cfg.model, tokenizer, seed=cfg.seed)
    maker = RolloutMaker(
        tokenizer,
        cfg.rewards,
        params,
        cfg.group_size,
        e.micro_batch_size,
        pad,
        cfg.share_prompt,
        cfg.scale_advantages,
        cfg.reuse,
        e.lm_head_chunk or 2048,
        sampler,
    )
    source = RolloutSource(train, maker, cfg.prompts_per_rollout, cfg.reuse, d.rank, d.world_size, cfg.seed)
    objective = GRPO(reference, cfg.beta, cfg.clip_eps, cfg.clip_eps_high, cfg.normalize, e.lm_head_chunk or 2048)
    seq_len = int(max(len(p.ids) for p in train)) + cfg.max_new_tokens
    engine = Engine(e, model, objective, source, cfg.output, d, seq_len=seq_len, run_config=cfg)
    if d.is_main:
        log.info(
            "GRPO of %s on %s: %d tasks, G=%d, %d prompts per rollout, mu=%d, beta %g; %d steps",
            cfg.model,
            cfg.data,
            len(train),
            cfg.group_size,
            cfg.prompts_per_rollout,
            cfg.reuse,
            cfg.beta,
            e.steps,
        )
        Path(cfg.output).mkdir(parents=True, exist_ok=True)
        write_json(Path(cfg.output) / "data.json", stats)
    mine = val[: len(val) // d.world_size * d.world_size][
        d.rank :: d.world_size
    ]  # the same number on every rank (lockstep)
    from bielik.train import checkpoint as ckpt

    fresh = e.checkpoint.resume == "never" or ckpt.latest_checkpoint(engine.ckpt_root) is None
    before = _evaluate(engine, mine, maker, params, d) if mine and fresh else None
    summary = engine.fit()
    after = _evaluate(engine, mine, maker, params, d) if mine else None
    summary.update({f"initial_{k}": v for k, v in (before or {}).items()})
    summary.update({f"final_{k}": v for k, v in (after or {}).items()})
    summary["data"] = stats
    if e.checkpoint.save_final:
        final = engine.export(Path(cfg.output) / "final", extra_dirs=[tok_dir])
        if d.is_main:
            save_instruct_tokenizer(tokenizer, final)  # <|im_end|> as EOS, as after SFT
    if d.is_main:
        inputs = {"model": cfg.model, "data": ",".join(cfg.data)}
        write_stage_record(cfg.output, "train.grpo", cfg, inputs=inputs, metrics=summary)
    return summary


def _evaluate(engine, prompts, maker, params, d) -> dict[str, float]:
    from bielik.train.distributed import all_reduce_sum

    res = evaluate_prompts(engine.policy_call, prompts, maker, params)
    keys = sorted(res)
    vec = torch.tensor([res[k] * len(prompts) for k in keys] + [float(len(prompts))], dtype=torch.float64)
    vec = all_reduce_sum(vec.to(engine.device), d).cpu().tolist()
    out = {k: v / vec[-1] for k, v in zip(keys, vec[:-1])}
    log.info("held-out greedy answers (%d): %s", int(vec[-1]), ", ".join(f"{k} {v:.3f}" for k, v in out.items()))
    return out
