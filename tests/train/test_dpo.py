"""DPO-P: the pure loss (hand-computed values, the penalty, large λ), TRL's sigmoid loss as an oracle at λ = 0,
pair weights, the data rules, the stage on shipped data and an exact resume after kill -9."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from bielik.data.preferences import encode_pair, read_preferences
from bielik.errors import DataError
from bielik.model.loading import load_hf_model
from bielik.tokenizer.chat import ensure_chat_template
from bielik.tokenizer.formats import load_hf_tokenizer
from bielik.train.dpo import DPOConfig, PairBatches, dpo
from bielik.train.losses import dpo_positive_loss
from bielik.train.objectives.dpo import DPOPositive


# ------------------------------------------------------------------------------------- pure maths
def test_loss_hand_computed():
    # h_w = -10 - (-9) = -1, h_l = -12 - (-11) = -1, p = 1; z = 0.5·(-1 + 1 - 2·1) = -1
    out = dpo_positive_loss(
        torch.tensor([-10.0, -8.0]),
        torch.tensor([-12.0, -12.0]),
        torch.tensor([-9.0, -9.0]),
        torch.tensor([-11.0, -11.0]),
        beta=0.5,
        lam=2.0,
    )
    # second pair: h_w = 1, h_l = -1, p = 0; z = 0.5·2 = 1
    assert out.losses.tolist() == pytest.approx([math.log(1 + math.e), math.log(1 + math.exp(-1))], rel=1e-6)
    assert out.penalty.tolist() == [1.0, 0.0]
    assert out.chosen_rewards.tolist() == [-0.5, 0.5] and out.rejected_rewards.tolist() == [-0.5, -0.5]


def test_lambda_zero_is_sigmoid_dpo_on_random_tensors():
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(64, generator=g) * 20 - 100 for _ in range(4))
    out = dpo_positive_loss(pc, pr, rc, rr, beta=0.3, lam=0.0)
    assert torch.allclose(out.losses, -F.logsigmoid(0.3 * ((pc - pr) - (rc - rr))), atol=1e-6)


def test_penalty_zero_above_reference_and_linear_below():
    ref = torch.full((7,), -50.0)
    delta = torch.tensor([3.0, 1.0, 0.0, -1.0, -2.0, -4.0, -8.0])  # log πθ(y_w) − log π_ref(y_w)
    out = dpo_positive_loss(ref + delta, torch.full((7,), -60.0), ref, torch.full((7,), -60.0), beta=0.1, lam=5.0)
    assert out.penalty.tolist() == [0.0, 0.0, 0.0, 1.0, 2.0, 4.0, 8.0]
    base = dpo_positive_loss(ref + delta, torch.full((7,), -60.0), ref, torch.full((7,), -60.0), beta=0.1, lam=0.0)
    assert torch.equal(out.losses[:3], base.losses[:3])  # no penalty at or above the reference
    assert (out.losses[3:] > base.losses[3:]).all()
    # d loss / d log πθ(y_w): -β·σ(-z) above the reference, -β·(1 + λ)·σ(-z) below it
    pc = (ref + delta).requires_grad_()
    dpo_positive_loss(
        pc, torch.full((7,), -60.0), ref, torch.full((7,), -60.0), beta=0.1, lam=5.0
    ).losses.sum().backward()
    z = 0.1 * (delta - (-60.0 + 60.0) - 5.0 * torch.clamp(-delta, min=0))
    expected = -0.1 * torch.where(delta < 0, torch.tensor(6.0), torch.tensor(1.0)) * torch.sigmoid(-z)
    assert torch.allclose(pc.grad, expected, atol=1e-6)


def test_large_lambda_stays_finite():
    pc = torch.tensor([-500.0, -1e4], requires_grad=True)  # far below the reference
    out = dpo_positive_loss(
        pc,
        torch.tensor([-400.0, -400.0]),
        torch.tensor([-100.0, -100.0]),
        torch.tensor([-400.0, -400.0]),
        beta=0.1,
        lam=1e4,
    )
    out.losses.sum().backward()
    assert torch.isfinite(out.losses).all() and torch.isfinite(pc.grad).all()
    assert out.losses[1].item() == pytest.approx(
        0.1 * (9900 + 1e4 * 9900), rel=1e-4
    )  # linear, not exp: softplus(-z) ≈ -z
    assert pc.grad.abs().max() <= 0.1 * (1 + 1e4) + 1e-3  # the gradient is bounded by β(1 + λ)


# ------------------------------------------------------------------------------------- objective
@pytest.fixture(scope="module")
def tok(tiny_tokenizer):
    return ensure_chat_template(load_hf_tokenizer(tiny_tokenizer))


@pytest.fixture(scope="module")
def pairs(tok):
    return [encode_pair(tok, p) for p, _ in zip(read_preferences(["shipped"]), range(6))]


def _perturbed(model_dir, seed=0):
    torch.manual_seed(seed)
    m = load_hf_model(model_dir)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return m


def _trl_batch(pairs):
    """TRL's concatenated batch: prompt + chosen rows, then prompt + rejected rows, right-padded."""
    seqs = [np.concatenate([p.prompt, p.chosen]) for p in pairs] + [
        np.concatenate([p.prompt, p.rejected]) for p in pairs
    ]
    width = max(len(s) for s in seqs)
    ids, am, cm = (torch.zeros(len(seqs), width, dtype=torch.long) for _ in range(3))
    for i, s in enumerate(seqs):
        ids[i, : len(s)], am[i, : len(s)] = torch.from_numpy(s), 1
        cm[i, len(pairs[i % len(pairs)].prompt) : len(s)] = 1
    return {"input_ids": ids, "attention_mask": am, "completion_mask": cm}


@pytest.mark.parametrize("share_prompt", [True, False])
def test_lambda_zero_equals_trl_sigmoid_dpo(tiny_model, tok, pairs, tmp_path, share_prompt):
    """The same pairs, policy and reference: bielik's DPO-P at λ = 0 vs TRL's DPOTrainer (sigmoid loss)."""
    trl = pytest.importorskip("trl")
    from datasets import Dataset

    policy, ref = _perturbed(tiny_model), load_hf_model(tiny_model)
    args = trl.DPOConfig(
        output_dir=str(tmp_path / "trl"),
        use_cpu=True,
        report_to=[],
        beta=0.1,
        loss_type=["sigmoid"],
        bf16=False,
        gradient_checkpointing=False,
    )
    trainer = trl.DPOTrainer(
        model=policy,
        ref_model=ref,
        args=args,
        processing_class=tok,
        train_dataset=Dataset.from_list([{"prompt": "a", "chosen": "b", "rejected": "c"}]),
    )
    trainer.model.train()
    expected = trainer._compute_loss(trainer.model, _trl_batch(pairs), False).item()
    margin = trainer._metrics["train"]["rewards/margins"][-1]
    batch = PairBatches(pairs, len(pairs), 1, 0, 1024, share_prompt=share_prompt, for_training=False).batch(
        np.arange(len(pairs))
    )
    obj = DPOPositive(load_hf_model(tiny_model), beta=0.1, lam=0.0)
    with torch.no_grad():
        batch.update(obj.prepare(batch))
    out = obj(policy, batch)
    assert out.loss_sum.item() / len(pairs) == pytest.approx(expected, rel=1e-4)
    assert out.metrics["margin"][0].item() / len(pairs) == pytest.approx(margin, rel=1e-3, abs=1e-5)


def test_objective_gradient_equals_naive_and_weights_scale_pairs(tiny_model, pairs):
    policy = _perturbed(tiny_model)
    w = torch.tensor([1.0, 0.5, 0.7, 1.0, 0.5, 1.0])
    weighted = [type(p)(p.prompt, p.chosen, p.rejected, float(w[i]), p.key) for i, p in enumerate(pairs)]
    batch = PairBatches(weighted, 6, 1, 0, 1024, for_training=False).batch(np.arange(6))
    obj = DPOPositive(load_hf_model(tiny_model), beta=0.2, lam=3.0)
    with torch.no_grad():
        batch.update(obj.prepare(batch))
    out = obj(policy, batch)
    param = policy.model.layers[0].mlp.up_proj.weight
    (ga,) = torch.autograd.grad(out.loss_sum, [param])

    def logp(m, prompt, completion):  # naive: one full forward per sequence
        ids = torch.from_numpy(np.concatenate([prompt, completion]))[None]
        lp = (
            m(input_ids=ids, use_cache=False)
            .logits[0, :-1]
            .float()
            .log_softmax(-1)
            .gather(1, ids[0, 1:, None])
            .squeeze(1)
        )
        return lp[len(prompt) - 1 :].sum()

    ref = load_hf_model(tiny_model)
    with torch.no_grad():
        rc = torch.stack([logp(ref, p.prompt, p.chosen) for p in pairs])
        rr = torch.stack([logp(ref, p.prompt, p.rejected) for p in pairs])
    pc = torch.stack([logp(policy, p.prompt, p.chosen) for p in pairs])
    pr = torch.stack([logp(policy, p.prompt, p.rejected) for p in pairs])
    naive = (dpo_positive_loss(pc, pr, rc, rr, beta=0.2, lam=3.0).losses * w).sum()
    (gb,) = torch.autograd.grad(naive, [param])
    assert out.loss_sum.item() == pytest.approx(naive.item(), rel=1e-5)
    assert (ga - gb).abs().max() <= 1e-4 * gb.abs().max(), (ga - gb).abs().max()
    assert obj.loss_units(batch) == 6
    assert DPOPositive(ref, normalize="weights").loss_units(batch) == pytest.approx(float(w.sum()))


# ------------------------------------------------------------------------------------------ data
def _write(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


GOOD = {"prompt": "Stolica Polski?", "chosen": "Warszawa.", "rejected": "Kraków."}


@pytest.mark.parametrize(
    "bad,message",
    [
        ({"prompt": "x", "chosen": "a"}, "data.jsonl:2: rejected: expected the assistant's reply"),
        ({"prompt": "x", "chosen": " ", "rejected": "b"}, "data.jsonl:2: chosen: expected the assistant's reply"),
        ({"chosen": "a", "rejected": "b"}, "data.jsonl:2: prompt: expected the user's request"),
        (
            {
                "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
                "chosen": "a",
                "rejected": "b",
            },
            "data.jsonl:2: messages[1].role: expected the context to end with a 'user' turn",
        ),
        (
            {"messages": [{"role": "bot", "content": "x"}], "chosen": "a", "rejected": "b"},
            "data.jsonl:2: messages[0].role: expected 'user'",
        ),
        ({**GOOD, "weight": -1}, "data.jsonl:2: weight: expected a positive finite number"),
        ({**GOOD, "quality": "great"}, "data.jsonl:2: quality: expected one of 'high', 'medium', 'low'"),
    ],
)
def test_malformed_pairs_name_file_line_field(tmp_path, bad, message):
    path = _write(tmp_path / "data.jsonl", [GOOD, bad])
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        list(read_preferences([path]))


def test_weights_quality_and_conversational_replies(tmp_path):
    path = _write(
        tmp_path / "data.jsonl",
        [
            GOOD,
            {**GOOD, "quality": "low"},
            {**GOOD, "weight": 0.8},
            {"prompt": "x", "chosen": [{"role": "assistant", "content": "a"}], "rejected": "b"},
        ],
    )
    got = list(read_preferences([path]))
    assert [p.weight for p in got] == [1.0, 0.5, 0.8, 1.0] and got[3].chosen == "a"
    assert all(p.messages[-1]["role"] == "user" for p in got)


def test_pair_tokens_are_the_sft_trained_tokens(tok):
    pair = next(iter(read_preferences(["shipped"])))
    e = encode_pair(tok, pair)
    assert tok.decode(e.chosen) == pair.chosen + "<|im_end|>"
    assert tok.decode(e.prompt).endswith("<|im_start|>assistant\n") and e.prompt[0] == tok.bos_token_id


# ----------------------------------------------------------------------------------------- stage
def _cfg(tiny_model, out, **kw):
    train = {
        "steps": 12,
        "micro_batch_size": 4,
        "lm_head_chunk": 64,
        "logging": {"every": 1},
        "eval": {"every": 6, "batches": 2},
        "optim": {"lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 2},
        "checkpoint": {"every": 0},
    }
    train.update(kw.pop("train", {}))
    return DPOConfig(
        model=str(tiny_model), output=str(out), seq_len=512, max_pairs=120, val_fraction=0.1, train=train, **kw
    )


def _rows(path: Path, kind="train"):
    return [r for r in map(json.loads, (path / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def test_stage_on_shipped_data_learns_and_caches_the_reference(tiny_model, tmp_path):
    summary = dpo(_cfg(tiny_model, tmp_path / "run"))
    rows = _rows(tmp_path / "run")
    assert {"reward_chosen", "reward_rejected", "margin", "accuracy", "penalty"} <= set(rows[0])
    assert summary["initial_val_loss"] == pytest.approx(math.log(2), abs=1e-4)  # the policy starts as the reference
    assert (
        sum(r["loss"] for r in rows[-4:]) / 4 < 0.6 and sum(r["margin"] for r in rows[-4:]) > 0
    )  # the pairs are learnt
    assert summary["prepare_cache"]["misses"] <= 40  # the precompute pass (and the held-out pairs) only
    assert (tmp_path / "run" / "prepared" / "meta.json").is_file()
    assert "{% generation %}" in load_hf_tokenizer(tmp_path / "run" / "final").chat_template
    assert json.loads((tmp_path / "run" / "lineage.json").read_text())["stage"] == "train.dpo"
    assert json.loads((tmp_path / "run" / "data.json").read_text())["train_pairs"] > 90
    nocache = dpo(_cfg(tiny_model, tmp_path / "nocache", train={"prepare": {"cache": None, "precompute": False}}))
    assert [r["loss"] for r in _rows(tmp_path / "nocache")] == pytest.approx(
        [r["loss"] for r in rows], rel=1e-4
    )  # batching differs
    assert "prepare_cache" not in nocache


def test_bad_data_leaves_nothing_behind(tiny_model, tmp_path):
    path = _write(tmp_path / "bad.jsonl", [GOOD, {"prompt": "x", "chosen": "a"}])
    with pytest.raises(DataError, match="bad.jsonl:2: rejected"):
        dpo(DPOConfig(model=str(tiny_model), output=str(tmp_path / "out"), data=[str(path)]))
    assert not (tmp_path / "out").exists()


def _cli(args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BIELIK_NO_BAR": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "bielik.cli", "train", "dpo", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _args(tiny_model, out):
    return [
        f"model={tiny_model}",
        f"output={out}",
        "seq_len=512",
        "max_pairs=160",
        "train.steps=40",
        "train.micro_batch_size=4",
        "train.lm_head_chunk=64",
        "train.eval.every=0",
        "train.eval.at_start=false",
        "train.checkpoint.every=4",
        "train.checkpoint.keep_last=20",
        "train.optim.warmup_steps=2",
        "train.optim.lr=3e-3",
    ]


def test_kill9_and_resume_is_bit_identical(tiny_model, tmp_path):
    full = _cli(_args(tiny_model, tmp_path / "full"))
    assert full.wait(timeout=900) == 0, full.stderr.read()[-3000:]
    victim = _cli(_args(tiny_model, tmp_path / "killed"))
    latest = tmp_path / "killed" / "checkpoints" / "latest"
    deadline = time.time() + 600
    while not latest.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    start = int(latest.read_text().strip().split("-")[1])
    assert 0 < start < 40, "the run ended before it could be killed"
    resumed = _cli(_args(tiny_model, tmp_path / "killed"))
    assert resumed.wait(timeout=900) == 0, resumed.stderr.read()[-3000:]
    assert json.loads((tmp_path / "killed" / "metrics.json").read_text())["start_step"] == start
    a = load_file(tmp_path / "full" / "final" / "model.safetensors")
    b = load_file(tmp_path / "killed" / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
