"""The constructed Polish SFT set: reproducible, every reference checkable against its document."""

import gzip
import json
import re
import subprocess
import sys

import pytest

from bielik.data.chat import is_heldout, post_dir
from bielik.data.corpus import shipped_corpus_dir
from bielik.data.instruct import OUTPUT_FILE, InstructConfig, build_instructions, instruct, jsonl_gz_bytes
from bielik.data.instruct_tasks import FLATTEN, MONTHS, REQUESTS
from bielik.data.pack import _is_heldout


@pytest.fixture(scope="module")
def shipped():
    with gzip.open(post_dir() / OUTPUT_FILE, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="module")
def documents():
    docs = {}
    for path in sorted(shipped_corpus_dir().glob("pl_*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                d = json.loads(line)
                docs[d["id"]] = d
    return docs


def test_default_config_regenerates_the_shipped_file():
    built = jsonl_gz_bytes(build_instructions(InstructConfig()))
    shipped_bytes = (post_dir() / OUTPUT_FILE).read_bytes()
    assert gzip.decompress(built) == gzip.decompress(shipped_bytes)


def _passage(task, request):
    for template in REQUESTS[task]:
        pattern = re.escape(template).replace(re.escape("{text}"), "(?P<text>.*)")
        m = re.fullmatch(pattern, request, re.DOTALL)
        if m:
            return m.group("text")
    raise AssertionError(f"{task}: request matches no template: {request[:80]!r}")


def _flat(text):
    return " ".join(text.replace("\xa0", " ").split())


def test_every_shipped_record_checks_against_its_document(shipped, documents):
    assert len(shipped) == 3345 and len({r["id"] for r in shipped}) == len(shipped)
    full_date = re.compile(r"\b\d{1,2} (?:" + "|".join(MONTHS) + r") \d{4}\b")
    for r in shipped:
        task = r["meta"]["origin"].removeprefix("constructed:")
        doc = documents[r["meta"]["document"]]
        assert (r["source"], r["license"], r["quality"]) == (doc["source"], doc["license"], "medium"), r["id"]
        assert not _is_heldout(doc["id"], 0, 0.02)  # never text that data.pack holds out by default
        (user, assistant) = r["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        text, answer, source = _passage(task, user["content"]), assistant["content"], _flat(doc["text"])
        if task == "diacritics":
            assert text == answer.translate(FLATTEN) and text != answer and _flat(answer) in source
        elif task == "punctuation":
            # punctuation gone, a hyphen kept only between two word characters, lower case
            assert answer in source and text == " ".join(
                re.sub(r"[^\w\s-]|(?<!\w)-|-(?!\w)", " ", answer).lower().split()
            )
        elif task == "cloze":
            word = r["meta"]["answer"]
            assert text.count("____") == 1 and word in answer and _flat(text.replace("____", word)) in source
            assert re.search(rf"\b{word}\b", text), "the answer can be read off another mention"
        elif task == "numbers":
            found = list(dict.fromkeys(re.findall(r"\d+(?:,\d+)?", text)))
            assert (
                found == r["meta"]["answer"] and answer == "\n".join(f"- {n}" for n in found) and _flat(text) in source
            )
        elif task == "dates":
            found = list(dict.fromkeys(full_date.findall(text)))
            assert (
                found == r["meta"]["answer"] and answer == "\n".join(f"- {d}" for d in found) and _flat(text) in source
            )
        else:
            assert task == "headline" and doc["id"].startswith("ntrex/")
            first, rest = doc["text"].split("\n", 1)
            assert answer == _flat(first) and _flat(text) == _flat(rest)
    origins = {o: sum(r["meta"]["origin"] == o for r in shipped) for o in {r["meta"]["origin"] for r in shipped}}
    assert origins == {
        "constructed:diacritics": 1500,
        "constructed:cloze": 1000,
        "constructed:punctuation": 450,
        "constructed:numbers": 230,
        "constructed:headline": 105,
        "constructed:dates": 60,
    }


def test_heldout_hash_matches_data_pack():
    ids = [f"wolnelektury/x/{i:04d}" for i in range(500)]
    assert [is_heldout(i, 0.02, 0) for i in ids] == [_is_heldout(i, 0, 0.02) for i in ids]
    assert any(is_heldout(i, 0.02, 0) for i in ids)


def test_stage_writes_atomically_with_metrics(tmp_path):
    out = tmp_path / "instruct"
    cfg = InstructConfig(output=str(out), counts={"headline": 4, "dates": 3}, seed=7)
    instruct(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["by_origin"] == {"constructed:dates": 3, "constructed:headline": 4} and metrics["records"] == 7
    assert (out / "config.yaml").is_file() and "pl_ntrex_news.jsonl.gz" in json.loads(
        (out / "lineage.json").read_text()
    )["inputs"]
    with gzip.open(out / OUTPUT_FILE, "rt", encoding="utf-8") as fh:
        assert len(fh.readlines()) == 7
    with pytest.raises(Exception, match="already exists"):
        instruct(cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["instruct"]  # no temporary leftovers
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['poems'\]"):
        InstructConfig(counts={"poems": 3})


def test_cli_command(tmp_path):
    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "bielik.cli", "data", "instruct", *args],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    res = run(f"output={tmp_path / 'a'}", "counts={cloze: 2}")
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["by_origin"] == {"constructed:cloze": 2}
    res = run(f"output={tmp_path / 'b'}", "counts={poems: 2}")
    assert res.returncode == 2 and "unknown task(s) ['poems']" in res.stderr and not (tmp_path / "b").exists()
    assert "Traceback" not in res.stderr
