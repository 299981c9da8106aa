import json
import os

import pytest

from bielik.data.corpus import iter_jsonl_records
from bielik.data.curate.config import CurateConfig, FeaturesStageConfig
from bielik.data.curate.stages import curate, features
from bielik.errors import DataError


def _write(path, recs, extra: bytes = b""):
    with open(path, "wb") as fh:
        for r in recs:
            fh.write((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8"))
        fh.write(extra)


def _read_dir(folder):
    return [rec for f in sorted(folder.glob("*.jsonl.gz")) for _, rec in iter_jsonl_records(f)]


@pytest.fixture()
def raw(tmp_path, shipped_pl_docs):
    news = [d for d in shipped_pl_docs if d["id"].startswith("ntrex")][:12]
    docs = [{"id": d["id"], "text": d["text"], "source": "news"} for d in news]
    docs[0] = dict(docs[0], text=docs[0]["text"] + "\nKontakt z redakcją: redakcja@gazeta.pl, tel. +48 601 234 567.")
    docs.append(dict(docs[1], id="dup-of-1"))  # exact duplicate
    docs.append({"id": "en", "text": "This is an English news story about the weather. " * 10})
    docs.append({"id": "blocked", "text": docs[2]["text"], "url": "https://zakazane.pl/a"})
    a, b = tmp_path / "in" / "a.jsonl", tmp_path / "in" / "b.jsonl"
    a.parent.mkdir()
    _write(a, docs[:8])
    _write(b, docs[8:], extra=b'{"id": "broken", "text": "x"\n{"id": "no-text"}\n{"id": "u", "text": "\xff\xfe"}\n')
    return tmp_path


def _cfg(raw, **kw):
    base = dict(
        inputs=[str(raw / "in")],
        output=str(raw / "out"),
        clean={"blocklist_domains": ["zakazane.pl"]},
        quality={"threshold": 0.5},
    )
    base.update(kw)
    return CurateConfig.model_validate(base)


def test_malformed_line_is_an_error_naming_file_and_line(raw):
    with pytest.raises(DataError, match=r"b\.jsonl:\d+: not valid JSON"):
        curate(_cfg(raw))
    assert not (raw / "out").exists()


def test_curate_end_to_end_with_skip(raw):
    m = curate(_cfg(raw, on_error="skip"))
    assert m["input"] == 15 and m["bad_records_skipped"] == 3
    assert m["dropped"]["language_en"] == 1 and m["dropped"]["blocklisted_domain"] == 1
    assert m["dropped"]["duplicate_exact"] == 1
    assert m["funnel"][0] == {"step": "input", "dropped": 0, "remaining": 15}
    assert m["funnel"][-1]["remaining"] == m["kept"]
    out = raw / "out"
    kept = _read_dir(out / "data")
    dropped = _read_dir(out / "dropped")
    assert len(kept) == m["kept"] and len(kept) + len(dropped) == 15
    by_id = {r["id"]: r for r in kept + dropped}
    dup = by_id["dup-of-1"]["curation"]
    assert dup["drop_reason"] == "duplicate_exact" and by_id[dup["duplicate_of"]]["text"] == by_id["dup-of-1"]["text"]
    assert all("quality" in r["curation"] for r in kept)
    pii_doc = next(r for r in kept + dropped if "pii" in r["curation"])
    assert "[EMAIL]" in pii_doc["text"] and "[PHONE]" in pii_doc["text"] and "601 234" not in pii_doc["text"]
    assert {s["type"] for s in pii_doc["curation"]["pii"]} == {"EMAIL", "PHONE"}
    for f in ("funnel.png", "metrics.json", "config.yaml", "lineage.json"):
        assert (out / f).is_file()
    assert not (raw / "out.work").exists()


def test_resume_skips_finished_shards(raw):
    cfg = _cfg(raw, on_error="skip", steps=["clean"], executor={"local_tasks": 1})
    res = curate(cfg)  # only shard 0 of 2 runs on this "node"
    assert res["status"] == "incomplete" and not (raw / "out").exists()
    assert (raw / "out.work" / "kept" / "00000.jsonl.gz").is_file()
    m = curate(cfg.model_copy(update={"executor": cfg.executor.model_copy(update={"local_tasks": -1})}))
    assert m["input"] == 15 and (raw / "out" / "data").is_dir()
    assert m["tasks"] == 2 and not (raw / "out.work").exists()


def test_rescheduling_reuses_finished_shards(raw):
    cfg = _cfg(raw, on_error="skip", steps=["clean"], executor={"local_tasks": 1}, keep_work=True)
    curate(cfg)
    shard0 = raw / "out.work" / "kept" / "00000.jsonl.gz"
    stamp = os.stat(shard0).st_mtime_ns
    # same content config, other scheduling: shard 0 is reused
    curate(cfg.model_copy(update={"executor": cfg.executor.model_copy(update={"local_tasks": -1})}))
    assert os.stat(shard0).st_mtime_ns == stamp


def test_features_table(raw):
    import pyarrow.parquet as pq

    from bielik.data.curate.stylometry import FEATURE_NAMES

    m = features(FeaturesStageConfig(inputs=[str(raw / "in" / "a.jsonl")], output=str(raw / "feat")))
    t = pq.read_table(raw / "feat" / "features" / "00000.parquet")
    assert t.num_rows == 8 == m["kept"] and t.column_names == ["id", *FEATURE_NAMES]


def test_datatrove_minhash_engine_agrees_with_datasketch(tmp_path, shipped_pl_docs):
    import random

    news = [d for d in shipped_pl_docs if d["id"].startswith("ntrex")][:10]
    rng = random.Random(1)
    copies = []
    for d in news[:3]:
        words = d["text"].split(" ")
        for i in rng.sample(range(len(words)), len(words) // 100):
            words[i] = "zmienione"
        copies.append({"id": "copy-" + d["id"], "text": " ".join(words)})
    (tmp_path / "in").mkdir()
    _write(tmp_path / "in" / "a.jsonl", [{"id": d["id"], "text": d["text"]} for d in news])
    _write(tmp_path / "in" / "b.jsonl", copies)
    dropped = {}
    for engine in ("datasketch", "datatrove"):
        out = tmp_path / engine
        m = curate(
            CurateConfig(inputs=[str(tmp_path / "in")], output=str(out), steps=["dedup"], dedup={"engine": engine})
        )
        dropped[engine] = sorted(r["id"] for r in _read_dir(out / "dropped"))
        assert m["kept"] == 10 and len(_read_dir(out / "data")) == 10
    assert dropped["datasketch"] == dropped["datatrove"] == sorted(c["id"] for c in copies)


def test_parquet_input_and_bad_row(tmp_path, shipped_pl_docs):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bielik.data.curate.config import CleanStageConfig
    from bielik.data.curate.stages import clean

    news = [d for d in shipped_pl_docs if d["id"].startswith("ntrex")][:5]
    (tmp_path / "in").mkdir()
    pq.write_table(
        pa.table(
            {"id": [d["id"] for d in news], "text": [d["text"] for d in news], "url": ["https://example.pl/a"] * 5}
        ),
        tmp_path / "in" / "a.parquet",
    )
    m = clean(CleanStageConfig(inputs=[str(tmp_path / "in")], output=str(tmp_path / "out")))
    kept = _read_dir(tmp_path / "out" / "data")
    assert m["input"] == 5 and len(kept) == m["kept"] >= 4 and kept[0]["url"] == "https://example.pl/a"
    pq.write_table(pa.table({"id": ["x", "y"], "text": ["Zdanie.", None]}), tmp_path / "in" / "b.parquet")
    with pytest.raises(DataError, match=r"b\.parquet:2: field 'text' is missing"):
        clean(CleanStageConfig(inputs=[str(tmp_path / "in")], output=str(tmp_path / "out2")))


def test_datatrove_logging_is_scoped_to_the_stage(raw):
    # a loguru sink the caller added before the stage keeps working afterwards, and gets none of datatrove's
    # records meanwhile (they go to the stage's log and the tasks' logs)
    from loguru import logger

    seen = []
    sink = logger.add(seen.append, level="DEBUG", format="{message}")
    try:
        m = curate(_cfg(raw, on_error="skip", steps=["clean"]))
        assert m["input"] == 15 and not seen
        logger.info("after the stage")
        assert [str(r).strip() for r in seen] == ["after the stage"]
    finally:
        logger.remove(sink)
    assert "Stats: All 2 tasks" in (raw / "out" / "logs" / "curation.log").read_text(encoding="utf-8")
    task_log = (raw / "out" / "logs" / "logs" / "task_00000.log").read_text(encoding="utf-8")
    assert "Launching pipeline for rank=0" in task_log and "bielik clean" in task_log


def test_stage_metrics_and_funnel_line():
    from collections import Counter

    from bielik.data.curate.stages import funnel_line, stage_metrics

    counts = Counter(
        input=10,
        bad_records=1,
        kept=6,
        dropped_too_short=1,
        dropped_language_en=2,
        dropped_quality=1,
        changed_encoding=3,
        pii_EMAIL=2,
    )
    m = stage_metrics(counts, tasks=2, extra={"note": 1})
    assert m["funnel"] == [
        {"step": "input", "dropped": 0, "remaining": 10},
        {"step": "too_short", "dropped": 1, "remaining": 9},
        {"step": "language", "dropped": 2, "remaining": 7},
        {"step": "quality", "dropped": 1, "remaining": 6},
    ]
    assert m["dropped"] == {"language_en": 2, "quality": 1, "too_short": 1} and m["changed"] == {"encoding": 3}
    assert (m["input"], m["kept"], m["bad_records_skipped"], m["tasks"], m["pii_spans"], m["note"]) == (
        10,
        6,
        1,
        2,
        {"EMAIL": 2},
        1,
    )
    assert funnel_line("data.curate", m, "out/logs") == (
        "data.curate: 10 -> 6 documents (too_short -1, language -2, quality -1); datatrove logs in out/logs"
    )
