"""Checkpoint layout on one process: checkpoints written before the sharded layout still resume exactly,
an asynchronous save writes the state of the step it was taken at and moves ``latest`` only once complete,
and a directory that is no checkpoint is refused with a clear error."""

import random

import pytest
import torch
from safetensors.torch import save_file
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

from bielik.artifacts import atomic_write_text, write_json
from bielik.errors import BielikError
from bielik.train import checkpoint as ckpt
from bielik.train.distributed import Dist
from tests.train.dist_dcp_run import STEPS, STOP, make_engine


def _write_full_state_checkpoint(eng, root):
    """The layout written before sharded checkpoints (the code this module replaced): HF weights,
    ``torch.save`` of the full optimizer state dict, RNG, state.json, then ``latest``."""
    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    path = root / ckpt.checkpoint_name(eng.step)
    path.mkdir(parents=True)
    sd = {k.removeprefix("model."): v.contiguous() for k, v in get_model_state_dict(eng.module, options=opts).items()}
    eng.hf_model.save_pretrained(path, state_dict=sd, safe_serialization=True)
    torch.save(get_optimizer_state_dict(eng.module, eng.optimizer, options=opts), path / "optimizer.pt")
    save_file({"rank0.cpu": torch.get_rng_state()}, path / "rng.safetensors")
    write_json(
        path / "state.json",
        {**eng._trainer_state(), "step": eng.step, "world_size": 1, "python_rng": random.getstate()},
    )
    atomic_write_text(root / ckpt.LATEST, path.name + "\n")


def test_full_state_checkpoint_from_before_sharding_resumes_exactly(tmp_path):
    make_engine(tmp_path / "full", "ddp", async_save=False, d=Dist()).fit()
    old = make_engine(tmp_path / "old", "ddp", async_save=False, d=Dist())
    for _ in range(STOP):
        old.train_step()
    _write_full_state_checkpoint(old, tmp_path / "old" / "checkpoints")
    resumed = make_engine(tmp_path / "old", "ddp", async_save=False, d=Dist())
    assert resumed.fit()["start_step"] == STOP
    a = ckpt.read_full_state(tmp_path / "full" / "checkpoints" / ckpt.checkpoint_name(STEPS))
    b = ckpt.read_full_state(tmp_path / "old" / "checkpoints" / ckpt.checkpoint_name(STEPS))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    moments = a["optim"]["state"]
    assert all(torch.equal(moments[k]["exp_avg_sq"], b["optim"]["state"][k]["exp_avg_sq"]) for k in moments)


def test_async_save_writes_the_snapshot_and_moves_latest_only_when_complete(tmp_path):
    eng = make_engine(tmp_path / "run", "ddp", async_save=True, d=Dist())
    for _ in range(2):
        eng.train_step()
    snapshot = {k: v.detach().clone() for k, v in eng.module.state_dict().items()}
    path = eng.save_checkpoint()
    eng.train_step()  # the weights change while the checkpoint may still be written
    assert ckpt.latest_checkpoint(eng.ckpt_root) is None and not path.exists()
    assert eng.wait_for_checkpoint() == path
    assert ckpt.latest_checkpoint(eng.ckpt_root) == path
    saved = ckpt.read_full_state(path)["model"]
    assert saved.keys() == snapshot.keys() and all(torch.equal(saved[k], snapshot[k]) for k in saved)
    assert not torch.equal(saved["model.lm_head.weight"], eng.module.state_dict()["model.lm_head.weight"])


def test_hf_export_can_be_switched_off(tmp_path):
    eng = make_engine(tmp_path / "run", "ddp", async_save=False, d=Dist())
    eng.checkpointer.hf_export = False
    eng.train_step()
    path = eng.save_checkpoint()
    assert not (path / "model.safetensors").exists() and (path / ckpt.DCP_DIR / ".metadata").is_file()
    fresh = make_engine(tmp_path / "run", "ddp", async_save=False, d=Dist())
    fresh.maybe_resume()
    assert fresh.step == 1
    assert all(torch.equal(p, q) for p, q in zip(eng.module.parameters(), fresh.module.parameters()))


def test_a_directory_without_either_layout_is_refused(tmp_path):
    eng = make_engine(tmp_path / "run", "ddp", async_save=False, d=Dist())
    bad = tmp_path / "bad"
    bad.mkdir()
    write_json(bad / "state.json", {"step": 1})
    with pytest.raises(BielikError, match=r"dcp/.metadata .*optimizer.pt"):
        ckpt.load_checkpoint(bad, eng.module, eng.optimizer, eng.dist)
