"""The shared sampler against independent references: HF ``generate``, a teacher-forced forward,
hand-made distributions, and itself run row by row."""

from __future__ import annotations

import pytest
import torch

from bielik.errors import BielikError
from bielik.model.generation import (
    DecodeTimings,
    HFForward,
    SamplingParams,
    next_tokens,
    sample,
    top_k_filter,
    top_p_filter,
)
from bielik.model.kv_cache import _length_groups

PROMPTS = [
    "Litwo! Ojczyzno moja!",
    "Rzeczpospolita Polska jest",
    "W 2024 r. kosztowało to 1234,56 zł (art. 15 ust. 2), a w",
    "Pan",
]


@pytest.fixture(scope="module")
def lm(tiny_model):
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32, attn_implementation="sdpa").eval()
    tok = PreTrainedTokenizerFast.from_pretrained(str(tiny_model))
    return model, tok, [tok.encode(p) for p in PROMPTS]


class Counting:
    """A ForwardFn around the HF adapter that records the batch size of every call."""

    def __init__(self, model):
        self.inner, self.rows = HFForward(model), []

    def new_cache(self, capacity):
        return self.inner.new_cache(capacity)

    def __call__(self, input_ids, attention_mask, position_ids, cache):
        self.rows.append(input_ids.shape[0])
        return self.inner(input_ids, attention_mask, position_ids, cache)


def hf_greedy(model, ids: list[int], n: int, **kw) -> list[int]:
    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=n,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=None,
            **kw,
        )
    return out[0, len(ids) :].tolist()


def test_greedy_batch_equals_hf_generate_and_single_rows(lm):
    model, tok, ids = lm
    ids = ids + [p[:-1] for p in ids if len(p) > 2]
    groups = _length_groups([len(p) for p in ids])
    assert len(groups) > 1 and any(
        len({len(ids[i]) for i in g}) > 1 for g in groups
    )  # prefill groups, padding inside one
    batch = sample(model, ids, SamplingParams(max_new_tokens=12), tok, pad_id=tok.pad_token_id)
    plain = HFForward(model)  # a bare function: transformers' DynamicCache, one padded prefill forward
    assert [c.token_ids for c in sample(lambda *a: plain(*a), ids, SamplingParams(max_new_tokens=12), tok)] == [
        c.token_ids for c in batch
    ]
    for p, c in zip(ids, batch):
        assert c.token_ids == hf_greedy(model, p, 12)
        assert c.finish_reason == "length" and c.text == tok.decode(c.token_ids, skip_special_tokens=True)
        [alone] = sample(model, [p], SamplingParams(max_new_tokens=12), tok)
        assert alone.token_ids == c.token_ids


def test_repetition_penalty_equals_hf_generate(lm):
    model, tok, ids = lm
    got = sample(model, ids, SamplingParams(max_new_tokens=10, repetition_penalty=1.3), tok, pad_id=tok.pad_token_id)
    for p, c in zip(ids, got):
        assert c.token_ids == hf_greedy(model, p, 10, repetition_penalty=1.3)


def _pieces(tok, ids: list[int]) -> list[str]:
    texts = [tok.decode(ids[:k], skip_special_tokens=True) for k in range(len(ids) + 1)]
    return [texts[k + 1][len(texts[k]) :] for k in range(len(ids))]


def test_stop_string_spanning_two_tokens_cuts_exactly(lm):
    model, tok, ids = lm
    free = sample(model, ids, SamplingParams(max_new_tokens=24), tok, pad_id=tok.pad_token_id)
    checked = 0
    for p, ref in zip(ids, free):
        pieces = _pieces(tok, ref.token_ids)
        for k in range(len(pieces) - 1):
            stop = pieces[k][-1:] + pieces[k + 1][:1]
            if len(stop) < 2 or any(stop in piece for piece in pieces):
                continue  # want a stop string no single token holds
            n = next(n for n in range(1, len(pieces) + 1) if stop in "".join(pieces[:n]))
            [got] = sample(model, [p], SamplingParams(max_new_tokens=24, stop=(stop, "never-generated")), tok)
            assert got.finish_reason == "stop"
            assert got.token_ids == ref.token_ids[:n]  # stopped on the token that completed the stop string
            assert got.text == ref.text[: ref.text.index(stop)]
            checked += 1
            break
    assert checked >= 2


def test_stop_token_ends_one_row_while_the_others_continue(lm):
    model, tok, ids = lm
    free = sample(model, ids, SamplingParams(max_new_tokens=12), tok, pad_id=tok.pad_token_id)
    eos = next(t for t in free[0].token_ids[2:] if t not in free[1].token_ids)  # ends row 0 early, never row 1
    counting = Counting(model)
    got = sample(counting, ids, SamplingParams(max_new_tokens=12, stop_token_ids={eos}), tok, pad_id=tok.pad_token_id)
    for ref, c in zip(free, got):
        cut = ref.token_ids.index(eos) + 1 if eos in ref.token_ids else len(ref.token_ids)
        assert c.token_ids == ref.token_ids[:cut]
        assert c.finish_reason == ("eos" if eos in ref.token_ids else "length")
        assert c.text == tok.decode(
            c.token_ids[:-1] if c.finish_reason == "eos" else c.token_ids, skip_special_tokens=True
        )
    assert got[0].finish_reason == "eos" and got[1].finish_reason == "length"
    decode = counting.rows[len(_length_groups([len(p) for p in ids])) :]
    assert decode[0] == len(ids) and min(decode) < len(ids)  # the finished row left the batch


def test_lockstep_runs_every_step(lm):
    model, tok, ids = lm
    free = sample(model, ids, SamplingParams(max_new_tokens=2), tok, pad_id=tok.pad_token_id)
    firsts = {c.token_ids[0] for c in free}  # every row stops on its first token
    groups = len(_length_groups([len(p) for p in ids]))
    assert groups > 1
    for lockstep, calls in ((False, groups), (True, 8)):  # lockstep: one prefill forward, then every decode step
        counting = Counting(model)
        got = sample(
            counting,
            ids,
            SamplingParams(max_new_tokens=8, stop_token_ids=firsts, lockstep=lockstep),
            tok,
            pad_id=tok.pad_token_id,
        )
        assert len(counting.rows) == calls
        assert [c.token_ids for c in got] == [c.token_ids[:1] for c in free]
        assert all(c.finish_reason == "eos" and c.text == "" for c in got)
    assert counting.rows[1:] == [1] * 7  # one finished row rides along


def test_sampling_is_reproducible_and_tiny_top_p_is_greedy(lm):
    model, tok, ids = lm
    params = SamplingParams(max_new_tokens=10, temperature=1.0, top_p=0.9, top_k=50)

    def run(seed, p=params):
        return [
            c.token_ids
            for c in sample(model, ids, p, tok, pad_id=tok.pad_token_id, generator=torch.Generator().manual_seed(seed))
        ]

    assert run(1) == run(1)
    assert run(1) != run(2)
    greedy = [c.token_ids for c in sample(model, ids, SamplingParams(max_new_tokens=10), tok, pad_id=tok.pad_token_id)]
    assert run(3, SamplingParams(max_new_tokens=10, temperature=1.0, top_p=1e-6)) == greedy


def test_logprobs_equal_a_teacher_forced_forward(lm):
    model, tok, ids = lm
    got = sample(
        model,
        ids,
        SamplingParams(max_new_tokens=8, temperature=1.5, top_p=0.8, return_logprobs=True),
        tok,
        pad_id=tok.pad_token_id,
        generator=torch.Generator().manual_seed(0),
    )
    for p, c in zip(ids, got):
        with torch.no_grad():
            logits = model(torch.tensor([p + c.token_ids])).logits[0].float()
        ref = logits.log_softmax(-1)[len(p) - 1 : -1].gather(1, torch.tensor(c.token_ids)[:, None]).squeeze(1)
        assert c.logprobs == pytest.approx(ref.tolist(), abs=1e-4)


def test_top_p_and_top_k_keep_the_right_tokens():
    probs = torch.tensor([0.15, 0.5, 0.05, 0.3])  # order: 1 (0.5), 3 (0.3), 0 (0.15), 2 (0.05)
    logits = probs.log()[None]
    kept = lambda z: set(torch.isfinite(z[0]).nonzero().flatten().tolist())  # noqa: E731
    assert kept(top_p_filter(logits, 0.4)) == {1}
    assert kept(top_p_filter(logits, 0.75)) == {1, 3}
    assert kept(top_p_filter(logits, 0.85)) == {1, 3, 0}
    assert kept(top_p_filter(logits, 0.99)) == {0, 1, 2, 3}
    assert kept(top_k_filter(logits, 2)) == {1, 3}
    assert torch.equal(top_p_filter(logits, 0.75)[0, [1, 3]], logits[0, [1, 3]])  # kept logits unchanged
    draws = next_tokens(
        logits.repeat(20000, 1), SamplingParams(temperature=1.0, top_p=0.75), torch.Generator().manual_seed(0)
    )
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    assert freq.tolist() == pytest.approx([0.0, 0.5 / 0.8, 0.0, 0.3 / 0.8], abs=0.015)


def test_timings_and_errors(lm):
    model, tok, ids = lm
    timings = DecodeTimings()
    sample(model, ids[:1], SamplingParams(max_new_tokens=5), timings=timings)
    assert timings.first_token > 0 and len(timings.steps) == 4 and timings.per_token > 0
    with pytest.raises(BielikError, match="tokenizer"):
        sample(model, ids, SamplingParams(stop=(".",)))
    with pytest.raises(BielikError, match="at least one token"):
        sample(model, [ids[0], []], SamplingParams())
    with pytest.raises(BielikError, match="top_p"):
        SamplingParams(top_p=0.0)


@pytest.mark.parametrize("preset,overrides", [("tiny-mistral", {"sliding_window": 6}), ("tiny-qwen2", {})])
def test_other_architectures_and_sliding_window_match_hf_generate(tmp_path, preset, overrides):
    """Mistral's sliding-window layers keep transformers' own cache layer; Qwen2 has biased q/k/v projections."""
    from transformers import AutoModelForCausalLM

    from tests.model.tiny_models import save_tiny

    model = AutoModelForCausalLM.from_pretrained(
        save_tiny(tmp_path / preset, preset, **overrides), dtype=torch.float32
    ).eval()
    prompts = [[1, 5, 9, 13, 200, 7, 7, 31], [1, 44], [1, 250, 3, 3, 90]]
    stop = {
        sample(model, prompts[:1], SamplingParams(max_new_tokens=3))[0].token_ids[2]
    }  # row 0 leaves the batch early
    got = sample(model, prompts, SamplingParams(max_new_tokens=10, stop_token_ids=stop))
    assert got[0].finish_reason == "eos"
    for p, c in zip(prompts, got):
        ref = hf_greedy(model, p, 10)
        cut = next((i + 1 for i, t in enumerate(ref) if t in stop), len(ref))
        assert c.token_ids == ref[:cut]
