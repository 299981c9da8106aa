"""End to end with the real llama.cpp tools: export -> imatrix -> quantize -> compare -> speed.

Slow-marked: on a machine without the cached toolchain the first test fetches the llama-cpp-python
sdist (~77 MB) and builds the tools (~8 min measured on 2 shared cores); then the whole
module takes about a minute. The fast suite covers the maths, formats and configs without it.
"""

import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from bielik.quant.compare import CompareConfig, compare, read_logprob_file
from bielik.quant.export import ExportConfig, export
from bielik.quant.gguf_file import read_gguf
from bielik.quant.imatrix import ImatrixConfig, compute_imatrix, imatrix_entries
from bielik.quant.quantize import QuantizeConfig, quantize
from bielik.quant.toolchain import build_tools, run_tool

pytestmark = pytest.mark.slow

TEXT = (
    "Rzeczpospolita Polska jest demokratycznym państwem prawnym, "
    "urzeczywistniającym zasady sprawiedliwości społecznej. "
    "Zażółć gęślą jaźń — źdźbło, chrząszcz brzmi w trzcinie w Szczebrzeszynie; 3,14 zł za 1000 km/h!\n"
) * 12


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, tiny_tokenizer):
    """A 2-layer Llama (hidden 256, FFN 768: K-quant friendly) exported, calibrated and quantised once."""
    from bielik.model.factory import ModelInitConfig, init_model

    build_tools()
    root = tmp_path_factory.mktemp("quant")
    # a larger init scale than training uses gives peaked, varied next-token distributions: a sharper parity test
    model = init_model(
        ModelInitConfig(
            preset="tiny-llama",
            tokenizer=str(tiny_tokenizer),
            output=str(root / "hf"),
            overrides={"num_hidden_layers": 2, "initializer_range": 0.08},
        )
    )
    f32 = export(ExportConfig(model=str(model), output=str(root / "gguf"), outtype="f32"))
    imat = compute_imatrix(
        ImatrixConfig(model=str(root / "gguf"), output=str(root / "imatrix"), text={"chars": 30_000}, ctx=128)
    )
    return {"root": root, "hf": model, "f32": f32, "imatrix": imat}


def test_export_metadata(pipeline):
    info = read_gguf(pipeline["f32"])
    assert info.architecture == "llama" and info.tensor_types == {"F32": info.tensor_types["F32"]}
    assert info.metadata["tokenizer.ggml.pre"] == "gpt-2"
    assert "tokenizer.chat_template" in info.metadata and info.metadata["llama.block_count"] == 2


def check_logits_parity(hf_dir, gguf_path, tmp_path):
    """llama.cpp's f32 log-probs on Polish text equal the HF model's up to the file's 16-bit storage steps."""
    from bielik.model.loading import load_hf_model
    from bielik.tokenizer.formats import load_hf_tokenizer

    (tmp_path / "t.txt").write_text(TEXT, encoding="utf-8")
    ctx = 64
    run_tool(
        "llama-perplexity",
        [
            "-m",
            str(gguf_path),
            "-f",
            str(tmp_path / "t.txt"),
            "--kl-divergence-base",
            str(tmp_path / "lp"),
            "-c",
            str(ctx),
            "-b",
            str(ctx),
            "--chunks",
            "3",
            "-t",
            "2",
            # f32 KV cache, no flash attention: the exact f32 path (defaults differ by ~5e-3)
            "-ctk",
            "f32",
            "-ctv",
            "f32",
            "-fa",
            "off",
        ],
        "test",
    )
    lp = read_logprob_file(tmp_path / "lp")
    tok = load_hf_tokenizer(hf_dir)  # as bielik opens it (and trains with it)
    hf_ids = tok(TEXT).input_ids
    # llama.cpp tokenises Polish text exactly like the HF tokenizer (the registered gpt-2 pre-tokenizer is right)
    np.testing.assert_array_equal(lp.tokens.reshape(-1), hf_ids[: lp.tokens.size])
    model = load_hf_model(hf_dir).eval()
    add_bos = bool(read_gguf(gguf_path).metadata.get("tokenizer.ggml.add_bos_token"))
    worst = 0.0
    for c in range(lp.n_chunk):
        ids = torch.tensor(lp.tokens[c], dtype=torch.long)[None].clone()
        if add_bos:
            ids[0, 0] = tok.bos_token_id  # llama-perplexity starts every window with BOS when the tokenizer adds one
        with torch.no_grad():
            ref = torch.log_softmax(model(ids).logits[0].double(), -1).numpy()[lp.first : ctx - 1]
        got = lp.logprobs(c)
        assert ref.std() > 0.5  # the distributions are not flat: the comparison has teeth
        step = np.ascontiguousarray(lp.records[c][:, :4]).view(np.float32)[:, :1]
        stored = ref > ref.max(axis=1, keepdims=True) - 16  # the file clamps what lies 16 nats below the top
        worst = max(worst, float((np.abs(got - ref) / step)[stored].max()))
    # the file stores log-probs in 16-bit steps (~1.3e-4 nats here): the two agree to within about half a step
    assert worst < 0.75, worst


def test_gguf_logits_match_hf_on_polish_text(pipeline, tmp_path):
    check_logits_parity(pipeline["hf"], pipeline["f32"], tmp_path)


@pytest.mark.parametrize("preset", ["tiny-mistral", "tiny-qwen2"])
def test_gguf_logits_match_hf_mistral_qwen2(preset, tiny_tokenizer, tmp_path):
    from bielik.model.factory import ModelInitConfig, init_model

    build_tools()
    hf = init_model(
        ModelInitConfig(
            preset=preset,
            tokenizer=str(tiny_tokenizer),
            output=str(tmp_path / "hf"),
            overrides={"num_hidden_layers": 2, "initializer_range": 0.08},
        )
    )
    if preset == "tiny-qwen2":  # random q/k/v biases, so the exported biases matter
        from safetensors.torch import load_file, save_file

        w = load_file(hf / "model.safetensors")
        g = torch.Generator().manual_seed(0)
        w = {k: (torch.randn(v.shape, generator=g) * 0.3 if k.endswith("proj.bias") else v) for k, v in w.items()}
        save_file(w, hf / "model.safetensors", metadata={"format": "pt"})
    gguf_path = export(ExportConfig(model=str(hf), output=str(tmp_path / "gguf"), outtype="f32"))
    assert read_gguf(gguf_path).architecture == {"tiny-mistral": "llama", "tiny-qwen2": "qwen2"}[preset]
    check_logits_parity(hf, gguf_path, tmp_path)


def test_torch_hooks_imatrix_agrees_with_llama_imatrix(pipeline):
    root = pipeline["root"]
    torch_file = compute_imatrix(
        ImatrixConfig(
            model=str(pipeline["hf"]),
            method="torch",
            output=str(root / "imatrix-torch"),
            text={"chars": 30_000},
            ctx=128,
        )
    )
    ours, theirs = imatrix_entries(torch_file), imatrix_entries(pipeline["imatrix"])
    assert sorted(ours) == sorted(theirs) and len(ours) == 14
    for name in theirs:
        (s1, c1), (s2, c2) = ours[name], theirs[name]
        assert float(c1.sum()) == float(c2.sum())  # the same token windows
        # both compute in f32, except llama.cpp's f16 KV cache: the first block's q/k/v inputs come before any
        # attention and agree to f32 summation rounding; everything after carries the f16 cache's ~1e-4 noise
        first = name.startswith("blk.0.attn_") and "output" not in name
        np.testing.assert_allclose(
            s1.ravel(), s2.ravel(), rtol=1e-4 if first else (2e-2 if "attn_output" in name else 2e-3), err_msg=name
        )


def test_imatrix_is_used_and_changes_the_result(pipeline):
    root = pipeline["root"]
    out = quantize(
        QuantizeConfig(
            model=str(pipeline["f32"]),
            output=str(root / "q"),
            types=["Q4_K_M", "Q2_K", "IQ2_XXS"],
            imatrix=str(root / "imatrix"),
        )
    )
    names = {f["file"] for f in out["files"]}
    assert names == {
        "model-Q4_K_M.gguf",
        "model-Q2_K.gguf",
        "model-Q4_K_M-imatrix.gguf",
        "model-Q2_K-imatrix.gguf",
        "model-IQ2_XXS-imatrix.gguf",
    }
    plain, weighted = (root / "q" / "model-Q2_K.gguf"), (root / "q" / "model-Q2_K-imatrix.gguf")
    assert read_gguf(weighted).metadata["quantize.imatrix.file"].endswith("imatrix.gguf")
    assert "quantize.imatrix.file" not in read_gguf(plain).metadata
    assert plain.read_bytes() != weighted.read_bytes()
    # a different importance matrix (English-only calibration) gives different weights again
    other = compute_imatrix(
        ImatrixConfig(
            model=str(pipeline["f32"]),
            output=str(root / "imatrix-en"),
            text={"chars": 30_000, "mix": {"en": 1.0}},
            ctx=128,
        )
    )
    quantize(
        QuantizeConfig(
            model=str(pipeline["f32"]),
            output=str(root / "q-en"),
            types=["Q2_K"],
            imatrix=str(other),
            without_imatrix=False,
        )
    )
    assert (root / "q-en" / "model-Q2_K-imatrix.gguf").read_bytes() != weighted.read_bytes()
    bpw = {f["file"]: f["bits_per_weight"] for f in out["files"]}
    assert bpw["model-Q4_K_M.gguf"] > bpw["model-Q2_K.gguf"] > bpw["model-IQ2_XXS-imatrix.gguf"]


def test_compare_agrees_with_llama_perplexity(pipeline):
    root = pipeline["root"]
    if not (root / "q").exists():
        pytest.skip("needs test_imatrix_is_used_and_changes_the_result's output")
    res = compare(
        CompareConfig(
            reference=str(root / "gguf"),
            models=[str(root / "q")],
            output=str(root / "cmp"),
            text={"chars": 20_000, "mix": {"pl": 1.0}},
            ctx=128,
        )
    )
    assert (root / "cmp" / "compare.md").is_file() and (root / "cmp" / "kld_vs_bpw.png").is_file()
    rows = {r["model"]: r for r in res["rows"]}
    assert rows["model-Q4_K_M.gguf"]["kld_mean"] < rows["model-Q2_K.gguf"]["kld_mean"]
    # llama.cpp's own --kl-divergence on the same text: the reference implementation of these statistics
    base = root / "cmp" / "ref.lp"
    run_tool(
        "llama-perplexity",
        [
            "-m",
            str(pipeline["f32"]),
            "-f",
            str(root / "cmp" / "heldout.txt"),
            "--kl-divergence-base",
            str(base),
            "-c",
            "128",
            "-b",
            "128",
            "-t",
            "2",
        ],
        "test",
    )
    # llama.cpp leaks its asynchronous logger at exit and loses the final lines about half the time (its
    # common/log.cpp says so; ggml-org/llama.cpp#22142); bielik's compare reads files, this check reads the log
    for _ in range(10):
        out = run_tool(
            "llama-perplexity",
            [
                "-m",
                str(root / "q" / "model-Q2_K.gguf"),
                "--kl-divergence-base",
                str(base),
                "--kl-divergence",
                "-c",
                "128",
                "-b",
                "128",
                "-t",
                "2",
            ],
            "test",
        )
        if "Same top p:" in out:
            break

    def grab(pattern: str) -> float:
        m = re.search(pattern, out)
        assert m, f"{pattern!r} not in llama-perplexity's output:\n" + "\n".join(out.splitlines()[-40:])
        return float(m.group(1))

    theirs = {
        "kld_mean": grab(r"Mean\s+KLD:\s+([-0-9.]+)"),
        "same_top_pct": grab(r"Same top p:\s+([0-9.]+)"),
        "dp_rms_pct": grab(r"RMS Δp\s*:\s+([0-9.]+)"),
        "ppl": grab(r"Mean PPL\(Q\)\s*:\s+([0-9.]+)"),
    }
    ours = rows["model-Q2_K.gguf"]
    assert ours["kld_mean"] == pytest.approx(theirs["kld_mean"], rel=0.02, abs=2e-4)
    assert ours["ppl"] == pytest.approx(theirs["ppl"], rel=1e-3)
    assert ours["dp_rms_pct"] == pytest.approx(theirs["dp_rms_pct"], abs=0.05)
    assert ours["same_top_pct"] == pytest.approx(theirs["same_top_pct"], abs=0.5)


def test_cli_speed_and_clean_errors(pipeline, tmp_path):
    q = pipeline["root"] / "q" / "model-Q4_K_M.gguf"
    if not q.exists():
        pytest.skip("needs the quantised files")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "bielik.cli",
            "bench",
            "speed",
            f"models=[{pipeline['hf']},{q}]",
            "hf_dtypes=[float32]",
            "runs=2",
            "prompt_tokens=32",
            "new_tokens=8",
            f"output={tmp_path / 'speed'}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    assert "llama.cpp" in res.stdout and "transformers" in res.stdout and (tmp_path / "speed" / "speed.json").is_file()
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "bielik.cli",
            "quant",
            "compare",
            f"reference={pipeline['f32']}",
            f"models=[{tmp_path / 'nothing.gguf'}]",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr


def test_recipe_runs_every_quant_stage(tmp_path):
    from bielik.recipe import load_recipe, run_recipe
    from tests.conftest import REPO

    build_tools()
    overrides = [
        f"run_dir={tmp_path}",
        "tokenizer.vocab_size=1024",
        "tokenizer.max_chars=300000",
        "data.max_tokens=60000",
        "init.overrides={num_hidden_layers: 1}",
        "pretrain.train.steps=2",
        "pretrain.train.eval.every=0",
        "imatrix.text.chars=20000",
        "imatrix.ctx=64",
        "quantize.types=[Q4_K_M,IQ2_XXS]",
        "compare.text.chars=15000",
        "compare.ctx=64",
        "speed.runs=1",
        "speed.prompt_tokens=16",
        "speed.new_tokens=4",
        "speed.hf_dtypes=[float32]",
    ]
    results = run_recipe(load_recipe(REPO / "recipes" / "quant-tiny.yaml", overrides))
    rows = {(r["type"], r["imatrix"]) for r in results["compare"]["rows"]}
    assert rows == {("Q4_K_M", False), ("Q4_K_M", True), ("IQ2_XXS", True)}
    assert {r["engine"] for r in results["speed"]} == {"transformers", "llama.cpp"} and len(results["speed"]) == 3
    for stage in ("export", "imatrix", "quantize", "compare", "speed"):
        assert (tmp_path / stage / "metrics.json").is_file() and (tmp_path / stage / "lineage.json").is_file()
    # a second run finds every stage done and skips it
    planned = run_recipe(load_recipe(REPO / "recipes" / "quant-tiny.yaml", overrides), dry_run=True)
    assert all(p["status"].startswith("done") for p in planned.values()), planned
    again = run_recipe(load_recipe(REPO / "recipes" / "quant-tiny.yaml", overrides))
    assert all(isinstance(v, str) for v in again.values())  # a skipped stage returns its output path


def test_export_refuses_a_pretokenizer_llama_cpp_lacks(tiny_model, tmp_path):
    import json
    import shutil

    from bielik.errors import BielikError

    m = tmp_path / "m"
    shutil.copytree(tiny_model, m)
    tj = json.loads((m / "tokenizer.json").read_text())
    tj["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "\\d{2}|\\s+|[^\\s\\d]+"}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        ],
    }
    (m / "tokenizer.json").write_text(json.dumps(tj))
    with pytest.raises(BielikError, match="pre-tokenizer is not one llama.cpp implements"):
        export(ExportConfig(model=str(m), output=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()
