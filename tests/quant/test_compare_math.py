"""The comparison statistics against hand computations, and llama-perplexity's log-probability file format."""

import math

import numpy as np
import pytest

from bielik.errors import BielikError
from bielik.quant.compare import compare_files, markdown_table, plot_kld, read_logprob_file, summarise, token_stats


def test_token_stats_match_hand_computation():
    p = np.array([[0.5, 0.25, 0.25], [0.1, 0.6, 0.3]])
    q = np.array([[0.25, 0.5, 0.25], [0.2, 0.6, 0.2]])
    targets = np.array([0, 1])
    s = summarise(token_stats(np.log(p), np.log(q), targets))
    kld1 = 0.5 * math.log(2) + 0.25 * math.log(0.5)  # = ln(2)/4
    kld2 = 0.1 * math.log(0.1 / 0.2) + 0.3 * math.log(0.3 / 0.2)
    assert s["kld_mean"] == pytest.approx((kld1 + kld2) / 2, rel=1e-12)
    assert s["kld_max"] == pytest.approx(max(kld1, kld2), rel=1e-12)
    assert s["kld_median"] == pytest.approx((kld1 + kld2) / 2, rel=1e-12)
    assert s["ppl_ref"] == pytest.approx(1 / math.sqrt(0.5 * 0.6), rel=1e-12)
    assert s["ppl"] == pytest.approx(1 / math.sqrt(0.25 * 0.6), rel=1e-12)
    assert s["delta_ppl"] == pytest.approx(1 / math.sqrt(0.15) - 1 / math.sqrt(0.3), rel=1e-12)
    assert s["dp_mean_pct"] == pytest.approx(100 * (-0.25 + 0.0) / 2, rel=1e-12)
    assert s["dp_rms_pct"] == pytest.approx(100 * math.sqrt(0.25**2 / 2), rel=1e-12)
    assert s["same_top_pct"] == pytest.approx(50.0)
    assert s["tokens"] == 2


def test_kld_ignores_reference_entries_below_the_floor_like_llama_cpp():
    ref = np.log(np.array([[1 - 2e-9, 1e-9, 1e-9]]))  # two entries with log p ~ -20.7 < -16
    q = np.log(np.array([[1 - 2e-18, 1e-18, 1e-18]]))
    kld = token_stats(ref, q, np.array([0]))["kld"][0]
    assert kld == pytest.approx((1 - 2e-9) * (math.log(1 - 2e-9) - math.log(1 - 2e-18)), abs=1e-15)


def test_identical_distributions_give_zero():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(7, 11))
    lp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    s = summarise(token_stats(lp, lp, rng.integers(0, 11, 7)))
    assert s["kld_mean"] == 0 and s["delta_ppl"] == 0 and s["dp_rms_pct"] == 0 and s["same_top_pct"] == 100


def encode_like_llama_perplexity(logits: np.ndarray) -> np.ndarray:
    """One record per position, as tools/perplexity/perplexity.cpp's log_softmax(..., uint16_t*) writes it."""
    n_vocab = logits.shape[1]
    nv = 2 * ((n_vocab + 1) // 2) + 4
    out = np.zeros((len(logits), nv), dtype=np.uint16)
    for i, row in enumerate(logits.astype(np.float32)):
        mx, mn = row.max(), max(row.min(), row.max() - 16)
        lse = np.float32(np.log(np.exp(row - mx).sum()))
        scale = np.float32((mx - mn) / 65535)
        out[i, :4] = np.array([scale, mn - mx - lse], dtype=np.float32).view(np.uint16)
        out[i, 4 : 4 + n_vocab] = np.where(row > mn, np.rint((row - mn) / scale), 0)
    return out


def write_logprob_file(path, tokens: np.ndarray, logits: np.ndarray) -> None:
    """tokens [n_chunk, n_ctx]; logits [n_chunk, n_scored, n_vocab]."""
    n_chunk, n_ctx = tokens.shape
    with open(path, "wb") as fh:
        fh.write(b"_logits_")
        fh.write(np.array([n_ctx, logits.shape[2], n_chunk], dtype=np.int32).tobytes())
        fh.write(tokens.astype(np.int32).tobytes())
        for c in range(n_chunk):
            fh.write(encode_like_llama_perplexity(logits[c]).tobytes())


@pytest.fixture
def two_models(tmp_path):
    rng = np.random.default_rng(1)
    n_chunk, n_ctx, vocab = 3, 8, 13  # odd vocab: records are padded to an even length
    n_scored = n_ctx - 1 - n_ctx // 2
    tokens = rng.integers(0, vocab, (n_chunk, n_ctx))
    ref = rng.normal(scale=2.0, size=(n_chunk, n_scored, vocab))
    other = ref + rng.normal(scale=0.3, size=ref.shape)
    write_logprob_file(tmp_path / "ref.lp", tokens, ref)
    write_logprob_file(tmp_path / "q.lp", tokens, other)
    return tmp_path, tokens, ref, other


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_logprob_file_decodes_to_log_softmax(two_models):
    tmp, tokens, ref, _ = two_models
    f = read_logprob_file(tmp / "ref.lp")
    assert (f.n_ctx, f.n_vocab, f.n_chunk) == (8, 13, 3)
    for c in range(3):
        np.testing.assert_allclose(f.logprobs(c), _log_softmax(ref[c]), atol=2e-4)  # 16-bit steps of <= 16/65535
        np.testing.assert_array_equal(f.targets(c), tokens[c, 5:])


def test_compare_files_equals_exact_statistics(two_models):
    tmp, tokens, ref, other = two_models
    got = compare_files(read_logprob_file(tmp / "ref.lp"), read_logprob_file(tmp / "q.lp"))
    targets = np.concatenate([tokens[c, 5:] for c in range(3)])
    exact = summarise(token_stats(_log_softmax(ref.reshape(-1, 13)), _log_softmax(other.reshape(-1, 13)), targets))
    assert got["tokens"] == exact["tokens"] == 9
    for key in ("kld_mean", "ppl", "ppl_ref", "dp_mean_pct", "dp_rms_pct", "same_top_pct"):
        assert got[key] == pytest.approx(exact[key], rel=2e-3, abs=1e-4), key


def test_truncated_or_foreign_logprob_file_is_a_clear_error(two_models, tmp_path):
    tmp, *_ = two_models
    data = (tmp / "ref.lp").read_bytes()
    (tmp_path / "cut.lp").write_bytes(data[:-10])
    with pytest.raises(BielikError, match="truncated"):
        read_logprob_file(tmp_path / "cut.lp")
    (tmp_path / "foreign.lp").write_bytes(b"GGUF" + data[4:])
    with pytest.raises(BielikError, match="not a llama-perplexity"):
        read_logprob_file(tmp_path / "foreign.lp")


def test_different_tokens_refused(two_models, tmp_path):
    tmp, tokens, ref, _ = two_models
    write_logprob_file(tmp_path / "other.lp", tokens[::-1].copy(), ref)
    with pytest.raises(BielikError, match="same tokens"):
        compare_files(read_logprob_file(tmp / "ref.lp"), read_logprob_file(tmp_path / "other.lp"))


def test_table_and_plot(tmp_path):
    row = {
        "model": "m-Q4_K_M.gguf",
        "type": "Q4_K_M",
        "imatrix": False,
        "gib": 0.01,
        "bits_per_weight": 4.9,
        "ppl": 10.0,
        "delta_ppl": 0.5,
        "kld_mean": 0.02,
        "kld_stderr": 0.001,
        "kld_p99": 0.2,
        "dp_mean_pct": -0.5,
        "dp_rms_pct": 3.0,
        "same_top_pct": 91.0,
    }
    result = {
        "reference": {"model": "m-f32.gguf", "type": "ALL_F32", "bits_per_weight": 32.0, "ppl": 9.5},
        "text": {"characters": {"pl": 1000}, "ctx": 64},
        "rows": [row, {**row, "imatrix": True, "kld_mean": 0.01}],
    }
    md = markdown_table(result)
    # compare.md is the report's table of the stage (one renderer)
    assert "| m-Q4_K_M.gguf | Q4_K_M | no | 0.0100 | 4.90 | 10.0000 | +0.5000 | 0.02000 | 0.00100 |" in md
    assert "reference m-f32.gguf (ALL_F32, 32.00 bits/weight), PPL 9.5000 on 1,000 held-out characters" in md
    assert md.count("\n| m-Q4_K_M") == 2
    plot_kld(result["rows"], tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
