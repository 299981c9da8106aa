"""Chat (SFT) data: dialogue records, their validation, readers, quality weights and splitting.

A record is one dialogue::

    {"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...],
     "quality": "high"|"medium"|"low",          # or
     "weight": 0.8,                             # a positive number; overrides quality
     "id": ..., "source": ..., "license": ..., "meta": {...}}   # optional, kept

Rules (every violation is a :class:`DataError` naming the file, the line, or the 0-based row of
a table, and the field, e.g. ``sft.jsonl:17: messages[2].role: expected 'user', got 'bot'``):
``messages`` is a non-empty list; an optional leading ``system`` turn, then ``user`` and
``assistant`` alternate starting with ``user``; the last turn is the assistant's (there is
something to train on); every ``content`` is a string, an assistant's is not blank. Other keys of
a record or a message are ignored.

Weights (RECIPE §5.3, Weighted Instruction Cross-Entropy): :data:`QUALITY_WEIGHTS` maps the quality
label to the weight of every trained token of the dialogue (high 1.0 = written or curated by
people, medium 0.7 = generated then verified, low 0.5 = generated, unverified); the map is
configurable and an explicit ``weight`` wins.

Inputs: JSONL (``.jsonl``, ``.jsonl.gz``, ...; a UTF-8 BOM is accepted), Parquet (pyarrow), a
``datasets`` dataset saved with ``save_to_disk``, a folder of any of these, and ``shipped`` (the SFT
mix shipped in ``bielik/resources/post``, see :data:`SHIPPED_SFT`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from bielik.data.corpus import JSONL_SUFFIXES, iter_jsonl_records
from bielik.errors import DataError

QUALITY_WEIGHTS: dict[str, float] = {"high": 1.0, "medium": 0.7, "low": 0.5}
ROLES = ("system", "user", "assistant")
TABLE_SUFFIXES = (".parquet",)

# the shipped SFT mix: part name -> files in bielik/resources/post (``shipped`` = every file once)
SHIPPED_SFT: dict[str, tuple[str, ...]] = {
    "pl": ("sft_pl.jsonl.gz", "sft_pl_constructed.jsonl.gz"),
    "en": ("sft_en.jsonl.gz",),
    "sft_pl": ("sft_pl.jsonl.gz",),
    "sft_pl_constructed": ("sft_pl_constructed.jsonl.gz",),
    "sft_en": ("sft_en.jsonl.gz",),
}
SHIPPED_DEFAULT = ("sft_pl.jsonl.gz", "sft_pl_constructed.jsonl.gz", "sft_en.jsonl.gz")


@dataclass(frozen=True)
class Dialogue:
    """One validated dialogue; ``where`` is ``file:line`` (or ``file:row N``) for error messages."""

    messages: tuple[dict[str, str], ...]
    weight: float
    where: str
    id: str | None = None
    quality: str | None = None
    source: str | None = None
    license: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """What the train/validation split hashes: the id, or the content when there is none."""
        if self.id is not None:
            return f"id:{self.id}"
        return (
            "content:"
            + hashlib.blake2b(json.dumps(self.messages, ensure_ascii=False).encode(), digest_size=16).hexdigest()
        )

    def to_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "id": self.id,
            "messages": [dict(m) for m in self.messages],
            "quality": self.quality,
            "source": self.source,
            "license": self.license,
            "meta": self.meta or None,
        }
        return {k: v for k, v in rec.items() if v is not None}


def post_dir() -> Path:
    """The post-training data shipped inside the package (``bielik/resources/post``, see its SOURCES.md)."""
    return Path(str(resources.files("bielik") / "resources" / "post"))


def _got(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_messages(messages: Any, where: str) -> tuple[dict[str, str], ...]:
    if not isinstance(messages, (list, tuple)) or not messages:
        what = "missing" if messages is None else f"got {_got(messages)}"
        raise DataError(f"{where}: messages: expected a non-empty list of {{role, content}} objects, {what}")
    out = []
    start = 1 if isinstance(messages[0], dict) and messages[0].get("role") == "system" else 0
    for i, msg in enumerate(messages):
        path = f"{where}: messages[{i}]"
        if not isinstance(msg, dict):
            raise DataError(f"{path}: expected an object with 'role' and 'content', got {_got(msg)}")
        role, content = msg.get("role"), msg.get("content")
        if i < start:
            expected = ("system",)
        else:
            expected = ("user",) if (i - start) % 2 == 0 else ("assistant",)
        if role not in expected:
            if role in ROLES:
                rule = "a system turn may only come first; then user and assistant alternate, starting with user"
                raise DataError(f"{path}.role: expected '{expected[0]}', got '{role}' ({rule})")
            raise DataError(f"{path}.role: expected one of {', '.join(map(repr, ROLES))}, got {_got(role)}")
        if not isinstance(content, str):
            raise DataError(f"{path}.content: expected a string, got {'nothing' if content is None else _got(content)}")
        if role == "assistant" and not content.strip():
            raise DataError(f"{path}.content: expected the assistant's reply, got blank text")
        out.append({"role": role, "content": content})
    if out[-1]["role"] != "assistant":
        raise DataError(
            f"{where}: messages[{len(out) - 1}].role: expected the dialogue to end with an 'assistant' "
            f"turn (the reply to train on), got '{out[-1]['role']}'"
        )
    return tuple(out)


def _weight(
    obj: dict, where: str, quality_weights: dict[str, float], default_quality: str | None
) -> tuple[float, str | None]:
    quality = obj.get("quality")
    if quality is not None and quality not in quality_weights:
        raise DataError(
            f"{where}: quality: expected one of {', '.join(map(repr, quality_weights))}, got {_got(quality)}"
        )
    weight = obj.get("weight")
    if weight is not None:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
            raise DataError(f"{where}: weight: expected a positive finite number, got {_got(weight)}")
        return float(weight), quality
    if quality is None:
        quality = default_quality
    if quality is None:
        raise DataError(
            f"{where}: quality: expected one of {', '.join(map(repr, quality_weights))} "
            "(or a positive 'weight'), got nothing"
        )
    return float(quality_weights[quality]), quality


def parse_dialogue(
    obj: Any, where: str, quality_weights: dict[str, float] | None = None, default_quality: str | None = None
) -> Dialogue:
    """Validate one record (see the module docstring) and return it as a :class:`Dialogue`."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object (a dialogue record), got {_got(obj)}")
    weights = QUALITY_WEIGHTS if quality_weights is None else quality_weights
    messages = _check_messages(obj.get("messages"), where)
    weight, quality = _weight(obj, where, weights, default_quality)
    meta = obj.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise DataError(f"{where}: meta: expected an object, got {_got(meta)}")
    rid = obj.get("id")
    return Dialogue(
        messages=messages,
        weight=weight,
        where=where,
        id=None if rid is None else str(rid),
        quality=quality,
        source=obj.get("source"),
        license=obj.get("license"),
        meta=dict(meta or {}),
    )


def _table_rows(path: Path) -> Iterator[tuple[str, dict]]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise DataError(f"{path}: reading Parquet needs pyarrow: pip install pyarrow") from None
    try:
        pf = pq.ParquetFile(path)
    except (OSError, ValueError, pa.ArrowException) as exc:  # ArrowInvalid on a foreign file
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    row = 0
    for batch in pf.iter_batches(batch_size=1024):
        for rec in batch.to_pylist():
            yield f"{path}:row {row}", rec
            row += 1


def _saved_dataset_rows(path: Path) -> Iterator[tuple[str, dict]]:
    try:
        import datasets
    except ModuleNotFoundError:
        raise DataError(
            f"{path}: reading a saved HF dataset needs the datasets package: pip install datasets"
        ) from None
    ds = datasets.load_from_disk(str(path))
    for row, rec in enumerate(ds):
        yield f"{path}:row {row}", rec


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and (path / "state.json").is_file() and (path / "dataset_info.json").is_file()


def _expand(path: Path) -> list[Path]:
    """A file, a saved dataset, or a folder of those (sorted, one level deep)."""
    if path.is_file() or _is_saved_dataset(path):
        return [path]
    if not path.is_dir():
        raise DataError(f"chat data {path} does not exist")
    if (path / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in path.iterdir() if _is_saved_dataset(p))
        raise DataError(
            f"{path} is a saved DatasetDict; name one split, e.g. {path / (splits[0] if splits else 'train')}"
        )
    found = sorted(
        p
        for p in path.iterdir()
        if (p.is_file() and p.name.endswith(JSONL_SUFFIXES + TABLE_SUFFIXES)) or _is_saved_dataset(p)
    )
    if not found:
        raise DataError(f"chat data folder {path} holds no JSONL, Parquet or saved-dataset entries")
    return found


def resolve_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Expand input specs into files / saved datasets; ``shipped`` and ``shipped:<part>`` name the
    shipped mix (:data:`SHIPPED_SFT`)."""
    out: list[Path] = []
    for raw in inputs:
        spec = str(raw)
        if spec == "shipped" or spec.startswith("shipped:"):
            part = spec.partition(":")[2]
            if part and part not in SHIPPED_SFT:
                raise DataError(f"unknown shipped SFT part '{part}'; expected one of {', '.join(SHIPPED_SFT)}")
            names = SHIPPED_SFT[part] if part else SHIPPED_DEFAULT
            out.extend(post_dir() / n for n in names)
        else:
            out.extend(_expand(Path(spec)))
    if not out:
        raise DataError("no chat data inputs given")
    for p in out:
        if not p.exists():
            raise DataError(f"chat data {p} does not exist")
    return out


def iter_records(path: str | Path) -> Iterator[tuple[str, dict]]:
    """(``file:line`` or ``file:row N``, raw record) for every record of one file or saved dataset."""
    path = Path(path)
    if _is_saved_dataset(path):
        yield from _saved_dataset_rows(path)
    elif path.name.endswith(TABLE_SUFFIXES):
        yield from _table_rows(path)
    elif path.name.endswith(JSONL_SUFFIXES):
        for lineno, obj in iter_jsonl_records(path):
            yield f"{path}:{lineno}", obj
    else:
        raise DataError(
            f"{path}: unknown chat data format; expected {', '.join(JSONL_SUFFIXES + TABLE_SUFFIXES)} "
            "or a folder saved with datasets' save_to_disk"
        )


def read_dialogues(
    inputs: Iterable[str | Path], quality_weights: dict[str, float] | None = None, default_quality: str | None = None
) -> Iterator[Dialogue]:
    """Every dialogue of ``inputs`` (see :func:`resolve_inputs`), validated; stops at the first bad record."""
    for path in resolve_inputs(inputs):
        for where, obj in iter_records(path):
            yield parse_dialogue(obj, where, quality_weights, default_quality)


def is_heldout(key: str, fraction: float, seed: int = 0) -> bool:
    """Deterministic membership of the held-out split: a seeded hash of the dialogue's key < fraction."""
    h = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2**64 < fraction


def split_dialogues(
    dialogues: Iterable[Dialogue], val_fraction: float, seed: int = 0
) -> tuple[list[Dialogue], list[Dialogue]]:
    """(train, validation): each dialogue goes where the hash of its id (or content) sends it, so the
    split does not depend on the order or on which other dialogues are present."""
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction: expected a number in [0, 1), got {val_fraction}")
    train: list[Dialogue] = []
    val: list[Dialogue] = []
    for d in dialogues:
        (val if is_heldout(d.key, val_fraction, seed) else train).append(d)
    return train, val


def prepare_sft_data(cfg, tokenizer):
    """:func:`bielik.data.chat_rows.build_sft_data` with the fields of an SFT stage config: ``data``,
    ``seq_len``, ``val_fraction``, ``seed``, ``quality_weights``, ``too_long``, ``assistant_only``,
    ``pack``, ``weighting`` and ``max_dialogues`` (those it lacks take the defaults)."""
    from bielik.data.chat_rows import build_sft_data

    fields = {
        "val_fraction": "val_fraction",
        "seed": "seed",
        "quality_weights": "quality_weights",
        "default_quality": "default_quality",
        "overflow": "too_long",
        "assistant_only": "assistant_only",
        "pack": "pack",
        "weighting": "weighting",
        "max_dialogues": "max_dialogues",
    }
    kwargs = {arg: getattr(cfg, name) for arg, name in fields.items() if hasattr(cfg, name)}
    return build_sft_data(tokenizer, getattr(cfg, "data", ["shipped"]), cfg.seq_len, **kwargs)
