"""DDP and FSDP2 on 2 CPU processes (gloo, one thread each) against 1 process at the same global batch."""

import json
import os
import subprocess
import sys

import pytest
import torch

from bielik.train import checkpoint as ckpt

STEPS = 6


def _losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["kind"] == "train"], [r["val_loss"] for r in rows if r["kind"] == "eval"]


def _run(args, nproc, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BIELIK_NO_BAR": "1"}
    if nproc > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            "-m",
            "bielik.cli",
        ]
    else:
        cmd = [sys.executable, "-m", "bielik.cli"]
    res = subprocess.run(
        cmd + ["train", "pretrain", *args], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr[-4000:]
    return res


@pytest.fixture(scope="module")
def single(tiny_model, tiny_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("single")
    common = _common(tiny_model, tiny_data)
    _run([*common, f"output={tmp / 'run'}", "train.grad_accum=2"], 1, tmp)
    return _losses(tmp / "run")


def _common(tiny_model, tiny_data):
    return [
        f"model={tiny_model}",
        f"data={tiny_data}",
        f"train.steps={STEPS}",
        "train.micro_batch_size=4",
        "train.lm_head_chunk=64",
        "train.logging.every=1",
        "train.eval.every=3",
        "train.eval.batches=4",
        "train.optim.warmup_steps=2",
        "train.optim.lr=3e-3",
        "train.checkpoint.every=3",
    ]


@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_two_processes_match_one(strategy, single, tiny_model, tiny_data, tmp_path):
    _run(
        [*_common(tiny_model, tiny_data), f"output={tmp_path / 'run'}", f"train.distributed.strategy={strategy}"],
        2,
        tmp_path,
    )
    train2, val2 = _losses(tmp_path / "run")
    train1, val1 = single
    assert len(train2) == STEPS and train2[-1] < train2[0]
    # same global batch, same data order: the trajectories agree up to float reduction order
    assert train2 == pytest.approx(train1, rel=2e-4)
    assert val2 == pytest.approx(val1, rel=2e-4)
    latest = ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert latest is not None and latest.name == ckpt.checkpoint_name(STEPS)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "final")
    assert all(torch.isfinite(p).all() for p in model.parameters())
