"""The engine's objective contract beyond language modelling: frozen models, the no-grad preparation
pass and its cache, per-metric denominators, rollout sources with replay, the adaptive LR, and a
checkpoint written before the contract grew."""

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

from bielik.model.lm_head import chunked_token_logprobs
from bielik.train import checkpoint as ckpt
from bielik.train.distributed import Dist
from bielik.train.engine import Engine
from bielik.train.objectives.base import Objective, ObjectiveOutput, decoder_hidden_states, lm_head_weight
from bielik.train.rollout import RolloutSource
from tests.conftest import engine_config

FIXTURES = Path(__file__).parent / "fixtures"
V = 16


def micro_llama(seed: int = 0, vocab: int = V) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=64,
        )
    )


def seq_logprob(model, ids: torch.Tensor) -> torch.Tensor:
    """Mean log p(x_t | x_<t) per sequence, (B,)."""
    h = decoder_hidden_states(model, ids)[:, :-1]
    return chunked_token_logprobs(h, lm_head_weight(model), ids[:, 1:], chunk=32).mean(-1)


class MarginToReference(Objective):
    """A sequence-level, non-LM objective: push each sequence's mean log-prob ``target`` nats above a
    frozen reference's: loss_i = (logp_θ(x_i) − logp_ref(x_i) − target)², one unit per sequence."""

    name = "margin_to_reference"

    def __init__(self, reference, target: float = 1.0):
        self.reference, self.target = reference, target
        self.prepare_calls = 0

    def frozen_models(self):
        return {"reference": self.reference}

    def prepare(self, batch):
        self.prepare_calls += 1
        assert not torch.is_grad_enabled()
        return {"ref_logp": seq_logprob(self.reference, batch["input_ids"]).float()}

    def loss_units(self, batch):
        return float(batch["input_ids"].shape[0])

    def __call__(self, model, batch):
        gap = seq_logprob(model, batch["input_ids"]) - batch["ref_logp"]
        loss = ((gap - self.target) ** 2).sum()
        n_tok = torch.tensor(float(batch["input_ids"][:, 1:].numel()))
        return ObjectiveOutput(
            loss, {"gap": gap.detach().sum(), "gap_per_token": (gap.detach().sum() * 0 + n_tok, n_tok)}
        )


class Rows:
    """Random token rows with example ids, resumable; ``iter_dataset`` lists every example once."""

    def __init__(self, n_examples=16, rows=4, length=12, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.data = torch.randint(0, V, (n_examples, length), generator=g)
        self.rows, self.cursor = rows, 0

    def _batch(self, idx):
        return {"input_ids": self.data[idx], "example_ids": torch.as_tensor(idx)}

    def next_step(self):
        idx = [(self.cursor * self.rows + i) % len(self.data) for i in range(self.rows)]
        self.cursor += 1
        return [self._batch(idx[:2]), self._batch(idx[2:])]

    def iter_dataset(self):
        for s in range(0, len(self.data), self.rows):
            yield self._batch(list(range(s, min(s + self.rows, len(self.data)))))

    def state_dict(self):
        return {"cursor": self.cursor}

    def load_state_dict(self, state):
        self.cursor = int(state["cursor"])


def _engine(out, objective, source, model=None, **cfg):
    e = engine_config(
        **{"steps": 12, "optim": {"lr": 1e-2, "min_lr": 1e-3, "warmup_steps": 1}, "logging": {"every": 1}, **cfg}
    )
    return Engine(e, model or micro_llama(0), objective, source, out, Dist(), seq_len=12)


def _train_rows(out: Path):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if json.loads(x)["kind"] == "train"]


def test_frozen_reference_never_trained_saved_or_optimised(tmp_path):
    ref = micro_llama(1)
    before = copy.deepcopy(ref.state_dict())
    obj = MarginToReference(ref)
    eng = _engine(
        tmp_path / "run", obj, Rows(), checkpoint={"every": 6, "save_final": False}, precision="bf16-autocast"
    )
    assert not ref.training and all(not p.requires_grad for p in ref.parameters())
    assert all(p.dtype == torch.bfloat16 for p in ref.parameters())  # frozen_dtype auto under bf16 autocast
    optimised = {id(p) for g in eng.optimizer.param_groups for p in g["params"]}
    assert not optimised & {id(p) for p in ref.parameters()}
    assert all(k.startswith("model.") for k in eng.module.state_dict())
    eng.fit()
    for k, v in ref.state_dict().items():
        assert torch.equal(v.float(), before[k].float().to(torch.bfloat16).float()), k
    saved = load_file(ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints") / "model.safetensors")
    assert set(saved) == set(micro_llama(0).state_dict()) - {"lm_head.weight"} or set(saved) == set(
        micro_llama(0).state_dict()
    )
    eng.export(tmp_path / "export")
    assert set(load_file(tmp_path / "export" / "model.safetensors")) == set(saved)
    rows = _train_rows(tmp_path / "run")
    assert rows[-1]["loss"] < 0.5 * rows[0]["loss"]  # the non-LM objective is optimised
    assert obj.prepare_calls == 12 * 2  # one no-grad pass per micro-batch


def test_metric_denominators_and_units(tmp_path):
    obj = MarginToReference(micro_llama(1))
    eng = _engine(tmp_path / "run", obj, Rows(), steps=1)
    rec = eng.train_step()
    assert rec["units"] == 4.0  # sequences, not tokens
    assert rec["gap_per_token"] == pytest.approx(1.0)  # its own denominator: Σ n_tok / Σ n_tok
    assert rec["real_tokens"] == 4 * 12
    src = Rows()
    batch = {k: v for b in src.next_step()[:1] for k, v in b.items()}
    with torch.no_grad():
        gap = seq_logprob(micro_llama(0), batch["input_ids"]) - seq_logprob(micro_llama(1), batch["input_ids"])
    assert math.isfinite(rec["gap"]) and abs(rec["gap"] - gap.mean().item()) < 1.0  # per-sequence mean, same scale


def test_prepare_cache_precompute_reused_and_identical(tmp_path):
    base = MarginToReference(micro_llama(1))
    _engine(tmp_path / "plain", base, Rows(), precision="fp32").fit()
    cached = MarginToReference(micro_llama(1))
    eng = _engine(tmp_path / "cached", cached, Rows(), precision="fp32", prepare={"cache": "auto", "precompute": True})
    summary = eng.fit()
    assert cached.prepare_calls == 4  # the precompute pass over the 16 examples, nothing during training
    assert summary["prepare_cache"]["misses"] == 4 and summary["prepare_cache"]["hits"] == 24
    assert [r["loss"] for r in _train_rows(tmp_path / "cached")] == [r["loss"] for r in _train_rows(tmp_path / "plain")]
    parts = list((tmp_path / "cached" / "prepared").glob("part-*.safetensors"))
    assert (
        parts
        and json.loads((tmp_path / "cached" / "prepared" / "meta.json").read_text())["objective"]
        == "margin_to_reference"
    )
    again = MarginToReference(micro_llama(1))  # a second run reads the cache from disk
    _engine(
        tmp_path / "again", again, Rows(), precision="fp32", prepare={"cache": str(tmp_path / "cached" / "prepared")}
    ).fit()
    assert again.prepare_calls == 0


def test_prepare_cache_refuses_other_objective(tmp_path):
    from bielik.errors import BielikError
    from bielik.train.prepare import PreparedCache

    PreparedCache(tmp_path / "c", {"objective": "a"})
    with pytest.raises(BielikError, match="delete it"):
        PreparedCache(tmp_path / "c", {"objective": "b"})


class Reinforce(Objective):
    """REINFORCE with a per-rollout mean baseline on sampled completions: −Σ_i A_i·Σ_t log π(y_it)."""

    name = "reinforce"

    def loss_units(self, batch):
        return float(batch["input_ids"].shape[0])

    def loss_tokens(self, batch):
        return int(batch["completion_mask"].sum())

    def __call__(self, model, batch):
        ids = batch["input_ids"]
        lp = chunked_token_logprobs(
            decoder_hidden_states(model, ids)[:, :-1], lm_head_weight(model), ids[:, 1:], chunk=64
        )
        seq = (lp * batch["completion_mask"][:, 1:]).sum(-1)
        loss = -(batch["advantage"] * seq).sum()
        return ObjectiveOutput(loss, {"reward": batch["reward"].sum()})


TARGET = 3


def make_rollout(calls):
    def run(policy_call, prompts, generator):
        calls.append(list(prompts))

        def sample(model):
            ids = torch.tensor([[p] for p in prompts])
            for _ in range(6):
                logits = model(input_ids=ids, use_cache=False).logits[:, -1].float()
                nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)
                ids = torch.cat([ids, nxt], 1)
            return ids

        ids = policy_call(sample)
        reward = (ids[:, 1:] == TARGET).float().mean(-1)
        mask = torch.zeros_like(ids, dtype=torch.float32)
        mask[:, 1:] = 1
        batch = {"input_ids": ids, "completion_mask": mask, "reward": reward, "advantage": reward - reward.mean()}
        return [batch]

    return run


def test_rollout_source_replays_and_learns(tmp_path):
    calls = []
    src = RolloutSource(list(range(4, 12)), make_rollout(calls), prompts_per_rollout=8, reuse=3, seed=0)
    eng = _engine(
        tmp_path / "run",
        Reinforce(),
        src,
        steps=30,
        optim={"lr": 3e-2, "min_lr": 3e-2, "warmup_steps": 0},
        checkpoint={"every": 4, "keep_last": 5, "save_final": False},
    )
    eng.fit()
    assert len(calls) == 10  # 30 steps / reuse 3
    rows = _train_rows(tmp_path / "run")
    assert all(rows[i]["reward"] == rows[i - i % 3]["reward"] for i in range(len(rows)))  # a rollout is replayed as is
    first, last = sum(r["reward"] for r in rows[:6]) / 6, sum(r["reward"] for r in rows[-6:]) / 6
    assert last > first + 0.3  # the policy learns to emit the rewarded token
    # checkpoints every 4 steps are deferred to the next rollout boundary (steps divisible by 3)
    steps = sorted(int(p.name.split("-")[1]) for p in ckpt.list_checkpoints(tmp_path / "run" / "checkpoints"))
    assert steps == [6, 9, 12, 18, 21, 24, 30][-5:] and all(s % 3 == 0 for s in steps)


class ReinforceWithReference(Reinforce):
    """Reinforce plus a no-grad preparation pass on the sampled tokens (what GRPO's KL needs)."""

    def __init__(self, reference):
        self.reference, self.prepared = reference, []

    def frozen_models(self):
        return {"reference": self.reference}

    def prepare(self, batch):
        self.prepared.append(batch["input_ids"].clone())
        return {"ref_logp": seq_logprob(self.reference, batch["input_ids"]).float()}


def test_replayed_rollout_is_prepared_once(tmp_path):
    """μ = 3: the preparation pass runs once per rollout; the replays reuse its outputs (same values)."""
    calls = []
    obj = ReinforceWithReference(micro_llama(1))
    src = RolloutSource(list(range(4, 12)), make_rollout(calls), prompts_per_rollout=8, reuse=3, seed=0)
    _engine(tmp_path / "run", obj, src, steps=9, checkpoint={"every": 100, "save_final": False}).fit()
    assert len(calls) == 3 and len(obj.prepared) == 3
    assert all(not torch.equal(a, b) for a, b in zip(obj.prepared, obj.prepared[1:]))  # one per new rollout


def test_rollout_resume_samples_the_same_rollouts(tmp_path):
    full_calls, part_calls = [], []
    full = RolloutSource(list(range(4, 12)), make_rollout(full_calls), 4, reuse=2, seed=5)
    _engine(tmp_path / "full", Reinforce(), full, steps=8, checkpoint={"every": 4, "save_final": False}).fit()
    part = RolloutSource(list(range(4, 12)), make_rollout(part_calls), 4, reuse=2, seed=5)
    first = _engine(tmp_path / "part", Reinforce(), part, steps=8, checkpoint={"every": 4, "save_final": False})
    part.bind_policy(first.policy_call)
    for _ in range(4):  # then "killed"
        first.train_step()
    first.save_checkpoint()
    assert part_calls == full_calls[:2]
    resumed_calls = []
    resumed = RolloutSource(list(range(4, 12)), make_rollout(resumed_calls), 4, reuse=2, seed=5)
    eng = _engine(tmp_path / "part", Reinforce(), resumed, steps=8, checkpoint={"every": 4, "save_final": False})
    eng.fit()
    assert resumed_calls == full_calls[2:]
    a = load_file(tmp_path / "full" / "checkpoints" / ckpt.checkpoint_name(8) / "model.safetensors")
    b = load_file(tmp_path / "part" / "checkpoints" / ckpt.checkpoint_name(8) / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_adaptive_lr_scales_with_loss_tokens(tmp_path):
    calls = []
    src = RolloutSource(list(range(4, 12)), make_rollout(calls), 4, reuse=1, seed=0)
    eng = _engine(
        tmp_path / "run",
        Reinforce(),
        src,
        steps=3,
        optim={
            "lr": 1e-2,
            "min_lr": 1e-2,
            "warmup_steps": 0,
            "schedule": "constant",
            "alr": {"enabled": True, "baseline_tokens": 96},
        },
    )
    eng.fit()
    for r in _train_rows(tmp_path / "run"):
        assert r["loss_tokens"] == 4 * 6
        assert r["lr_schedule"] == pytest.approx(1e-2)
        assert r["lr"] == pytest.approx(1e-2 * math.sqrt(24 / 96))


def test_checkpoint_from_before_the_contract_still_loads(tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(FIXTURES / "legacy_checkpoint", run / "checkpoints")
    from tests.train.fixtures.make_legacy_checkpoint import Rows as LegacyRows

    e = engine_config(
        steps=5,
        micro_batch_size=2,
        lm_head_chunk=8,
        eval={"every": 0, "at_start": False},
        checkpoint={"every": 0, "save_final": False},
        peak_flops=1e12,
    )
    from bielik.train.objectives import CausalLM

    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=64,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=32,
        )
    )
    eng = Engine(e, model, CausalLM(chunk=8), LegacyRows(), run, Dist(), seq_len=12)
    eng.maybe_resume()
    assert eng.step == 3 and eng.train.cursor == 3
    saved = load_file(FIXTURES / "legacy_checkpoint" / "step-00000003" / "model.safetensors")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())
    assert eng.optimizer.state  # Adam moments restored
    eng.fit()
    assert eng.step == 5


def _torchrun(tmp_path, nproc, strategy, cache):
    import os
    import subprocess
    import sys

    out = tmp_path / f"{strategy}-{nproc}-{cache}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BIELIK_NO_BAR": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        str(Path(__file__).parent / "dist_frozen_run.py"),
        str(out),
        strategy,
        "cache" if cache else "nocache",
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    return out


@pytest.mark.parametrize("strategy,cache", [("ddp", False), ("fsdp2", True)])
def test_frozen_reference_under_two_processes_matches_one(strategy, cache, tmp_path):
    one = _torchrun(tmp_path, 1, strategy, cache)
    two = _torchrun(tmp_path, 2, strategy, cache)
    l1, l2 = [r["loss"] for r in _train_rows(one)], [r["loss"] for r in _train_rows(two)]
    assert len(l2) == 6 and l2[-1] < l2[0]
    assert l2 == pytest.approx(l1, rel=2e-4)
    assert json.loads((two / "ref_is_sharded.json").read_text()) is (strategy == "fsdp2")  # DDP leaves it unwrapped
    saved = load_file(ckpt.latest_checkpoint(two / "checkpoints") / "model.safetensors")
    assert not any("reference" in k for k in saved) and set(saved) <= set(micro_llama(0).state_dict())
    if cache:
        assert len(list((two / "prepared").glob("part-r*-*.safetensors"))) == 2  # each rank wrote its share
