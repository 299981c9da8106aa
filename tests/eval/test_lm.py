"""The fast scorer against plain full-sequence computations on the same model."""

from __future__ import annotations

import math

import pytest
import torch

from bielik.errors import BielikError
from bielik.eval.lm import Choices, perplexity

CONTEXTS = [
    'Opinia: "Pani doktor jest rzeczowa ."\nSentyment:',
    'Tytuł: "Nowy film w kinach"\nKategoria:',
    "Pytanie: kto? \n Odpowiedź:   ",
    'Zdanie: "Warszawa"\nRodzaj:',
]
CHOICES = [" Neutralny", " Negatywny", " Brak nazwanej jednostki", " A", " Tak"]


def naive(model, ctx: list[int], cont: list[int]) -> tuple[float, bool]:
    """lm-eval's HF computation: one row, input (ctx + cont)[:-1], log-softmax over the vocabulary."""
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([(ctx + cont)[:-1]])).logits[0].float(), -1)[-len(cont) :]
    t = torch.tensor(cont)
    return float(lp.gather(1, t[:, None]).sum()), bool((lp.argmax(-1) == t).all())


def test_shared_prefix_loglikelihood_equals_full_rows(eval_lm):
    docs = [eval_lm.encode_choices(c, CHOICES) for c in CONTEXTS]
    assert any(max(map(len, d.continuations)) > 1 for d in docs) and any(
        min(map(len, d.continuations)) == 1 for d in docs
    )
    got = eval_lm.loglikelihood(docs)
    for d, res in zip(docs, got):
        for cont, (ll, greedy) in zip(d.continuations, res):
            ref, ref_greedy = naive(eval_lm.model, d.context, cont)
            assert ll == pytest.approx(ref, abs=1e-4) and greedy == ref_greedy


def test_encode_pair_moves_trailing_space_and_handles_empty_context(eval_lm):
    ctx, cont = eval_lm.encode_pair("Odpowiedź: ", "Tak")
    assert eval_lm.tok.decode(ctx, skip_special_tokens=True) == "Odpowiedź:"
    assert eval_lm.tok.decode(cont) == " Tak"
    ctx, cont = eval_lm.encode_pair("", "Tak")
    assert ctx == [eval_lm.prefix_id]


def test_truncation_follows_lm_eval(eval_lm):
    old = eval_lm.max_length
    eval_lm.max_length = 12
    try:
        doc = eval_lm.encode_choices(" ".join(["słowo"] * 30), [" Tak", " Nie wiem zupełnie"])
        res = eval_lm.loglikelihood([doc])[0]
        for cont, (ll, _) in zip(doc.continuations, res):
            inp = (doc.context + cont)[-13:]
            ref, _ = naive(eval_lm.model, inp[: len(inp) - len(cont)], cont)
            assert ll == pytest.approx(ref, abs=1e-4)
    finally:
        eval_lm.max_length = old


def test_batched_generation_equals_hf_generate(eval_lm):
    prompts = [c + " B" * i for i, c in enumerate(CONTEXTS * 2)]
    until = [".", ","]
    got = eval_lm.generate_until(prompts, until, 16)
    for p, g in zip(prompts, got):
        ids = torch.tensor([eval_lm.encode(p)])
        with torch.no_grad():
            out = eval_lm.model.generate(ids, max_new_tokens=16, do_sample=False, pad_token_id=eval_lm.pad_id)
        text = eval_lm.tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        for s in until:
            text = text.split(s)[0]
        assert g == text


def test_rolling_loglikelihood_and_perplexity(eval_lm):
    text = "Rzeczpospolita Polska jest demokratycznym państwem prawnym. " * 3
    toks = eval_lm.tok.encode(text, add_special_tokens=False)
    ((ll, n),) = eval_lm.loglikelihood_rolling([text], window=7)
    ref, prev = 0.0, eval_lm.prefix_id
    for s in range(0, len(toks), 7):
        chunk = toks[s : s + 7]
        ref += naive(eval_lm.model, [prev], chunk)[0]
        prev = chunk[-1]
    assert n == len(toks) and ll == pytest.approx(ref, abs=1e-3)
    assert perplexity([(ll, n)]) == pytest.approx(math.exp(-ll / n))


def test_choices_share_lm_evals_context_tokens(eval_lm):
    """Every choice keeps lm-eval's own per-pair (context, continuation) token split, also where the
    context's last token would merge with the continuation, with trailing spaces and with no context."""
    for ctx, choices in [
        ("Kategoria:", [" A", " B"]),
        ("Kategori", ["a:", " B"]),
        ("Odpowiedź: ", ["Tak", "Nie"]),
        ("", ["Tak", " Nie"]),
    ]:
        doc = eval_lm.encode_choices(ctx, choices)
        assert isinstance(doc, Choices) and len(doc.continuations) == len(choices)
        assert [(doc.context, c) for c in doc.continuations] == [eval_lm.encode_pair(ctx, c) for c in choices]


def test_continuation_merged_into_the_context_is_a_clear_error(eval_lm):
    """'Odpowied' + 'ź' can tokenise to fewer tokens than the context alone: no token to score."""
    cases = [(w[:k], w[k:]) for w in ("Odpowiedź", "ziemię", "się", "więcej", "będzie") for k in range(1, len(w))]
    merged = [(c, x) for c, x in cases if len(eval_lm.encode(c + x)) <= len(eval_lm.encode(c))]
    assert merged, "the tiny tokenizer should merge at least one of these word splits"
    with pytest.raises(BielikError, match="adds no token"):
        eval_lm.encode_pair(*merged[0])
