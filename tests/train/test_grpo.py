"""GRPO: group advantages, the clipped objective, the k3 KL estimator, rollouts (rewards, order, π_old), the stage
(learns a reward, shipped data), and resuming at a rollout boundary with the sampler's RNG restored."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from bielik.errors import BielikError, ConfigError
from bielik.model.generation import Completion, SamplingParams
from bielik.model.loading import load_hf_model
from bielik.tokenizer.chat import ensure_chat_template
from bielik.tokenizer.formats import load_hf_tokenizer
from bielik.train.group_rows import Group, group_batch
from bielik.train.grpo import GRPOConfig, Prompt, RolloutMaker, grpo
from bielik.train.losses import (
    clipped_policy_loss,
    group_advantages,
    k3_kl,
    per_sequence_mean,
)
from bielik.train.objectives.grpo import GRPO
from bielik.train.rewards import REWARDS, reward


# ------------------------------------------------------------------------------------- pure maths
def test_group_advantages():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.3, 0.3, 0.3, 0.3])
    adv = group_advantages(r, 4, eps=0.0)
    assert adv[:4].tolist() == pytest.approx([1.0, -1.0, -1.0, 1.0])  # (r - 0.5) / 0.5 (population std)
    assert adv[4:].tolist() == [0.0, 0.0, 0.0, 0.0]  # equal rewards: exactly zero, not 0/eps noise
    assert group_advantages(r, 4, scale=False)[:4].tolist() == pytest.approx([0.5, -0.5, -0.5, 0.5])
    g = torch.Generator().manual_seed(0)
    x = torch.rand(24, generator=g)
    a = group_advantages(x, 6).reshape(4, 6)
    assert torch.allclose(a.mean(1), torch.zeros(4), atol=1e-6) and torch.allclose(
        a.std(1, unbiased=False), torch.ones(4), atol=1e-3
    )
    with pytest.raises(ValueError):
        group_advantages(torch.zeros(5), 2)


def test_clipping():
    logp = torch.log(torch.tensor([1.5, 1.5, 0.5, 0.5, 1.1])).requires_grad_()
    old = torch.zeros(5)
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0, 2.0])
    out = clipped_policy_loss(logp, old, adv, eps_low=0.2)
    # ρ = 1.5 > 1.2 with Â > 0 and ρ = 0.5 < 0.8 with Â < 0: clipped, no gradient; the other cases are not
    assert out.clipped.tolist() == [True, False, False, True, False]
    assert out.loss.tolist() == pytest.approx([-1.2, 1.5, -0.5, 0.8, -2.2])
    out.loss.sum().backward()
    assert logp.grad.tolist() == pytest.approx([0.0, 1.5, -0.5, 0.0, -2.2])  # d(-ρÂ)/dlogp = -ρÂ
    high = clipped_policy_loss(logp.detach(), old, adv, eps_low=0.2, eps_high=0.6)
    assert high.clipped.tolist() == [False, False, False, True, False]  # clip-higher lets ρ = 1.5 through


def test_k3_kl_estimator():
    assert k3_kl(torch.tensor([-1.0]), torch.tensor([-1.0])).item() == 0.0
    d = torch.linspace(-5, 5, 101)
    assert (k3_kl(torch.zeros(101), d) >= 0).all()
    assert torch.allclose(k3_kl(torch.zeros(101), d), torch.exp(d) - d - 1)
    # unbiased: E_{x~p}[k3] = KL(p || q)
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(8, generator=g), 0)
    q = torch.softmax(torch.randn(8, generator=g), 0)
    x = torch.multinomial(p, 400_000, replacement=True, generator=g)
    est = k3_kl(p.log()[x], q.log()[x]).mean().item()
    assert est == pytest.approx(float((p * (p / q).log()).sum()), rel=0.02)


def test_kl_term_and_sequence_mean():
    logp = torch.tensor([-1.0, -2.0, -0.5]).requires_grad_()
    out = clipped_policy_loss(logp, logp.detach(), torch.zeros(3), ref_logps=torch.tensor([-1.5, -1.0, -0.5]), beta=0.1)
    assert out.loss.tolist() == pytest.approx((0.1 * k3_kl(logp.detach(), torch.tensor([-1.5, -1.0, -0.5]))).tolist())
    assert per_sequence_mean(torch.tensor([1.0, 3.0, 5.0]), torch.tensor([0, 0, 1]), 2).tolist() == [2.0, 5.0]


# ------------------------------------------------------------------------------------- objective
@pytest.fixture(scope="module")
def tok(tiny_tokenizer):
    return ensure_chat_template(load_hf_tokenizer(tiny_tokenizer))


def _batch(rng, n_groups=3, g=3, share=True):
    prompts = [rng.integers(5, 100, rng.integers(2, 6)) for _ in range(n_groups)]
    comps = [rng.integers(5, 100, rng.integers(1, 5)) for _ in range(n_groups * g)]
    if share:
        groups = [Group(p, tuple(comps[i * g : (i + 1) * g])) for i, p in enumerate(prompts)]
    else:
        groups = [Group(prompts[j // g], (comps[j],)) for j in range(len(comps))]
    b = group_batch(groups, [[i] for i in range(len(groups))], pad_id=0)
    return b, prompts, comps


@pytest.mark.parametrize("normalize", ["sequence", "token"])
def test_objective_equals_naive_policy_gradient(tiny_model, normalize):
    """μ = 1 (π_old = πθ.detach()), β > 0: the loss and its gradient against one forward per completion."""
    rng = np.random.default_rng(0)
    b, prompts, comps = _batch(rng)
    adv = torch.tensor(rng.normal(size=len(comps)), dtype=torch.float32)
    b["advantages"] = adv[b["seq_group"] * 3 + b["seq_part"]]
    b.update(group_reward_std=torch.ones(3), reward=torch.zeros(9))
    policy, ref = load_hf_model(tiny_model), load_hf_model(tiny_model)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    obj = GRPO(ref, beta=0.1, normalize=normalize)
    with torch.no_grad():
        b.update(obj.prepare(b))
    out = obj(policy, b)
    (ga,) = torch.autograd.grad(out.loss_sum, [policy.model.layers[1].self_attn.q_proj.weight])

    def logps(m, prompt, comp):
        ids = torch.from_numpy(np.concatenate([prompt, comp]))[None]
        return (
            m(input_ids=ids, use_cache=False)
            .logits[0, :-1]
            .float()
            .log_softmax(-1)
            .gather(1, ids[0, 1:, None])
            .squeeze(1)[len(prompt) - 1 :]
        )

    total = 0.0
    order = (b["seq_group"] * 3 + b["seq_part"]).tolist()
    for j in order:
        lp = logps(policy, prompts[j // 3], comps[j])
        with torch.no_grad():
            rl = logps(ref, prompts[j // 3], comps[j])
        tok_loss = -adv[j] * torch.exp(lp - lp.detach()) + 0.1 * k3_kl(lp, rl)
        total = total + (tok_loss.mean() if normalize == "sequence" else tok_loss.sum())
    (gb,) = torch.autograd.grad(total, [policy.model.layers[1].self_attn.q_proj.weight])
    assert out.loss_sum.item() == pytest.approx(total.item(), rel=1e-4, abs=1e-6)
    assert (ga - gb).abs().max() <= 1e-4 * gb.abs().max()
    assert obj.loss_units(b) == (9 if normalize == "sequence" else b["target_ids"].shape[0])
    assert out.metrics["kl"][0].item() > 0 and out.metrics["clip_fraction"][0].item() == 0


def test_reference_only_with_kl():
    b, _, _ = _batch(np.random.default_rng(1))
    assert GRPO(None, beta=0.0).frozen_models() == {} and GRPO(None, beta=0.0).prepare(b) == {}
    with pytest.raises(BielikError, match="needs a reference"):
        GRPO(None, beta=0.1)


# -------------------------------------------------------------------------------------- rollouts
def _fake_sampler(texts_by_prompt, tok):
    """Completions fixed per prompt text (cycled), as the shared sampler would return them."""

    def sampler(policy_call, prompt_ids, params, generator):
        out = []
        for i, ids in enumerate(prompt_ids):
            choices = texts_by_prompt[tuple(ids)]
            text, finished = choices[i % len(choices)]
            toks = tok(text, add_special_tokens=False).input_ids + (
                [tok.convert_tokens_to_ids("<|im_end|>")] if finished else []
            )
            out.append(Completion(toks, text, "eos" if finished else "length"))
        return out

    return sampler


@pytest.mark.parametrize("share", [True, False])
def test_rollout_rewards_advantages_and_order(tok, tiny_model, share):
    from bielik.data.preferences import render_prompt

    p1 = Prompt(render_prompt(tok, [{"role": "user", "content": "Ile to 2+2?"}]), "4", "Ile to 2+2?", "pl")
    p2 = Prompt(render_prompt(tok, [{"role": "user", "content": "What is 1,000 + 234?"}]), "1234", "", "en")
    texts = {
        tuple(p1.ids.tolist()): [("2+2=4. Odpowiedź: 4", True), ("Odpowiedź: 5", True)],
        tuple(p2.ids.tolist()): [("The answer is 1,234.", True), ("The answer is 1 234", False)],
    }
    maker = RolloutMaker(
        tok,
        {"accuracy": 1.0, "format": 0.5},
        SamplingParams(max_new_tokens=8),
        group_size=4,
        micro_prompts=1,
        pad_id=0,
        share_prompt=share,
        reuse=2,
        sampler=_fake_sampler(texts, tok),
    )
    policy = load_hf_model(tiny_model)
    batches = maker(lambda fn: fn(policy), [p1, p2], torch.Generator().manual_seed(0))
    assert len(batches) == 2
    b1, b2 = batches
    assert b1["reward_accuracy"].tolist() == [1, 0, 1, 0] and b1["reward"].tolist() == [1.5, 0.5, 1.5, 0.5]
    assert b2["reward_accuracy"].tolist() == [1, 1, 1, 1] and b2["reward_format"].tolist() == [1, 0, 1, 0]
    assert b1["advantages"].tolist() == pytest.approx([1, -1, 1, -1], abs=1e-3)
    assert b2["truncated"].tolist() == [0, 1, 0, 1]
    assert b1["group_reward_std"].tolist() == pytest.approx([0.5])
    # π_old for the replays: teacher-forced log-probs of exactly the sampled tokens
    with torch.no_grad():
        from bielik.train.group_rows import completion_logprobs

        assert torch.allclose(b1["old_logps"], completion_logprobs(policy, b1), atol=1e-6)
    seqs = [b1["target_ids"][b1["target_seq"] == s].tolist() for s in range(4)]
    assert tok.decode(seqs[1]) == "Odpowiedź: 5<|im_end|>"


# ----------------------------------------------------------------------------------------- stage
def _cfg(tiny_model, out, steps=4, **kw):
    train = {
        "steps": steps,
        "micro_batch_size": 2,
        "lm_head_chunk": 64,
        "checkpoint": {"every": 1, "keep_last": 10},
        "optim": {"lr": 1e-3, "min_lr": 1e-3},
    }
    train.update(kw.pop("train", {}))
    base = dict(
        model=str(tiny_model),
        output=str(out),
        max_tasks=64,
        group_size=3,
        prompts_per_rollout=4,
        max_new_tokens=6,
        eval_tasks=4,
        val_fraction=0.1,
        seed=3,
        train=train,
    )
    return GRPOConfig(**{**base, **kw})


def _rows(path: Path):
    return [r for r in map(json.loads, (path / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "train"]


def test_stage_on_shipped_math(tiny_model, tmp_path):
    summary = grpo(_cfg(tiny_model, tmp_path / "run", steps=2, reuse=2))
    rows = _rows(tmp_path / "run")
    assert len(rows) == 2 and rows[0]["reward"] == rows[1]["reward"]  # one rollout, replayed
    assert {
        "reward",
        "reward_accuracy",
        "reward_format",
        "completion_length",
        "truncated",
        "kl",
        "clip_fraction",
        "group_reward_std",
        "zero_std_groups",
    } <= set(rows[0])
    assert rows[0]["units"] == 12 and 0 < rows[0]["completion_length"] <= 6
    assert {"initial_accuracy", "final_accuracy", "initial_format", "final_reward"} <= set(summary)
    assert json.loads((tmp_path / "run" / "lineage.json").read_text())["stage"] == "train.grpo"
    assert (tmp_path / "run" / "final" / "chat_template.jinja").is_file() or load_hf_tokenizer(
        tmp_path / "run" / "final"
    ).chat_template
    with pytest.raises(ConfigError, match="not cached on disk"):
        grpo(_cfg(tiny_model, tmp_path / "bad", train={"prepare": {"cache": "auto"}}))
    with pytest.raises(BielikError, match="sampler=vllm needs"):
        grpo(_cfg(tiny_model, tmp_path / "vllm", sampler="vllm"))


def test_stage_learns_a_reward(tiny_model, tmp_path):
    @reward("test_letter_a")
    def letter_a(sample):  # share of the letter 'a' in the completion: continuous, so groups differ
        return sample.text.count("a") / max(1, len(sample.text))

    try:
        grpo(
            _cfg(
                tiny_model,
                tmp_path / "run",
                steps=30,
                rewards={"test_letter_a": 1.0},
                beta=0.0,
                group_size=6,
                max_new_tokens=8,
                eval_tasks=0,
                train={"optim": {"lr": 1e-2, "min_lr": 1e-2}, "checkpoint": {"every": 0}},
            )
        )
    finally:
        REWARDS.pop("test_letter_a")
    rows = _rows(tmp_path / "run")
    first, last = sum(r["reward"] for r in rows[:5]) / 5, sum(r["reward"] for r in rows[-5:]) / 5
    assert last > first + 0.1, (first, last)


def test_resume_at_a_rollout_boundary_is_bit_identical(tiny_model, tmp_path):
    """A run stopped after its 2nd rollout (μ = 2: step 4) and resumed samples the rollouts an uninterrupted run
    samples (the generator of rollout k is a function of the seed, the rank and k) and ends with the same weights."""
    grpo(_cfg(tiny_model, tmp_path / "full", steps=8, reuse=2, eval_tasks=0))
    grpo(_cfg(tiny_model, tmp_path / "part", steps=4, reuse=2, eval_tasks=0))  # "killed" after step 4 (constant LR)
    summary = grpo(_cfg(tiny_model, tmp_path / "part", steps=8, reuse=2, eval_tasks=0))
    assert summary["start_step"] == 4
    full, part = _rows(tmp_path / "full"), _rows(tmp_path / "part")
    assert [r["reward"] for r in part] == [r["reward"] for r in full]
    a = load_file(tmp_path / "full" / "final" / "model.safetensors")
    b = load_file(tmp_path / "part" / "final" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not math.isnan(full[-1]["loss"])


def test_align_recipe_runs_dpo_then_grpo_on_shipped_data(tiny_model, tmp_path):
    from bielik.recipe import load_recipe, run_recipe

    recipe = Path(__file__).resolve().parents[2] / "recipes" / "align-tiny.yaml"
    overrides = [
        f"run_dir={tmp_path}",
        f"dpo.model={tiny_model}",
        "dpo.max_pairs=40",
        "dpo.seq_len=512",
        "dpo.train.steps=2",
        "dpo.train.micro_batch_size=4",
        "dpo.train.eval.batches=1",
        "grpo.max_tasks=32",
        "grpo.group_size=2",
        "grpo.prompts_per_rollout=2",
        "grpo.max_new_tokens=4",
        "grpo.eval_tasks=2",
        "grpo.train.steps=1",
        "grpo.train.micro_batch_size=2",
        "chat.max_new_tokens=4",
    ]
    results = run_recipe(load_recipe(recipe, overrides))
    assert results["dpo"]["steps"] == 2 and results["grpo"]["steps"] == 1 and len(results["chat"]) == 2
    assert json.loads((tmp_path / "grpo" / "lineage.json").read_text())["stage"] == "train.grpo"


def test_task_records_formats_and_errors(tmp_path, tiny_model):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset

    from bielik.data.preferences import read_math_tasks, read_preferences
    from bielik.errors import DataError

    pq.write_table(
        pa.Table.from_pylist([{"question": "Ile to 2 + 2?", "answer": "4"}, {"question": "3/4 + 1/4?", "answer": "1"}]),
        tmp_path / "tasks.parquet",
    )
    Dataset.from_list([{"prompt": "Stolica?", "chosen": "Warszawa.", "rejected": "Kraków."}]).save_to_disk(
        str(tmp_path / "prefs")
    )
    assert [t.answer for t in read_math_tasks([tmp_path / "tasks.parquet"])] == ["4", "1"]
    assert next(iter(read_preferences([tmp_path / "prefs"]))).chosen == "Warszawa."
    assert {t.lang for t in read_math_tasks(["shipped:en"])} == {"en"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "Ile?", "answer": "4"}\n{"question": "Ile?", "answer": "dużo"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl:2: answer: expected one number"):
        list(read_math_tasks([bad]))
    with pytest.raises(DataError, match=r"bad.jsonl:2: answer"):
        grpo(_cfg(tiny_model, tmp_path / "out", data=[str(bad)]))
    assert not (tmp_path / "out").exists()  # validated before anything is written
