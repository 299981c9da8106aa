"""Distillation on the engine contract: the teacher is frozen, never optimised and absent from
checkpoints; the top-k teacher values go through the per-example cache; the chunk-free path agrees;
the stage writes its report, and a killed run resumes to the same weights."""

import copy
import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from bielik.compress.distill import DistillConfig, distill
from bielik.compress.prune import PruneConfig, prune
from bielik.train import checkpoint as ckpt
from bielik.train.distributed import Dist
from bielik.train.engine import Engine
from bielik.train.objectives.kd import LogitDistillation
from tests.conftest import engine_config

V = 24


def micro(layers, seed, hidden=32):
    torch.manual_seed(seed)
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=V,
            hidden_size=hidden,
            intermediate_size=48,
            num_hidden_layers=layers,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=64,
        )
    )


class Rows:
    """Random rows with example ids; resumable; lists its data set for precompute."""

    def __init__(self, n=16, length=12):
        self.data = torch.randint(0, V, (n, length), generator=torch.Generator().manual_seed(0))
        self.cursor = 0

    def _batch(self, idx):
        return {"input_ids": self.data[idx], "example_ids": torch.as_tensor(idx)}

    def next_step(self):
        idx = [(self.cursor * 4 + i) % len(self.data) for i in range(4)]
        self.cursor += 1
        return [self._batch(idx[:2]), self._batch(idx[2:])]

    def iter_dataset(self):
        for s in range(0, len(self.data), 4):
            yield self._batch(list(range(s, s + 4)))

    def state_dict(self):
        return {"cursor": self.cursor}

    def load_state_dict(self, state):
        self.cursor = int(state["cursor"])


def _engine(out, objective, student, **cfg):
    e = engine_config(
        **{
            "steps": 30,
            "lm_head_chunk": 8,
            "optim": {"lr": 1e-2, "min_lr": 1e-3, "warmup_steps": 1},
            "logging": {"every": 1},
            **cfg,
        }
    )
    return Engine(e, student, objective, Rows(), out, Dist(), seq_len=12)


def _rows(out, kind="train"):
    return [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def test_teacher_frozen_never_optimised_or_saved_and_student_learns(tmp_path):
    teacher, student = micro(2, seed=1), micro(1, seed=2, hidden=16)
    before = copy.deepcopy(teacher.state_dict())
    eng = _engine(
        tmp_path / "run",
        LogitDistillation(teacher, tau=2.0, chunk=8),
        student,
        checkpoint={"every": 15, "save_final": False},
    )
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    optimised = {id(p) for g in eng.optimizer.param_groups for p in g["params"]}
    assert not optimised & {id(p) for p in teacher.parameters()}
    eng.fit()
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
    saved = load_file(ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints") / "model.safetensors")
    assert set(saved) <= set(student.state_dict()) and all(
        saved[k].shape == student.state_dict()[k].shape for k in saved
    )
    assert saved["model.embed_tokens.weight"].shape == (V, 16)  # the student's, not the teacher's (V, 32)
    rows = _rows(tmp_path / "run")
    assert rows[-1]["kl"] < 0.5 * rows[0]["kl"] and rows[-1]["top1_agree"] > rows[0]["top1_agree"]


def test_topk_values_cached_per_example_and_reused(tmp_path):
    plain = LogitDistillation(micro(2, seed=1), top_k=4, chunk=8)
    _engine(tmp_path / "plain", plain, micro(1, seed=2), precision="fp32").fit()
    calls = []
    cached = LogitDistillation(micro(2, seed=1), top_k=4, chunk=8)
    orig = cached.prepare
    cached.prepare = lambda b: (calls.append(1), orig(b))[1]
    summary = _engine(
        tmp_path / "cached", cached, micro(1, seed=2), precision="fp32", prepare={"cache": "auto", "precompute": True}
    ).fit()
    assert (
        len(calls) == 4 and summary["prepare_cache"]["hits"] == 60
    )  # 16 examples once; 30 steps x 2 micro-batches from disk
    assert cached.prepare_token_keys == {"teacher_topk_logits", "teacher_topk_ids", "teacher_lse"}
    assert [r["loss"] for r in _rows(tmp_path / "cached")] == [r["loss"] for r in _rows(tmp_path / "plain")]
    meta = json.loads((tmp_path / "cached" / "prepared" / "meta.json").read_text())
    assert meta["objective"] == "kd_top4_tau1" and "teacher" in meta["frozen"]


@pytest.mark.parametrize("top_k", [0, 5])
def test_chunk_free_path_agrees(top_k):
    teacher, student = micro(2, seed=1), micro(1, seed=2)
    batch = Rows().next_step()[0]
    losses, grads = [], []
    for chunk in (0, 7):
        obj = LogitDistillation(teacher, tau=1.5, alpha=0.25, top_k=top_k, chunk=chunk)
        with torch.no_grad():
            b = {**batch, **obj.prepare(batch)}
        student.zero_grad()
        out = obj(student, b)
        out.loss_sum.backward()
        losses.append(
            (
                out.loss_sum.item(),
                out.metrics["ce"][0].item(),
                out.metrics["kl"][0].item(),
                out.metrics["top1_agree"][0].item(),
            )
        )
        grads.append(student.model.layers[0].mlp.up_proj.weight.grad.clone())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-7)


def test_ce_only_ablation_runs_no_teacher():
    obj = LogitDistillation(micro(1, seed=1), alpha=1.0)
    assert (
        obj.frozen_models() == {}
        and obj.prepare({"input_ids": torch.zeros(1, 4, dtype=torch.long)}) == {}
        and obj.name == "ce"
    )


@pytest.fixture(scope="module")
def pruned_pair(tmp_path_factory, tiny_model):
    out = tmp_path_factory.mktemp("kd") / "pruned"
    prune(PruneConfig(model=str(tiny_model), output=str(out), layers=1, depth="last"))
    return tiny_model, out


def _stage(out, pair, data, top_k=0, **train):
    t = {
        "steps": 8,
        "micro_batch_size": 4,
        "lm_head_chunk": 32,
        "eval": {"every": 4, "batches": 2},
        "logging": {"every": 2},
        "optim": {"lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 1},
        **train,
    }
    return distill(
        DistillConfig(
            teacher=str(pair[0]), student=str(pair[1]), data=str(data), output=str(out), train=t, tau=2.0, top_k=top_k
        )
    )


def test_stage_report_and_recovery(tmp_path, pruned_pair, tiny_data):
    s = _stage(tmp_path / "kd", pruned_pair, tiny_data, checkpoint={"every": 0, "save_final": True})
    out = tmp_path / "kd"
    for f in (
        "report.md",
        "recovery.png",
        "metrics.json",
        "lineage.json",
        "config.yaml",
        "final/model.safetensors",
        "final/tokenizer.json",
    ):
        assert (out / f).is_file(), f
    h = s["heldout"]
    assert s["parameters_student"] < s["parameters_teacher"] and 0 <= h["top1_agree"] <= 1 and h["kl"] > 0
    assert s["final_val_loss"] < s["initial_val_loss"]  # KD on held-out rows falls
    assert h["student_ce"] == pytest.approx(math.log(s["final_val_ppl"]), rel=1e-4)  # same rows, same student
    final = AutoModelForCausalLM.from_pretrained(out / "final")
    assert final.config.num_hidden_layers == 1
    assert "teacher" in (out / "report.md").read_text() and s["pruned_val_ce"] is not None


def test_stage_resumes_to_the_same_weights(tmp_path, pruned_pair, tiny_data):
    full = tmp_path / "full"
    _stage(full, pruned_pair, tiny_data, checkpoint={"every": 4, "keep_last": 2, "save_final": False})
    part = tmp_path / "part"  # the same run killed after its step-4 checkpoint
    shutil.copytree(full, part)
    shutil.rmtree(part / "checkpoints" / ckpt.checkpoint_name(8))
    (part / "checkpoints" / "latest").write_text(ckpt.checkpoint_name(4))
    (part / "metrics.json").unlink()
    s = _stage(part, pruned_pair, tiny_data, checkpoint={"every": 4, "keep_last": 2, "save_final": False})
    assert s["start_step"] == 4 and s["steps"] == 8
    a = load_file(full / "checkpoints" / ckpt.checkpoint_name(8) / "model.safetensors")
    b = load_file(part / "checkpoints" / ckpt.checkpoint_name(8) / "model.safetensors")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_stage_topk_cache_holds_training_rows_only(tmp_path, pruned_pair, tiny_data):
    kw = {
        "steps": 4,
        "eval": {"every": 2, "batches": 2},
        "checkpoint": {"every": 0, "save_final": False},
        "precision": "fp32",
    }
    cached = _stage(
        tmp_path / "cached", pruned_pair, tiny_data, top_k=8, prepare={"cache": "auto", "precompute": True}, **kw
    )
    plain = _stage(tmp_path / "plain", pruned_pair, tiny_data, top_k=8, **kw)
    assert cached["prepare_cache"]["hits"] >= 4  # training steps read what the precompute pass stored
    assert cached["final_val_loss"] == pytest.approx(plain["final_val_loss"], rel=1e-6)
    # held-out batches never touch the cache: their row numbers would collide with the training rows'
    from bielik.data.pack import TokenShards

    n_train = len(TokenShards(tiny_data, "train"))
    ids = {
        int(k.split("/")[0])
        for part in (tmp_path / "cached" / "prepared").glob("part-*.safetensors")
        for k in load_file(part)
    }
    assert ids == set(range(n_train))
    assert {k.split("/")[1] for k in load_file(next((tmp_path / "cached" / "prepared").glob("part-*")))} == {
        "teacher_topk_logits",
        "teacher_topk_ids",
        "teacher_lse",
    }


def test_seeded_run_pins_its_losses(tmp_path):
    """A tiny seeded KD run (τ = 2, fp32): its per-step losses are pinned, so a change of the maths shows."""
    eng = _engine(
        tmp_path / "run",
        LogitDistillation(micro(2, seed=1), tau=2.0, chunk=8),
        micro(1, seed=2, hidden=16),
        steps=5,
        precision="fp32",
    )
    eng.fit()
    pinned = [0.0085755770, 0.0058524903, 0.0054048266, 0.0039467573, 0.0033318223]
    assert [r["loss"] for r in _rows(tmp_path / "run")] == pytest.approx(pinned, rel=1e-4)


def test_stage_without_heldout_rows_trains_and_skips_evaluation(tmp_path, pruned_pair, tiny_tokenizer):
    """Data packed with val_fraction=0: distillation trains, without held-out numbers (it once handed the
    engine a function returning None and crashed at the first evaluation)."""
    from bielik.data.pack import PackConfig, pack

    data = pack(
        PackConfig(
            tokenizer=str(tiny_tokenizer),
            output=str(tmp_path / "data"),
            seq_len=64,
            max_tokens=20_000,
            val_fraction=0.0,
        )
    )
    s = _stage(tmp_path / "kd", pruned_pair, data, steps=4, checkpoint={"every": 0, "save_final": True})
    assert s["steps"] == 4 and (tmp_path / "kd" / "final" / "model.safetensors").is_file()
    rows = [json.loads(line) for line in (tmp_path / "kd" / "metrics.jsonl").read_text().splitlines()]
    assert any(r["kind"] == "train" for r in rows) and not any(r["kind"] == "eval" for r in rows)
