"""Chat records: validation messages (file:line: field), readers, weights, shipped mix, split, rendering."""

import json

import numpy as np
import pytest

from bielik.data.chat import (
    QUALITY_WEIGHTS,
    SHIPPED_SFT,
    parse_dialogue,
    read_dialogues,
    resolve_inputs,
    split_dialogues,
)
from bielik.data.chat_rows import encode_dialogue, encode_dialogues
from bielik.errors import DataError

OK = {
    "messages": [{"role": "user", "content": "Cześć"}, {"role": "assistant", "content": "Dzień dobry!"}],
    "quality": "high",
}


def _msgs(*pairs):
    return [{"role": r, "content": c} for r, c in pairs]


@pytest.mark.parametrize(
    "record, message",
    [
        ({"quality": "high"}, "messages: expected a non-empty list of {role, content} objects, missing"),
        ({**OK, "messages": []}, "messages: expected a non-empty list"),
        (
            {**OK, "messages": _msgs(("user", "a"), ("assistant", "b"), ("bot", "c"))},
            "messages[2].role: expected one of 'system', 'user', 'assistant', got 'bot'",
        ),
        ({**OK, "messages": _msgs(("user", "a"), ("user", "b"))}, "messages[1].role: expected 'assistant', got 'user'"),
        (
            {
                **OK,
                "messages": _msgs(
                    ("assistant", "a"),
                ),
            },
            "messages[0].role: expected 'user', got 'assistant'",
        ),
        (
            {**OK, "messages": _msgs(("user", "a"), ("system", "b"))},
            "messages[1].role: expected 'assistant', got 'system' (a system turn may only come first",
        ),
        (
            {**OK, "messages": _msgs(("system", "s"), ("user", "a"))},
            "messages[1].role: expected the dialogue to end with an 'assistant' turn",
        ),
        (
            {**OK, "messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "b"}]},
            "messages[0].content: expected a string, got 5",
        ),
        (
            {**OK, "messages": [{"role": "user"}, {"role": "assistant", "content": "b"}]},
            "messages[0].content: expected a string, got nothing",
        ),
        (
            {**OK, "messages": _msgs(("user", "a"), ("assistant", "  "))},
            "messages[1].content: expected the assistant's reply, got blank text",
        ),
        ({**OK, "messages": ["hello", "x"]}, "messages[0]: expected an object with 'role' and 'content', got 'hello'"),
        ({**OK, "quality": "great"}, "quality: expected one of 'high', 'medium', 'low', got 'great'"),
        (
            {"messages": OK["messages"]},
            "quality: expected one of 'high', 'medium', 'low' (or a positive 'weight'), got nothing",
        ),
        ({**OK, "weight": 0}, "weight: expected a positive finite number, got 0"),
        ({**OK, "weight": -1.5}, "weight: expected a positive finite number, got -1.5"),
        ({**OK, "weight": True}, "weight: expected a positive finite number, got True"),
        ({**OK, "weight": "1"}, "weight: expected a positive finite number, got '1'"),
        ({**OK, "meta": [1]}, "meta: expected an object, got [1]"),
    ],
)
def test_invalid_records_name_file_line_and_field(tmp_path, record, message):
    path = tmp_path / "sft.jsonl"
    path.write_text(json.dumps(OK) + "\n\n" + json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        list(read_dialogues([path]))
    assert str(err.value).startswith(f"{path}:3: "), str(err.value)
    assert message in str(err.value)


def test_nan_weight_and_bad_json_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(
        '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "weight": NaN}\n'
    )
    with pytest.raises(DataError, match=r"x.jsonl:1: weight: expected a positive finite number, got nan"):
        list(read_dialogues([path]))
    path.write_text(json.dumps(OK) + "\n{broken\n")
    with pytest.raises(DataError, match=r"x.jsonl:2: not a valid JSON object"):
        list(read_dialogues([path]))


def test_weights_quality_map_and_override():
    assert parse_dialogue(OK, "t:1").weight == 1.0
    assert parse_dialogue({**OK, "quality": "medium"}, "t:1").weight == 0.7
    assert parse_dialogue({**OK, "quality": "low"}, "t:1").weight == 0.5
    d = parse_dialogue({**OK, "quality": "low", "weight": 2.5}, "t:1")
    assert (d.weight, d.quality) == (2.5, "low")
    custom = {"gold": 2.0, "silver": 1.0}
    assert parse_dialogue({**OK, "quality": "gold"}, "t:1", custom).weight == 2.0
    with pytest.raises(DataError, match="expected one of 'gold', 'silver', got 'high'"):
        parse_dialogue(OK, "t:1", custom)
    assert parse_dialogue({"messages": OK["messages"]}, "t:1", default_quality="medium").weight == 0.7
    sys_first = parse_dialogue(
        {
            **OK,
            "messages": _msgs(("system", "Bądź zwięzły."), *[(m["role"], m["content"]) for m in OK["messages"]]),
            "id": 7,
            "source": "s",
            "license": "MIT",
            "meta": {"k": 1},
            "extra": "ignored",
        },
        "t:1",
    )
    assert sys_first.id == "7" and sys_first.messages[0]["role"] == "system"
    assert sys_first.to_record() == {
        "id": "7",
        "messages": list(sys_first.messages),
        "quality": "high",
        "source": "s",
        "license": "MIT",
        "meta": {"k": 1},
    }
    assert QUALITY_WEIGHTS == {"high": 1.0, "medium": 0.7, "low": 0.5}


def test_utf8_bom_gzip_parquet_saved_dataset_and_folders(tmp_path):
    import gzip

    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {**OK, "id": f"r{i}", "messages": _msgs(("user", f"Pytanie {i}"), ("assistant", f"Odpowiedź {i}"))}
        for i in range(3)
    ]
    (tmp_path / "bom.jsonl").write_bytes(
        b"\xef\xbb\xbf" + "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode()
    )
    with gzip.open(tmp_path / "z.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write(json.dumps(rows[0]) + "\n")
    assert [d.id for d in read_dialogues([tmp_path / "bom.jsonl"])] == ["r0", "r1", "r2"]
    assert [d.where for d in read_dialogues([tmp_path / "z.jsonl.gz"])] == [f"{tmp_path / 'z.jsonl.gz'}:1"]

    table = tmp_path / "tab"
    table.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), table / "a.parquet")
    got = list(read_dialogues([table / "a.parquet"]))
    assert [d.messages[1]["content"] for d in got] == ["Odpowiedź 0", "Odpowiedź 1", "Odpowiedź 2"]
    bad = [*rows[:2], {**rows[2], "messages": _msgs(("user", "a"), ("critic", "b"))}]
    pq.write_table(pa.Table.from_pylist(bad), tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"bad.parquet:row 2: messages\[1\].role: expected one of"):
        list(read_dialogues([tmp_path / "bad.parquet"]))

    datasets.Dataset.from_list(rows).save_to_disk(str(table / "saved"))
    assert [d.id for d in read_dialogues([table / "saved"])] == ["r0", "r1", "r2"]
    assert [d.id for d in read_dialogues([table])] == ["r0", "r1", "r2"] * 2  # a.parquet, then saved/
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataError, match=r"is a saved DatasetDict; name one split, e.g. .*dd/train"):
        list(read_dialogues([tmp_path / "dd"]))
    with pytest.raises(DataError, match="does not exist"):
        list(read_dialogues([tmp_path / "nope.jsonl"]))
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="unknown chat data format"):
        list(read_dialogues([tmp_path / "x.csv"]))


def test_shipped_mix_is_valid_and_selectable():
    everything = resolve_inputs(["shipped"])
    assert [p.name for p in everything] == ["sft_pl.jsonl.gz", "sft_pl_constructed.jsonl.gz", "sft_en.jsonl.gz"]
    assert [p.name for p in resolve_inputs(["shipped:pl"])] == list(SHIPPED_SFT["pl"])
    assert [p.name for p in resolve_inputs(["shipped:sft_en"])] == ["sft_en.jsonl.gz"]
    with pytest.raises(DataError, match="unknown shipped SFT part 'de'"):
        resolve_inputs(["shipped:de"])
    dialogues = list(read_dialogues(["shipped"]))
    assert len(dialogues) == 2850 + 3345 + 5000
    weights = {q: sum(d.quality == q for d in dialogues) for q in QUALITY_WEIGHTS}
    assert weights == {"high": 1850 + 4300, "medium": 3345, "low": 1000 + 700}
    assert len({d.key for d in dialogues}) == len(dialogues)


def test_split_is_deterministic_by_id_and_order_free():
    ds = [parse_dialogue({**OK, "id": f"d{i}"}, f"t:{i}") for i in range(2000)]
    train, val = split_dialogues(ds, 0.1, seed=3)
    assert 150 < len(val) < 250 and len(train) + len(val) == 2000
    _, val2 = split_dialogues(list(reversed(ds)), 0.1, seed=3)
    assert {d.id for d in val2} == {d.id for d in val}
    _, val3 = split_dialogues(ds[:500], 0.1, seed=3)
    assert {d.id for d in val3} == {d.id for d in val if int(d.id[1:]) < 500}  # membership does not depend on the rest
    assert {d.id for d in split_dialogues(ds, 0.1, seed=4)[1]} != {d.id for d in val}
    no_id = [parse_dialogue({**OK, "messages": _msgs(("user", f"q{i}"), ("assistant", "a"))}, "t:1") for i in range(50)]
    assert len({d.key for d in no_id}) == 50  # content hash when there is no id
    with pytest.raises(DataError, match=r"val_fraction: expected a number in \[0, 1\)"):
        split_dialogues(ds, 1.0)


def test_mask_token_by_token_two_turns_with_system(tiny_tokenizer):
    """Exactly the two assistant contents and their <|im_end|> are trained; nothing else."""
    from bielik.tokenizer.formats import load_hf_tokenizer

    tok = load_hf_tokenizer(tiny_tokenizer)
    msgs = _msgs(
        ("system", "Odpowiadaj krótko."),
        ("user", "Stolica Polski?"),
        ("assistant", "Warszawa."),
        ("user", "A Niemiec?"),
        ("assistant", "Berlin."),
    )
    ids, mask = encode_dialogue(tok, msgs)
    assert (
        ids.dtype == np.int32
        and mask.dtype == bool
        and ids[0] == tok.bos_token_id
        and (ids == tok.bos_token_id).sum() == 1
    )
    pieces = [tok.decode([int(i)]) for i in ids]
    trained_runs, run = [], ""
    for piece, m in zip(pieces, mask):
        if m:
            run += piece
        elif run:
            trained_runs.append(run)
            run = ""
    assert trained_runs == ["Warszawa.<|im_end|>", "Berlin.<|im_end|>"]
    untrained = "".join(p for p, m in zip(pieces, mask) if not m)
    assert untrained == (
        "<s><|im_start|>system\nOdpowiadaj krótko.<|im_end|>\n<|im_start|>user\nStolica Polski?<|im_end|>\n"
        "<|im_start|>assistant\n\n<|im_start|>user\nA Niemiec?<|im_end|>\n<|im_start|>assistant\n\n"
    )
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert [bool(mask[k]) for k in np.flatnonzero(ids == im_end)] == [False, False, True, False, True]


def test_control_tokens_in_content_and_template_without_markers(tiny_tokenizer):
    from bielik.data.chat import Dialogue
    from bielik.tokenizer.formats import load_hf_tokenizer

    tok = load_hf_tokenizer(tiny_tokenizer)
    evil = _msgs(("user", "Napisz <|im_end|> i koniec"), ("assistant", "Dobrze."))
    with pytest.raises(
        DataError, match=r"f.jsonl:4: messages\[0\].content: contains the control token '<\|im_end\|>' as text"
    ):
        encode_dialogue(tok, evil, "f.jsonl:4")
    good = _msgs(("user", "Cześć"), ("assistant", "Hej"))
    dialogues = [Dialogue(tuple(evil), 1.0, "f:1"), Dialogue(tuple(good), 0.5, "f:2", id="g")]
    encoded, skipped = encode_dialogues(tok, dialogues)
    assert skipped == {"control_token_in_content": 1} and len(encoded) == 1 and encoded[0].weight == 0.5
    with pytest.raises(DataError, match="control token"):
        encode_dialogues(tok, dialogues, skip_invalid=False)
    tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    with pytest.raises(DataError, match=r"f:2: the chat template marked no assistant token"):
        encode_dialogues(tok, dialogues[1:])
