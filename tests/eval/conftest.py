"""Shared pieces of the evaluation tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="session")
def eval_lm(tiny_model):
    import torch

    from bielik.eval.lm import EvalLM

    torch.manual_seed(0)
    return EvalLM.from_pretrained(tiny_model, device="cpu", batch_tokens=1024)
