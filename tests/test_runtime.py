"""Process-wide settings are the entry point's business: a stage run through the Python API leaves the
thread count, the denormal mode and the logging handlers as it found them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import torch

from bielik.runtime import flush_denormal, flush_denormal_enabled, stage_context, threads

SCRIPT = textwrap.dedent("""
    import json, logging, sys
    import torch
    import bielik.log  # importing the library may add its NullHandler, nothing else
    from bielik.runtime import flush_denormal_enabled

    def state():
        return {"threads": torch.get_num_threads(), "flush": flush_denormal_enabled(),
                "root": [type(h).__name__ for h in logging.getLogger().handlers],
                "bielik": [type(h).__name__ for h in logging.getLogger("bielik").handlers],
                "propagate": logging.getLogger("bielik").propagate}

    model, data, out = sys.argv[1:4]
    before = state()
    from bielik.quant.speed import SpeedConfig, bench_speed
    from bielik.stages import get
    from bielik.train.pretrain import PretrainConfig, pretrain

    train = {"steps": 2, "micro_batch_size": 2, "eval": {"every": 0, "batches": 1, "at_start": False},
             "checkpoint": {"every": 0, "save_final": False}, "logging": {"every": 1}}
    pretrain(PretrainConfig(model=model, data=data, output=out + "/a", train=train))
    after_direct = state()
    get("train.pretrain").run(PretrainConfig(model=model, data=data, output=out + "/b", train=train))
    bench_speed(SpeedConfig(models=[model], hf_dtypes=["float32"], prompt_tokens=4, new_tokens=2, runs=1, warmup=0,
                            threads=1 if before["threads"] != 1 else 2))
    print(json.dumps({"before": before, "direct": after_direct, "after": state()}))
""")


def test_stages_leave_process_state_unchanged(tmp_path, tiny_model, tiny_data):
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_model), str(tiny_data), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    states = json.loads(res.stdout.strip().splitlines()[-1])
    assert states["before"] == states["direct"] == states["after"], states
    assert states["before"]["bielik"] == ["NullHandler"] and not states["before"]["flush"]


def test_stage_context_sets_and_restores_flush_denormal():
    assert "torch" in sys.modules
    before = flush_denormal_enabled()
    with stage_context():
        assert flush_denormal_enabled()
        assert torch.tensor([1e-320], dtype=torch.float64).item() == 0.0
    assert flush_denormal_enabled() == before
    with flush_denormal(True):
        with flush_denormal(False):
            assert not flush_denormal_enabled()
        assert flush_denormal_enabled()
    assert flush_denormal_enabled() == before


def test_threads_restores_the_count():
    before = torch.get_num_threads()
    want = 1 if before != 1 else 2
    with threads(want):
        assert torch.get_num_threads() == want
    assert torch.get_num_threads() == before
    with threads(0):
        assert torch.get_num_threads() == before


def test_entry_point_configures_logging(tmp_path):
    """``bielik`` (the entry point) logs to stderr; importing the library alone configures nothing."""
    res = subprocess.run(
        [sys.executable, "-m", "bielik", "model", "presets"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0 and res.stdout.strip()
    code = (
        "import logging, bielik.progress, bielik.train.engine; log = logging.getLogger('bielik'); "
        "print([type(h).__name__ for h in log.handlers], log.propagate)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stdout.strip() == "['NullHandler'] True", res.stderr
    code = (
        "import logging; from bielik.runtime import configure_process; configure_process(); "
        "logging.getLogger('bielik.x').info('hello from the entry point')"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "INFO bielik.x: hello from the entry point" in res.stderr
