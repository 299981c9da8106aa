"""Packing dialogues into rows, and the batch source that serves them."""

import numpy as np
import pytest
import torch

from bielik.data.chat import parse_dialogue
from bielik.data.chat_rows import (
    IGNORE_INDEX,
    ChatRows,
    EncodedDialogue,
    build_sft_data,
    encode_dialogues,
    pack_dialogues,
)
from bielik.errors import DataError
from bielik.train.batches import ChatRowBatches, eval_chat_batches

PAD = 3


def _synthetic(lengths, seed=0):
    """Dialogues with recognisable tokens: dialogue k is made of token 100+k, trained from its middle on."""
    out = []
    for k, n in enumerate(lengths):
        mask = np.zeros(n, dtype=bool)
        mask[n // 2 :] = True
        out.append(EncodedDialogue(np.full(n, 100 + k, dtype=np.int32), mask, weight=0.5 + (k % 3) * 0.25, key=f"d{k}"))
    return out


def _segments(row_pos):
    starts = np.flatnonzero(row_pos == 0)
    return list(zip(starts, [*starts[1:], len(row_pos)]))


def test_packing_invariants():
    rng = np.random.default_rng(0)
    lengths = [int(n) for n in rng.integers(3, 40, size=60)] + [64, 70, 120]
    enc = _synthetic(lengths)
    rows = pack_dialogues(enc, 64, PAD)
    s = rows.stats
    assert s["truncated"] == 2 and s["dialogues_packed"] == 63 and s["rows"] == len(rows)
    assert rows.input_ids.shape == rows.labels.shape == rows.position_ids.shape == (len(rows), 64)
    assert rows.loss_weights.dtype == np.float32 and rows.token_mask.dtype == bool
    seen = {}
    for r in range(len(rows)):
        segs = _segments(rows.position_ids[r])
        real = [(a, b) for a, b in segs if rows.token_mask[r, a]]
        assert len(real) == rows.n_dialogues[r]
        for a, b in segs:
            ids = rows.input_ids[r, a:b]
            assert (rows.position_ids[r, a:b] == np.arange(b - a)).all()
            if not rows.token_mask[r, a]:  # the padding tail: its own segment, never trained
                assert b == 64 and (ids == PAD).all() and not rows.token_mask[r, a:b].any()
                assert (rows.labels[r, a:b] == IGNORE_INDEX).all() and (rows.loss_weights[r, a:b] == 0).all()
                continue
            k = int(ids[0]) - 100
            assert (ids == 100 + k).all() and k not in seen  # one whole dialogue, placed once
            seen[k] = b - a
            e = enc[k]
            assert rows.labels[r, a] == IGNORE_INDEX  # no label crosses into a dialogue
            want = np.where(e.loss_mask[: b - a], e.input_ids[: b - a], IGNORE_INDEX)
            want[0] = IGNORE_INDEX
            np.testing.assert_array_equal(rows.labels[r, a:b], want)
            np.testing.assert_allclose(rows.loss_weights[r, a:b], np.where(want != IGNORE_INDEX, e.weight, 0))
    assert seen == {k: min(n, 64) for k, n in enumerate(lengths)}
    assert rows.stats["fill"] > 0.9  # best-fit decreasing packs tightly
    again = pack_dialogues(enc, 64, PAD)
    np.testing.assert_array_equal(again.input_ids, rows.input_ids)


def test_overflow_drop_untrained_truncation_and_no_packing():
    enc = _synthetic([10, 100, 12])
    rows = pack_dialogues(enc, 32, PAD, overflow="drop")
    assert rows.stats["dropped_too_long"] == 1 and rows.stats["dialogues_packed"] == 2 and len(rows) == 1
    late = EncodedDialogue(np.arange(50, dtype=np.int32), np.arange(50) >= 40)  # trained part beyond the cut
    rows = pack_dialogues([*enc[:1], late], 32, PAD)
    assert rows.stats["truncated"] == 1 and rows.stats["dropped_truncated_untrained"] == 1
    alone = pack_dialogues(enc, 128, PAD, pack=False)
    assert len(alone) == 3 and list(alone.n_dialogues) == [1, 1, 1]
    assert [int(alone.input_ids[r, 0]) for r in range(3)] == [100, 101, 102]
    with pytest.raises(DataError, match="overflow: expected 'truncate' or 'drop'"):
        pack_dialogues(enc, 32, PAD, overflow="cut")
    with pytest.raises(DataError, match="no dialogue left to pack"):
        pack_dialogues(enc[1:2], 32, PAD, overflow="drop")


def test_save_load_roundtrip(tmp_path):
    rows = pack_dialogues(_synthetic([5, 9, 30, 17]), 32, PAD)
    rows.save(tmp_path / "rows.npz")
    back = ChatRows.load(tmp_path / "rows.npz")
    for k in ("input_ids", "labels", "position_ids", "loss_weights", "token_mask", "n_dialogues"):
        np.testing.assert_array_equal(getattr(back, k), getattr(rows, k))
    assert back.stats == rows.stats and not list(tmp_path.glob(".*tmp*"))


@pytest.fixture(scope="module")
def sharp_model(tiny_model):
    """The tiny Llama with larger weights, so attention across a boundary would change the losses visibly."""
    from bielik.model.loading import load_hf_model

    model = load_hf_model(tiny_model).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    return model


def _token_losses(model, ids, labels, pos):
    with torch.no_grad():
        # no attention mask and no KV cache: transformers reads restarting position ids as packed sequences
        logits = (
            model(input_ids=torch.as_tensor(ids)[None], position_ids=torch.as_tensor(pos)[None], use_cache=False)
            .logits[0]
            .double()
        )
    target = torch.as_tensor(labels[1:]).long()
    return torch.nn.functional.cross_entropy(logits[:-1], target, ignore_index=IGNORE_INDEX, reduction="none")[
        target != IGNORE_INDEX
    ]


def test_packed_row_losses_equal_each_dialogue_alone(tiny_tokenizer, sharp_model):
    from bielik.tokenizer.formats import load_hf_tokenizer

    tok = load_hf_tokenizer(tiny_tokenizer)
    texts = [
        ("Ile nóg ma kot?", "Cztery."),
        ("Przetłumacz: dog", "pies"),
        ("Stolica Francji?", "Paryż, nad Sekwaną."),
        ("Napisz coś miłego.", "Miłego dnia!"),
    ]
    dialogues = [
        parse_dialogue(
            {
                "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                "quality": "high",
                "id": str(i),
            },
            f"t:{i}",
        )
        for i, (q, a) in enumerate(texts)
    ]
    encoded, _ = encode_dialogues(tok, dialogues)
    total = sum(len(e.input_ids) for e in encoded)
    rows = pack_dialogues(encoded, total + 5, tok.pad_token_id)
    assert len(rows) == 1 and rows.n_dialogues[0] == 4
    r = rows.rows([0])
    packed = _token_losses(sharp_model, r["input_ids"][0], r["labels"][0], r["position_ids"][0])
    alone = []
    for a, b in _segments(rows.position_ids[0])[:4]:  # in row order
        ids, labels = r["input_ids"][0, a:b], r["labels"][0, a:b]
        alone.append(_token_losses(sharp_model, ids, labels, np.arange(b - a)))
    alone = torch.cat(alone)
    assert packed.shape == alone.shape and len(packed) == int((rows.labels[0] != IGNORE_INDEX).sum())
    torch.testing.assert_close(packed, alone, atol=1e-5, rtol=0)
    # the control: without restarting positions the dialogues see each other and the losses move
    leaky = _token_losses(sharp_model, r["input_ids"][0], r["labels"][0], np.arange(rows.seq_len))
    assert (leaky - alone).abs().max() > 1e-2


def _rows(n, seq_len=16):
    return pack_dialogues(_synthetic([seq_len] * n), seq_len, PAD)


def test_chat_row_batches_contract():
    rows = _rows(20)
    assert len(rows) == 20
    src = ChatRowBatches(rows, micro_batch_size=2, grad_accum=2, seed=5)
    step = src.next_step()
    assert len(step) == 2 and src.tokens_per_step == 4 * 16
    mb = step[0]
    assert set(mb) == {"input_ids", "labels", "position_ids", "loss_weights", "token_mask", "example_ids"}
    assert [mb[k].dtype for k in ("input_ids", "labels", "position_ids", "loss_weights", "token_mask")] == [
        torch.int64,
        torch.int64,
        torch.int64,
        torch.float32,
        torch.bool,
    ]
    assert all(t.shape == (2, 16) for k, t in mb.items() if k != "example_ids") and mb["example_ids"].shape == (2,)
    # two ranks see the global batch of one rank, micro-batches r, r + world, ...
    one = ChatRowBatches(rows, 1, 4, seed=5)
    r0, r1 = (
        ChatRowBatches(rows, 1, 2, rank=0, world_size=2, seed=5),
        ChatRowBatches(rows, 1, 2, rank=1, world_size=2, seed=5),
    )
    for _ in range(7):  # crosses an epoch boundary (20 rows, 4 per step)
        g = [b["input_ids"][0, 0].item() for b in one.next_step()]
        a, b = (
            [x["input_ids"][0, 0].item() for x in r0.next_step()],
            [x["input_ids"][0, 0].item() for x in r1.next_step()],
        )
        assert g == [a[0], b[0], a[1], b[1]]
    assert one.epoch == 1
    # resume: a restored source continues exactly where the saved one was
    state = one.state_dict()
    nxt = [b["input_ids"].tolist() for b in one.next_step()]
    fresh = ChatRowBatches(rows, 1, 4, seed=5)
    fresh.load_state_dict(state)
    assert [b["input_ids"].tolist() for b in fresh.next_step()] == nxt
    with pytest.raises(DataError, match="fewer than one global batch"):
        ChatRowBatches(rows, 8, 2, world_size=2)


def test_eval_chat_batches_fixed_and_split_over_ranks():
    rows = _rows(9)  # one dialogue per row, row r holds token 100 + r
    whole = [b["input_ids"][:, 0].tolist() for b in eval_chat_batches(rows, 2, 3)]
    assert whole == [[100, 101], [102, 103], [104, 105]]
    assert [b["input_ids"][:, 0].tolist() for b in eval_chat_batches(rows, 2, 3)] == whole  # a fixed set
    r0 = [b["input_ids"][:, 0].tolist() for b in eval_chat_batches(rows, 2, 3, rank=0, world_size=2)]
    r1 = [b["input_ids"][:, 0].tolist() for b in eval_chat_batches(rows, 2, 3, rank=1, world_size=2)]
    assert (r0, r1) == ([[100, 102], [104]], [[101, 103], [105]])


def test_build_sft_data_on_the_shipped_mix(tiny_tokenizer):
    from bielik.tokenizer.formats import load_hf_tokenizer

    tok = load_hf_tokenizer(tiny_tokenizer)
    data = build_sft_data(tok, ["shipped:pl"], seq_len=512, val_fraction=0.1, max_dialogues=300, seed=1)
    s = data.stats
    assert s["train_dialogues"] + s["val_dialogues"] == 300 and 10 < s["val_dialogues"] < 60
    assert s["train"]["dialogues_in"] == s["train_dialogues"] and data.val is not None
    assert set(s["weights"]) <= {"1.0", "0.7", "0.5"}
    assert set(np.unique(data.train.loss_weights)) <= {0.0, np.float32(1.0), np.float32(0.7), np.float32(0.5)}
    flat = build_sft_data(
        tok,
        ["shipped:pl"],
        seq_len=512,
        val_fraction=0.1,
        max_dialogues=300,
        seed=1,
        weighting=False,
        assistant_only=False,
        pack=False,
    )
    assert set(np.unique(flat.train.loss_weights)) == {0.0, 1.0}
    assert len(flat.train) == flat.stats["train"]["dialogues_packed"]
    assert (flat.train.labels != IGNORE_INDEX).sum() > 1.5 * (data.train.labels != IGNORE_INDEX).sum()
