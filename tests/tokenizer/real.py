"""Real tokenizers shipped inside packages; tests skip with the reason when one is not available."""

from __future__ import annotations

import functools

import pytest


@functools.cache
def _load(name: str):
    from bielik.errors import BielikError
    from bielik.tokenizer.formats import load_tokenizer

    try:
        return load_tokenizer(name), None
    except (BielikError, ImportError) as exc:
        return None, str(exc)


def real_tokenizer(name: str):
    """``mistral-v0.1`` (mistral-common wheel) or a llama.cpp vocab GGUF (``llama2``, ``qwen2``, ...)."""
    tok, why = _load(name)
    if tok is None:
        pytest.skip(f"real tokenizer '{name}' unavailable: {why}")
    return tok


def llama_cpp_models_dir():
    from bielik.errors import BielikError

    try:
        from bielik.vendor import llama_cpp_source

        return llama_cpp_source() / "models"
    except (BielikError, ImportError) as exc:
        pytest.skip(f"llama.cpp sources (vocab GGUFs) unavailable: {exc}")
