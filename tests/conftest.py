"""Shared fixtures: tiny artifacts built once per session from the shipped corpus."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The project's ../shared reference folder; tests that need it skip cleanly when absent."""
    path = Path(os.environ.get("BIELIK_SHARED", REPO.parent / "shared"))
    if not path.is_dir():
        pytest.skip(f"reference data folder {path} is absent (set BIELIK_SHARED to its location)")
    return path


def pytest_collection_modifyitems(config, items):
    if os.environ.get("BIELIK_SLOW") or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow end-to-end test: run with BIELIK_SLOW=1 or -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory) -> Path:
    from bielik.tokenizer.train import TokenizerTrainConfig, train_tokenizer

    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    train_tokenizer(TokenizerTrainConfig(output=str(out), vocab_size=2048, max_chars=600_000))
    return out


def polish_sp_tokenizer(tmp_path_factory, vocab_size: int, max_chars: int) -> Path:
    """A SentencePiece-style tokenizer trained on the shipped Polish documents (for module fixtures)."""
    from bielik.tokenizer.train import TokenizerTrainConfig, train_tokenizer

    out = tmp_path_factory.mktemp("sp") / "tok"
    train_tokenizer(
        TokenizerTrainConfig(
            output=str(out), style="sentencepiece", vocab_size=vocab_size, max_chars=max_chars, langs=["pl"]
        )
    )
    return out


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, tiny_tokenizer) -> Path:
    from bielik.data.pack import PackConfig, pack

    out = tmp_path_factory.mktemp("data") / "packed"
    pack(
        PackConfig(
            tokenizer=str(tiny_tokenizer),
            output=str(out),
            seq_len=64,
            max_tokens=400_000,
            val_fraction=0.03,
            mix={"pl": 0.75, "en": 0.25},
        )
    )
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tiny_tokenizer) -> Path:
    from bielik.model.factory import ModelInitConfig, init_model

    out = tmp_path_factory.mktemp("model") / "init"
    init_model(
        ModelInitConfig(
            preset="tiny-llama",
            tokenizer=str(tiny_tokenizer),
            output=str(out),
            overrides={
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
            },
        )
    )
    return out


def engine_config(**kw):
    """A small, fast EngineConfig for tests (overrides as nested dicts)."""
    from bielik.config import deep_merge
    from bielik.train.config import EngineConfig

    base = {
        "steps": 10,
        "micro_batch_size": 4,
        "lm_head_chunk": 64,
        "optim": {"lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 2},
        "eval": {"every": 0, "batches": 4},
        "logging": {"every": 5},
        "checkpoint": {"every": 0, "save_final": False},
    }
    return EngineConfig.model_validate(deep_merge(base, kw))
