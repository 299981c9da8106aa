"""Opening HF causal-LM directories: the one loader every stage uses (training, eval, quant, generation).

It lives in ``bielik.model`` (below ``train``, ``eval`` and ``quant``) so that no package has to
import a training stage to open a model. Weights are read from safetensors only and remote code is
never trusted.
"""

from __future__ import annotations

from pathlib import Path

from bielik.errors import BielikError


def load_hf_model(path: str | Path, dtype: str = "float32"):
    """An ``AutoModelForCausalLM`` from a local HF directory, SDPA attention, ``dtype`` weights.

    Raises :class:`BielikError` naming the directory when it is not an HF model directory or its
    weights cannot be read.
    """
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not (path / "config.json").is_file():
        raise BielikError(f"model {path} is not an HF model directory (no config.json)")
    try:
        return AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, attn_implementation="sdpa", use_safetensors=True, trust_remote_code=False
        )
    except (OSError, ValueError) as exc:  # missing/truncated safetensors, unknown architecture
        raise BielikError(f"model {path}: cannot load the weights ({str(exc).splitlines()[0]})") from None
