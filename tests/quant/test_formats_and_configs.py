"""Fast checks that need no llama.cpp build: GGUF validation, export checks, configs, calibration split,
toolchain errors."""

import json
import shutil

import numpy as np
import pytest

from bielik.config import load_config
from bielik.errors import BielikError, ConfigError, DataError
from bielik.quant.calibration import TextConfig, is_heldout, select_text
from bielik.quant.export import ExportConfig, _check_model, detect_pretokenizer, export
from bielik.quant.gguf_file import read_gguf, resolve_gguf
from bielik.quant.imatrix import imatrix_entries
from bielik.quant.quantize import QuantizeConfig


def write_gguf(path, arch="llama", imatrix=False):
    import gguf

    w = gguf.GGUFWriter(path, arch)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tensor("token_embd.weight", np.arange(256 * 4, dtype=np.float32).reshape(4, 256))
    w.add_tensor("output_norm.weight", np.ones(256, dtype=np.float32))
    if imatrix:
        w.add_tensor("blk.0.ffn_down.weight.in_sum2", np.full(256, 2.0, dtype=np.float32))
        w.add_tensor("blk.0.ffn_down.weight.counts", np.array([4.0], dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_read_gguf_sizes_and_metadata(tmp_path):
    info = read_gguf(write_gguf(tmp_path / "m.gguf"))
    assert info.architecture == "llama"
    assert info.n_params == 256 * 4 + 256
    assert info.tensor_bytes == 4 * info.n_params and info.bits_per_weight == pytest.approx(32.0)
    assert info.tensor_types == {"F32": 2}
    assert info.file_bytes == (tmp_path / "m.gguf").stat().st_size


@pytest.mark.parametrize("cut", ["tensor data", "metadata"])
def test_truncated_gguf_is_a_clear_error(tmp_path, cut):
    data = write_gguf(tmp_path / "m.gguf").read_bytes()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(data[:-100] if cut == "tensor data" else data[:40])
    with pytest.raises(BielikError, match=r"bad\.gguf.*(truncated|damaged)"):
        read_gguf(bad)


def test_foreign_file_is_not_a_gguf(tmp_path):
    (tmp_path / "x.gguf").write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(BielikError, match="not a GGUF file"):
        read_gguf(tmp_path / "x.gguf")
    with pytest.raises(BielikError, match="does not exist"):
        read_gguf(tmp_path / "missing.gguf")


def test_resolve_gguf_from_stage_directory(tmp_path):
    write_gguf(tmp_path / "a.gguf")
    assert resolve_gguf(tmp_path) == tmp_path / "a.gguf"
    write_gguf(tmp_path / "b.gguf")
    with pytest.raises(BielikError, match="2 .gguf files"):
        resolve_gguf(tmp_path)


def test_imatrix_entries_read_and_validated(tmp_path):
    entries = imatrix_entries(write_gguf(tmp_path / "imatrix.gguf", imatrix=True))
    sums, counts = entries["blk.0.ffn_down.weight"]
    assert sums.shape == (256,) and float(sums[0]) == 2.0 and float(counts[0]) == 4.0
    with pytest.raises(BielikError, match="no imatrix data"):
        imatrix_entries(write_gguf(tmp_path / "model.gguf"))


def test_pretokenizer_is_the_one_hf_applies(tiny_tokenizer, tiny_model, tmp_path):
    assert detect_pretokenizer(tiny_tokenizer) == "gpt-2"
    assert detect_pretokenizer(tiny_model) == "gpt-2"
    # the same tokenizer files in a qwen2 model directory: plain AutoTokenizer would swap in Qwen2Tokenizer
    # (digit-by-digit split); bielik trains with the tokenizer as saved, so the GGUF keeps GPT-2's split
    shutil.copytree(tiny_model, tmp_path / "q")
    cfg = json.loads((tmp_path / "q" / "config.json").read_text())
    (tmp_path / "q" / "config.json").write_text(
        json.dumps({**cfg, "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]})
    )
    assert detect_pretokenizer(tmp_path / "q") == "gpt-2"
    # a tokenizer saved as Qwen2Tokenizer (a real Qwen2 checkpoint) splits like Qwen2
    conf = json.loads((tmp_path / "q" / "tokenizer_config.json").read_text())
    (tmp_path / "q" / "tokenizer_config.json").write_text(json.dumps({**conf, "tokenizer_class": "Qwen2Tokenizer"}))
    assert detect_pretokenizer(tmp_path / "q") == "qwen2"


def test_pretokenizer_split_patterns():
    from bielik.quant.export import _LLAMA3, _QWEN2, pretokenizer_name

    for pattern, name in ((_LLAMA3, "llama-bpe"), (_QWEN2, "qwen2"), ("\\s+|\\w+", None)):
        tj = {
            "model": {"type": "BPE"},
            "pre_tokenizer": {
                "type": "Sequence",
                "pretokenizers": [
                    {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False},
                    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
                ],
            },
        }
        assert pretokenizer_name(tj) == name
    assert pretokenizer_name({"model": {"type": "Unigram"}, "pre_tokenizer": None}) is None


def test_export_refuses_bad_inputs_and_writes_nothing(tmp_path, tiny_model):
    out = tmp_path / "out"
    with pytest.raises(BielikError, match="no config.json"):
        export(ExportConfig(model=str(tmp_path), output=str(out)))
    m = tmp_path / "gpt2"
    shutil.copytree(tiny_model, m)
    cfg = json.loads((m / "config.json").read_text())
    (m / "config.json").write_text(json.dumps({**cfg, "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(BielikError, match="GPT2LMHeadModel.*not supported"):
        export(ExportConfig(model=str(m), output=str(out)))
    (m / "config.json").write_text(json.dumps(cfg))
    for f in m.glob("*.safetensors"):
        f.unlink()
    with pytest.raises(BielikError, match="no \\*.safetensors"):
        _check_model(m)
    assert not out.exists()
    with pytest.raises(ConfigError, match="outtype"):
        load_config(ExportConfig, None, ["model=x", "outtype=q4"])


def test_quantize_config_checks():
    assert load_config(QuantizeConfig, None, ["model=x"]).types == [
        "Q8_0",
        "Q6_K",
        "Q5_K_M",
        "Q4_K_M",
        "Q3_K_M",
        "Q2_K",
    ]
    with pytest.raises(ConfigError, match="IQ2_XXS.*need an importance matrix"):
        load_config(QuantizeConfig, None, ["model=x", "types=[Q4_K_M,IQ2_XXS]"])
    assert load_config(QuantizeConfig, None, ["model=x", "types=[iq2_xxs]", "imatrix=i.gguf"]).types == ["IQ2_XXS"]
    with pytest.raises(ConfigError, match="unknown quantisation type"):
        load_config(QuantizeConfig, None, ["model=x", "types=[Q4_K_XL]"])


def test_calibration_and_heldout_text_are_disjoint():
    from bielik.data.corpus import read_corpus

    calib, calib_langs = select_text(TextConfig(chars=60_000, mix={"pl": 2, "en": 1}), heldout=False)
    held, _ = select_text(TextConfig(chars=60_000, mix={"pl": 1}), heldout=True)
    assert calib_langs == {"pl": 40_000, "en": 20_000}
    held_docs = {d.text.strip()[:200] for d in read_corpus(["shipped"]) if is_heldout(d)}
    calib_docs = {d.text.strip()[:200] for d in read_corpus(["shipped"]) if not is_heldout(d)}
    assert 0.05 < len(held_docs) / (len(held_docs) + len(calib_docs)) < 0.15
    pieces = calib.split("\n\n")
    assert not any(p[:200] in held_docs for p in pieces if len(p) >= 200)
    assert any(p[:200] in held_docs for p in held.split("\n\n") if len(p) >= 200)
    with pytest.raises(DataError, match="'pl' held-out text"):
        select_text(TextConfig(chars=50_000_000, mix={"pl": 1}), heldout=True)


def test_toolchain_offline_is_a_clear_error(tmp_path, monkeypatch):
    from bielik import vendor  # the llama.cpp source the quant toolchain builds from

    monkeypatch.setenv("BIELIK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # what an offline machine sees: no index to fetch from
    with pytest.raises(BielikError, match="could not fetch the llama.cpp sources"):
        vendor.llama_cpp_source()
    assert not (tmp_path / "cache" / f"llama-cpp-python-{vendor.LLAMA_CPP_PYTHON_VERSION}").exists()
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".llama-cpp-python-fetch")]


def test_cli_refuses_a_truncated_gguf_cleanly(tmp_path):
    import subprocess
    import sys

    data = write_gguf(tmp_path / "m.gguf").read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) // 2])
    out = tmp_path / "q"
    res = subprocess.run(
        [sys.executable, "-m", "bielik.cli", "quant", "quantize", f"model={tmp_path / 'cut.gguf'}", f"output={out}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2
    assert "cut.gguf is a damaged or truncated GGUF file" in res.stderr and "Traceback" not in res.stderr
    assert not out.exists()
