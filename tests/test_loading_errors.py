"""bielik.model.loading names the damaged file (and line or tensor) instead of passing a library's error on."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from bielik.errors import BielikError
from bielik.model.loading import check_config_dirs, check_hf_dir, check_safetensors, load_hf_model


def _weights(path, n=3):
    save_file({f"w{i}": torch.full((64, 64), float(i)) for i in range(n)}, str(path))
    return path


def test_truncated_safetensors_names_file_and_first_cut_tensor(tmp_path):
    path = _weights(tmp_path / "model.safetensors")
    check_safetensors(path)  # intact: no error
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size - 64 * 64 * 4 - 10)  # cuts into the second-to-last tensor's data
    cut = r"model\.safetensors: truncated safetensors file .*2 tensors are cut off, from 'w1'"
    with pytest.raises(BielikError, match=cut):
        check_safetensors(path)
    path.write_bytes(b"\x10\x00")
    with pytest.raises(BielikError, match="not even a header"):
        check_safetensors(path)


def test_bad_config_tokenizer_and_missing_shard(tmp_path, tiny_model):
    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    check_hf_dir(model)
    (model / "config.json").write_text('{\n  "hidden_size": 64,\n  "vocab_size": \n}\n')
    with pytest.raises(BielikError, match=r"m/config\.json:4: not valid JSON"):
        load_hf_model(model)
    shutil.copy2(tiny_model / "config.json", model / "config.json")
    (model / "tokenizer.json").write_text('{"model": {"type": "nonsense"}}')
    with pytest.raises(BielikError, match=r"tokenizer\.json: not a valid tokenizer"):
        check_config_dirs({"tokenizer": str(model), "output": "x"})
    shutil.copy2(tiny_model / "tokenizer.json", model / "tokenizer.json")
    (model / "model.safetensors").rename(model / "model-00001-of-00002.safetensors")
    (model / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}})
    )
    missing = r"model-00002-of-00002\.safetensors: missing \(listed in .* for tensor 'b'\)"
    with pytest.raises(BielikError, match=missing):
        load_hf_model(model)


def test_config_dirs_skip_the_output_and_non_paths(tmp_path, tiny_model):
    broken = tmp_path / "out"
    shutil.copytree(tiny_model, broken)
    (broken / "config.json").write_text("{")
    check_config_dirs({"output": str(broken), "prompts": ["Ala ma kota", "x" * 5000], "model": str(tiny_model)})
    with pytest.raises(BielikError, match="out/config.json:1"):
        check_config_dirs({"models": [str(tiny_model), str(broken)]})
