"""``bielik data instruct``: Polish SFT dialogues constructed from the shipped Polish corpus.

The openly licensed Polish instruction data (``sft_pl``) covers only error correction, translation
and formal rewriting. This stage adds requests whose reference answer comes from human-written
Polish text by a stated rule (:mod:`bielik.data.instruct_tasks`): diacritics and punctuation
restoration, a cloze over a recurring name, listing the numbers or complete dates of a passage,
and a news headline. Every record carries ``meta.origin`` (``constructed:<task>``), the corpus
document it came from (``meta.document``) and that document's ``source`` and ``license``.

Quality label (RECIPE §5.3 weights): ``medium`` for every constructed record. The text and the
reference are human-written or derived from it by a checkable rule (verified by construction),
but the dialogue itself (the templated request, the choice of passage, the mechanical task) is
machine-made, which is the paper's "generated, then verified" tier (0.7), not its "written by
annotators" one.

Selection is deterministic: documents are visited per source in an order seeded by ``seed``, at
most ``max_per_document`` items are taken from one document, and sources take turns, so a small
source (Wikipedia) is not drowned by a large one (Wolne Lektury). Documents that ``bielik data
pack`` holds out for validation (same hash, ``heldout_fraction``/``heldout_seed``) are never used,
so constructed dialogues do not repeat the text of the pretraining validation split. The default
configuration reproduces ``bielik/resources/post/sft_pl_constructed.jsonl.gz`` byte for byte
(gzip without a timestamp).
"""

from __future__ import annotations

import gzip
import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from bielik.artifacts import atomic_write_bytes, staged_dir, write_stage_record
from bielik.config import StageConfig
from bielik.data.chat import is_heldout
from bielik.data.corpus import expand_inputs, iter_jsonl_records
from bielik.data.instruct_tasks import MAKERS, TASK_SOURCES
from bielik.errors import DataError
from bielik.log import get_logger

log = get_logger(__name__)

OUTPUT_FILE = "sft_pl_constructed.jsonl.gz"
DEFAULT_COUNTS = {"diacritics": 1500, "punctuation": 450, "cloze": 1000, "numbers": 230, "dates": 60, "headline": 105}


class InstructConfig(StageConfig):
    inputs: list[str] = Field(
        default_factory=lambda: ["shipped"], description="corpus JSONL files/folders; 'shipped' = bundled corpus"
    )
    output: str = "runs/instruct"
    counts: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_COUNTS),
        description=f"records per task (at most); tasks: {', '.join(MAKERS)}",
    )
    quality: Literal["high", "medium", "low"] = Field(
        "medium", description="quality label of every record (module docstring)"
    )
    max_per_document: int = Field(3, ge=1, description="items taken from one document per task")
    heldout_fraction: float = Field(
        0.02, ge=0.0, lt=1.0, description="skip documents data.pack holds out with this val_fraction"
    )
    heldout_seed: int = Field(0, description="... and this seed")
    seed: int = 0
    overwrite: bool = False

    @field_validator("counts")
    @classmethod
    def _known_tasks(cls, v: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(v) - set(MAKERS))
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; expected some of {', '.join(MAKERS)}")
        if any(n < 0 for n in v.values()):
            raise ValueError("counts must be >= 0")
        return v


def polish_documents(cfg: InstructConfig) -> dict[str, list[dict]]:
    """Polish documents of ``cfg.inputs`` by source (the document id's first path part), held-out ones removed."""
    by_source: dict[str, list[dict]] = defaultdict(list)
    for path in expand_inputs(cfg.inputs):
        for lineno, rec in iter_jsonl_records(path):
            if rec.get("lang") != "pl":
                continue
            for key in ("id", "text"):
                if not isinstance(rec.get(key), str):
                    raise DataError(f"{path}:{lineno}: {key}: expected a string, got {type(rec.get(key)).__name__}")
            if is_heldout(rec["id"], cfg.heldout_fraction, cfg.heldout_seed):
                continue
            by_source[rec["id"].split("/", 1)[0]].append(rec)
    if not by_source:
        raise DataError(f"no Polish documents (lang 'pl') in {cfg.inputs}")
    return dict(by_source)


def _source_items(task: str, docs: list[dict], cfg: InstructConfig) -> Iterator[dict]:
    order = list(range(len(docs)))
    random.Random(f"{cfg.seed}:{task}:order:{docs[0]['id'].split('/', 1)[0]}").shuffle(order)
    for i in order:
        doc = docs[i]
        rng = random.Random(f"{cfg.seed}:{task}:{doc['id']}")
        items = list(enumerate(MAKERS[task](doc, rng)))
        rng.shuffle(items)
        for k, (request, answer, extra) in items[: cfg.max_per_document]:
            yield {
                "id": f"constructed/{task}/{doc['id']}/{k}",
                "messages": [{"role": "user", "content": request}, {"role": "assistant", "content": answer}],
                "quality": cfg.quality,
                "source": doc.get("source"),
                "license": doc.get("license"),
                "meta": {"origin": f"constructed:{task}", "document": doc["id"], **extra},
            }


def build_instructions(cfg: InstructConfig) -> list[dict]:
    """The constructed records, task by task (in :data:`MAKERS` order), sources taking turns."""
    docs = polish_documents(cfg)
    records: list[dict] = []
    for task in MAKERS:
        want = cfg.counts.get(task, 0)
        streams = [_source_items(task, docs[s], cfg) for s in TASK_SOURCES[task] if docs.get(s)]
        seen: set[str] = set()
        got = 0
        while streams and got < want:
            for stream in list(streams):
                rec = next(stream, None)
                if rec is None:
                    streams.remove(stream)
                    continue
                if rec["messages"][0]["content"] in seen:
                    continue
                seen.add(rec["messages"][0]["content"])
                records.append(rec)
                got += 1
                if got == want:
                    break
        if got < want:
            log.warning("task %s: only %d of %d records could be built from %s", task, got, want, cfg.inputs)
    return records


def jsonl_gz_bytes(records: list[dict]) -> bytes:
    """Records as gzip-compressed JSON Lines with no timestamp in the header (reproducible bytes)."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)


def _metrics(records: list[dict]) -> dict:
    by_origin = Counter(r["meta"]["origin"] for r in records)
    by_source = Counter(r["meta"]["document"].split("/", 1)[0] for r in records)
    cross: dict[str, dict[str, int]] = defaultdict(dict)
    for (origin, source), n in sorted(
        Counter((r["meta"]["origin"], r["meta"]["document"].split("/", 1)[0]) for r in records).items()
    ):
        cross[origin][source] = n
    return {
        "records": len(records),
        "by_origin": dict(by_origin),
        "by_source": dict(sorted(by_source.items())),
        "by_origin_and_source": dict(cross),
        "by_quality": dict(Counter(r["quality"] for r in records)),
    }


def instruct(cfg: InstructConfig) -> Path:
    """Build the constructed Polish SFT set into ``cfg.output`` (atomically) and return the directory."""
    records = build_instructions(cfg)
    if not records:
        raise DataError(f"no constructed records: counts {cfg.counts} over {cfg.inputs}")
    metrics = _metrics(records)
    with staged_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
        atomic_write_bytes(tmp / OUTPUT_FILE, jsonl_gz_bytes(records))
        inputs = {p.name: p for p in expand_inputs(cfg.inputs)}
        write_stage_record(tmp, "data.instruct", cfg, inputs=inputs, metrics=metrics)
    log.info(
        "constructed %d Polish SFT records %s -> %s", len(records), metrics["by_origin"], Path(cfg.output) / OUTPUT_FILE
    )
    return Path(cfg.output)
