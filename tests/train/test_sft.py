"""SFT on the engine: weighted instruction CE (maths, accumulation, DDP), adaptive LR, the stage, exact resume
after kill -9."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from bielik.data.chat_rows import build_sft_data
from bielik.model.loading import load_hf_model
from bielik.tokenizer.formats import load_hf_tokenizer
from bielik.train.batches import ChatRowBatches
from bielik.train.distributed import Dist
from bielik.train.engine import Engine
from bielik.train.objectives import CausalLM
from bielik.train.sft import SFTConfig, sft
from tests.conftest import engine_config

DATA = ["shipped:pl", "shipped:en"]


@pytest.fixture(scope="module")
def sft_rows(tiny_tokenizer):
    tok = load_hf_tokenizer(tiny_tokenizer)
    return build_sft_data(tok, DATA, seq_len=128, val_fraction=0.1, max_dialogues=160, seed=1)


def _naive_weighted_ce(model, batch):
    logits = (
        model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[:, :-1].float()
    )
    targets = batch["labels"][:, 1:]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="none")
    return (ce * batch["loss_weights"][:, 1:].reshape(-1)).sum()


def test_weighted_ce_equals_naive_with_gradients(sft_rows, tiny_model):
    batch = ChatRowBatches(sft_rows.train, 4, 1).next_step()[0]
    assert set(batch["loss_weights"][batch["labels"] != -100].tolist()) <= {1.0, 0.7, 0.5}
    assert (batch["loss_weights"][batch["labels"] != -100] < 1).any()  # the sample mixes qualities
    model = load_hf_model(tiny_model)
    out = CausalLM(chunk=40, weighted=True)(model, batch)
    (ga,) = torch.autograd.grad(out.loss_sum, [model.model.layers[0].mlp.up_proj.weight])
    ref = _naive_weighted_ce(model, batch)
    (gb,) = torch.autograd.grad(ref, [model.model.layers[0].mlp.up_proj.weight])
    assert out.loss_sum.item() == pytest.approx(ref.item(), rel=1e-5)
    assert torch.allclose(ga, gb, rtol=1e-4, atol=1e-6)
    n = int((batch["labels"][:, 1:] != -100).sum())
    assert CausalLM(weighted=True).loss_units(batch) == n
    assert CausalLM(weighted=True, normalize="weights").loss_units(batch) == pytest.approx(
        float(batch["loss_weights"][:, 1:][batch["labels"][:, 1:] != -100].sum())
    )


def _sft_engine(model_dir, rows, out, micro, accum, **kw):
    e = engine_config(steps=4, micro_batch_size=micro, grad_accum=accum, logging={"every": 1}, **kw)
    src = ChatRowBatches(rows, micro, accum, seed=3)
    return Engine(e, load_hf_model(model_dir), CausalLM(chunk=64, weighted=True), src, out, Dist(), seq_len=128)


@pytest.mark.parametrize("alr", [False, True])
def test_weighted_loss_under_accumulation_is_one_big_batch(sft_rows, tiny_model, tmp_path, alr):
    opt = {"alr": {"enabled": alr, "baseline_tokens": 500}}
    big = _sft_engine(tiny_model, sft_rows.train, tmp_path / "big", 4, 1, optim=opt)
    acc = _sft_engine(tiny_model, sft_rows.train, tmp_path / "acc", 1, 4, optim=opt)
    for _ in range(4):
        a, b = big.train_step(), acc.train_step()
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-9) and a["loss_tokens"] == b["loss_tokens"]
    for (k, p), q in zip(big.hf_model.named_parameters(), acc.hf_model.parameters()):
        # atol: Adam turns float-order noise in near-zero gradients (rarely seen embedding rows) into
        # updates of ~1e-6; 1e-5 is <0.1% of the 4 steps' possible movement (4 x lr 3e-3)
        assert torch.allclose(p, q, rtol=1e-4, atol=1e-5), (k, (p - q).abs().max().item())


def _rows(path: Path, kind: str = "train") -> list[dict]:
    return [r for r in map(json.loads, (path / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def _cfg(tiny_model, out, **kw) -> SFTConfig:
    train = {
        "steps": 30,
        "micro_batch_size": 4,
        "lm_head_chunk": 64,
        "logging": {"every": 1},
        "eval": {"every": 10, "batches": 2},
        "optim": {"lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 3, "alr": {"enabled": True, "baseline_tokens": 600}},
        "checkpoint": {"every": 0, "save_final": True},
    }
    train.update(kw.pop("train", {}))
    return SFTConfig(
        model=str(tiny_model),
        data=DATA,
        output=str(out),
        seq_len=128,
        max_dialogues=160,
        val_fraction=0.1,
        seed=1,
        train=train,
        **kw,
    )


def test_sft_stage_learns_and_logs_both_learning_rates(tiny_model, tmp_path):
    summary = sft(_cfg(tiny_model, tmp_path / "run"))
    assert summary["final_val_loss"] < summary["initial_val_loss"] - 0.5
    train = _rows(tmp_path / "run")
    for r in train:  # adaptive LR: lr = schedule · √(T/BS), T = the step's loss tokens
        assert r["lr"] == pytest.approx(r["lr_schedule"] * math.sqrt(r["loss_tokens"] / 600), rel=1e-9)
    assert len({round(r["loss_tokens"]) for r in train}) > 3  # T varies, and so does the applied LR
    assert 0.5 < train[0]["mean_weight"] < 1.0
    ev = _rows(tmp_path / "run", "eval")
    assert all(e["val_ppl"] == pytest.approx(math.exp(e["val_ce"])) for e in ev)
    final = tmp_path / "run" / "final"
    tok = load_hf_tokenizer(final)
    assert "{% generation %}" in tok.chat_template
    assert (
        tok.eos_token == "<|im_end|>"
        and json.loads((final / "generation_config.json").read_text())["eos_token_id"] == tok.eos_token_id
    )
    assert tok("Ala ma kota").input_ids[0] == tok.bos_token_id  # encoding unchanged: one BOS
    from bielik.generate import GenerateConfig, generate

    sample = generate(
        GenerateConfig(model=str(final), prompts=["Przetłumacz na angielski: kot"], max_new_tokens=6, temperature=0.0)
    )[0]
    assert sample["chat"] is True  # an SFT'd model answers as the assistant of a chat (chat=auto)
    assert json.loads((tmp_path / "run" / "data.json").read_text())["train_dialogues"] > 100
    assert json.loads((tmp_path / "run" / "lineage.json").read_text())["stage"] == "train.sft"


def test_sft_switches_for_ablations(tiny_model, tmp_path):
    short = {"steps": 2, "eval": {"every": 0, "batches": 1, "at_start": False}}
    sft(_cfg(tiny_model, tmp_path / "off", assistant_only=False, weighting=False, train=short))
    sft(_cfg(tiny_model, tmp_path / "on", train=short))
    off, on = _rows(tmp_path / "off")[0], _rows(tmp_path / "on")[0]
    assert "mean_weight" not in off and on["mean_weight"] < 1.0
    assert off["loss_tokens"] > 1.5 * on["loss_tokens"]  # user turns and control tokens now trained too


def _cli(args, env_extra=None, **popen):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BIELIK_NO_BAR": "1", **(env_extra or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "bielik.cli", "train", "sft", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def _args(tiny_model, out):
    return [
        f"model={tiny_model}",
        f"output={out}",
        "data=[shipped:pl,shipped:en]",
        "seq_len=128",
        "max_dialogues=160",
        "val_fraction=0.1",
        "seed=1",
        "train.steps=24",
        "train.micro_batch_size=4",
        "train.lm_head_chunk=64",
        "train.eval.every=0",
        "train.eval.at_start=false",
        "train.checkpoint.every=4",
        "train.checkpoint.keep_last=10",
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
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    start = int(latest.read_text().strip().split("-")[1])
    assert 0 < start < 24, "the run ended before it could be killed"
    resumed = _cli(_args(tiny_model, tmp_path / "killed"))
    assert resumed.wait(timeout=900) == 0, resumed.stderr.read()[-3000:]
    summary = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert summary["start_step"] == start
    a = load_file(tmp_path / "full" / "final" / "model.safetensors")
    b = load_file(tmp_path / "killed" / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ddp_two_processes_equal_one_big_batch(tiny_model, tmp_path):
    common = _args(tiny_model, tmp_path)[:-6] + [
        "train.steps=4",
        "train.checkpoint.every=0",
        "train.logging.every=1",
        "train.optim.warmup_steps=1",
        "train.micro_batch_size=2",
    ]
    one = _cli([*common, f"output={tmp_path / 'one'}", "train.grad_accum=2"])
    assert one.wait(timeout=900) == 0, one.stderr.read()[-3000:]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BIELIK_NO_BAR": "1"}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "bielik.cli",
            "train",
            "sft",
            *common,
            f"output={tmp_path / 'two'}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    l1, l2 = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert [r["loss"] for r in l2] == pytest.approx([r["loss"] for r in l1], rel=2e-4)
    assert [r["lr"] for r in l2] == pytest.approx([r["lr"] for r in l1], rel=1e-9)  # ALR sees the global T_t
