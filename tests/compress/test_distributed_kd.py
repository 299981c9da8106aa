"""Distillation on 2 CPU processes (gloo) — DDP and FSDP2, teacher frozen and sharded alike — against one
process at the same global batch."""

import json
import os
import subprocess
import sys

import pytest

from bielik.compress.prune import PruneConfig, prune

ENTRY = """import sys
from bielik.compress.distill import DistillConfig, distill
from bielik.config import load_config

distill(load_config(DistillConfig, None, sys.argv[1:]))
"""
STEPS = 4


def _run(args, nproc, cwd):
    (cwd / "entry.py").write_text(ENTRY)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BIELIK_NO_BAR": "1"}
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        if nproc > 1
        else [sys.executable]
    )
    res = subprocess.run(
        [*launcher, "entry.py", *args], env=env, capture_output=True, text=True, timeout=600, cwd=cwd, check=False
    )
    assert res.returncode == 0, res.stderr[-4000:]


def _losses(run):
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["kind"] == "train"], [r["val_loss"] for r in rows if r["kind"] == "eval"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model, tiny_data):
    tmp = tmp_path_factory.mktemp("dkd")
    prune(PruneConfig(model=str(tiny_model), output=str(tmp / "student"), layers=1, depth="last"))
    common = [
        f"teacher={tiny_model}",
        f"student={tmp / 'student'}",
        f"data={tiny_data}",
        f"train.steps={STEPS}",
        "train.micro_batch_size=4",
        "train.lm_head_chunk=64",
        "train.logging.every=1",
        "train.eval.every=2",
        "train.eval.batches=2",
        "train.optim.warmup_steps=1",
        "train.optim.lr=3e-3",
        "tau=2.0",
    ]
    _run([*common, f"output={tmp / 'single'}", "train.grad_accum=2"], 1, tmp)
    return common, _losses(tmp / "single")


@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_two_processes_match_one(strategy, setup, tmp_path):
    common, (train1, val1) = setup
    _run([*common, f"output={tmp_path / 'run'}", f"train.distributed.strategy={strategy}"], 2, tmp_path)
    train2, val2 = _losses(tmp_path / "run")
    assert len(train2) == STEPS and train2 == pytest.approx(train1, rel=2e-4) and val2 == pytest.approx(val1, rel=2e-4)
    report = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert report["heldout"]["tokens"] > 0 and report["parameters_student"] < report["parameters_teacher"]
