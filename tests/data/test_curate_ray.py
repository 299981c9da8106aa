"""The curation pipeline on a local Ray cluster keeps the same documents as the local executor."""

import json

import pytest

from bielik.data.corpus import iter_jsonl_records
from bielik.data.curate.config import CurateConfig
from bielik.data.curate.stages import curate


def _records(folder):
    return sorted(
        (rec for f in sorted(folder.glob("*.jsonl.gz")) for _, rec in iter_jsonl_records(f)), key=lambda r: r["id"]
    )


@pytest.mark.slow
def test_ray_executor_keeps_what_the_local_executor_keeps(tmp_path, shipped_pl_docs):
    ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'bielik[ray]'")
    docs = [{"id": d["id"], "text": d["text"]} for d in shipped_pl_docs[:24]]
    docs += [
        dict(docs[3], id="dup-3"),
        {"id": "en", "text": "An English story about the weather. " * 12},
        dict(docs[5], id="pii", text=docs[5]["text"] + "\nKontakt: 48 512 300 400, jan@example.pl."),
    ]
    (tmp_path / "in").mkdir()
    for i in range(3):  # three input files: shards of unequal size
        with open(tmp_path / "in" / f"part{i}.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in docs[i::3])

    def run(kind: str) -> dict:
        return curate(
            CurateConfig.model_validate(
                {
                    "inputs": [str(tmp_path / "in")],
                    "output": str(tmp_path / kind),
                    "quality": {"threshold": 0.5},
                    "dedup": {"engine": "datatrove"},  # the four MinHash stages run on the executor too
                    "executor": {"kind": kind, "tasks": 3, "workers": 2, "mem_per_cpu_gb": 0.5},
                }
            )
        )

    local = run("local")
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        on_ray = run("ray")
    finally:
        ray.shutdown()
    assert on_ray["funnel"] == local["funnel"] and on_ray["dropped"] == local["dropped"]
    assert local["dropped"]["language_en"] == 1 and local["dropped"]["duplicate_near"] >= 1  # MinHash: dup-3
    kept_local, kept_ray = _records(tmp_path / "local" / "data"), _records(tmp_path / "ray" / "data")
    assert [(r["id"], r["text"]) for r in kept_ray] == [(r["id"], r["text"]) for r in kept_local]
    assert len(kept_local) == local["kept"] > 10
    everything = kept_local + _records(tmp_path / "local" / "dropped")
    assert "[PHONE]" in next(r["text"] for r in everything if r["id"] == "pii")
