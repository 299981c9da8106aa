"""The one held-out NLL evaluator (bielik.model.heldout) against the computations it replaced: the
tokenizer-swap loss (full logits per window), lm-eval's rolling windows, and the engine's objective-level
held-out loss on the same batch."""

import math

import pytest
import torch
from torch.nn import functional as F

from bielik.data.corpus import shipped_corpus_dir
from bielik.model.heldout import rolling_windows, token_nll, window_nll
from bielik.model.loading import load_hf_model
from bielik.model.swap import heldout_loss
from bielik.tokenizer.formats import load_hf_tokenizer
from bielik.train.distributed import Dist
from bielik.train.engine import Engine
from bielik.train.objectives import CausalLM
from tests.conftest import engine_config
from tests.train.test_contract import Rows, micro_llama


def test_rolling_windows_predict_every_token_once():
    toks = list(range(10, 20))
    assert rolling_windows(toks, 4, prefix=1) == [
        ([1, 10, 11, 12], [10, 11, 12, 13]),
        ([13, 14, 15, 16], [14, 15, 16, 17]),
        ([17, 18], [18, 19]),
    ]
    # no prefix: the first token is context only (the tokenizer-swap stream)
    assert rolling_windows(toks, 4, prefix=None) == [
        ([10, 11, 12, 13], [11, 12, 13, 14]),
        ([14, 15, 16, 17], [15, 16, 17, 18]),
        ([18], [19]),
    ]


def _old_swap_loss(model, ids, seq_len):
    """tokenizer swap's held-out loss before the shared evaluator: full logits, one window per forward."""
    total, count, data = 0.0, 0, torch.tensor(ids)
    for start in range(0, len(ids) - 1, seq_len):
        chunk = data[start : start + seq_len + 1]
        with torch.no_grad():
            logits = model(chunk[None, :-1]).logits[0].float()
        total += F.cross_entropy(logits, chunk[1:], reduction="sum").item()
        count += len(chunk) - 1
    return total, count


def test_swap_heldout_loss_is_unchanged(tiny_model):
    model, tok = load_hf_model(tiny_model).eval(), load_hf_tokenizer(tiny_model)
    corpus = [str(shipped_corpus_dir() / "pl_ntrex_news.jsonl.gz")]
    got = heldout_loss(model, tok, corpus, ["pl"], max_tokens=700, seq_len=64)
    from bielik.data.corpus import read_corpus

    ids = []
    for doc in read_corpus(corpus):
        if doc.lang == "pl" and len(ids) < 700:
            d = tok(doc.text, add_special_tokens=False).input_ids
            take = d[: 700 - len(ids)]
            ids += take + ([tok.eos_token_id] if len(take) == len(d) else [])
    total, count = _old_swap_loss(model, ids, 64)
    assert got["tokens"] == count == 699
    assert got["loss"] == pytest.approx(total / count, rel=1e-6)
    assert got["bits_per_char"] == pytest.approx(total / math.log(2) / got["characters"], rel=1e-6)


def test_batched_padded_windows_equal_one_at_a_time():
    model = micro_llama(0).eval()
    toks = torch.randint(0, 16, (50,), generator=torch.Generator().manual_seed(3)).tolist()
    windows = rolling_windows(toks, 12, prefix=1)
    one = window_nll(model, windows, batch_tokens=1, chunk=5)
    batched = window_nll(model, windows, batch_tokens=1000, chunk=5)
    assert len(one) == 5 and batched == pytest.approx(one, rel=1e-5)
    with torch.no_grad():
        ref = -torch.log_softmax(model(torch.tensor([windows[0][0]])).logits[0].float(), -1)
    assert one[0] == pytest.approx(float(ref.gather(1, torch.tensor(windows[0][1])[:, None]).sum()), rel=1e-5)


def test_non_plain_head_uses_the_models_own_logits():
    model = micro_llama(0).eval()
    model.lm_head = torch.nn.Linear(32, 16, bias=True)  # a biased head: the chunked head path would drop the bias
    ids = torch.randint(0, 16, (2, 9), generator=torch.Generator().manual_seed(1))
    got = token_nll(model, ids[:, :-1], ids[:, 1:])
    with torch.no_grad():
        ref = F.cross_entropy(model(ids[:, :-1]).logits.float().transpose(1, 2), ids[:, 1:], reduction="none")
    torch.testing.assert_close(got, ref)


def test_engine_held_out_loss_equals_the_evaluator(tmp_path):
    rows = Rows()
    batches = [{"input_ids": rows.data[i : i + 4]} for i in (0, 4, 8)]
    eng = Engine(
        engine_config(lm_head_chunk=8),
        micro_llama(0),
        CausalLM(chunk=8),
        rows,
        tmp_path,
        Dist(),
        seq_len=12,
        eval_batches=lambda: batches,
    )
    ev = eng.evaluate()
    ids = torch.cat([b["input_ids"] for b in batches])
    nll = token_nll(eng.hf_model, ids[:, :-1], ids[:, 1:], chunk=8)
    assert ev["val_units"] == nll.numel()
    assert ev["val_loss"] == pytest.approx(float(nll.double().mean()), rel=1e-6)
    assert ev["val_ppl"] == pytest.approx(math.exp(float(nll.double().mean())), rel=1e-6)
