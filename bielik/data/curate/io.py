"""Reading raw documents for curation: JSONL(.gz) and Parquet with ``id``, ``text``, optional
``url`` and ``source``.

Unlike datatrove's own JsonlReader (which logs and skips a bad line, and gives up on the rest of a
file at the first invalid UTF-8 byte), a malformed record here is either an error naming the file
and line (``on_error="raise"``, the default) or skipped and counted (``on_error="skip"``). Lines are
decoded one at a time, so one invalid byte costs one line.

Memory: a record is one line, and a book dump can make that line hundreds of MB. The JSONL reader
holds at most two forms of the current line at once (bytes and str, then str and the decoded
object) and nothing of the previous one while it reads the next, so its peak is about twice the
largest line, not the file. (Splitting one text into pieces is left to the consumers that need it,
e.g. tokenisation: :func:`bielik.data.corpus.text_pieces`.)
"""

from __future__ import annotations

import codecs
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from bielik.errors import DataError

OnError = Literal["raise", "skip"]
INPUT_SUFFIXES = (".jsonl", ".jsonl.gz", ".json.gz", ".ndjson", ".parquet")


class BadRecord(Exception):
    def __init__(self, lineno: int, why: str):
        super().__init__(why)
        self.lineno, self.why = lineno, why


def _open_binary(path: Path):
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _check(obj, lineno: int, text_key: str) -> dict:
    if not isinstance(obj, dict):
        raise BadRecord(lineno, f"expected a JSON object, got {type(obj).__name__}")
    text = obj.get(text_key)
    if not isinstance(text, str):
        raise BadRecord(
            lineno, f"field '{text_key}' is {'missing' if text is None else type(text).__name__}; expected a string"
        )
    return obj


def iter_records(path: Path, text_key: str = "text") -> Iterator[tuple[int, dict | BadRecord]]:
    """(line number, record or :class:`BadRecord`) for every non-empty line/row of ``path``."""
    if path.name.endswith(".parquet"):
        import pyarrow.parquet as pq

        row = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for i in range(batch.num_rows):  # one row at a time to Python: not 1024 huge texts at once
                obj = batch.slice(i, 1).to_pylist()[0]
                row += 1
                try:
                    yield row, _check(obj, row, text_key)
                except BadRecord as bad:
                    yield row, bad
        return
    try:
        with _open_binary(path) as raw:
            lineno = 0
            for line in raw:  # not enumerate: its cached (index, line) tuple would keep the last line alive
                lineno += 1
                if lineno == 1 and line.startswith(codecs.BOM_UTF8):  # saved by a Windows tool: not part of line 1
                    line = line[len(codecs.BOM_UTF8) :]
                if line.isspace():
                    continue
                try:
                    s = line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield lineno, BadRecord(lineno, f"invalid UTF-8 ({exc.reason} at byte {exc.start})")
                    continue
                del line  # bytes, then str, then the object: at most two copies of one line at a time
                try:
                    obj = json.loads(s)
                except json.JSONDecodeError as exc:
                    yield lineno, BadRecord(lineno, f"not valid JSON ({exc.msg} at column {exc.colno})")
                    continue
                del s
                try:
                    rec = _check(obj, lineno, text_key)
                except BadRecord as bad:
                    rec = bad
                del obj
                yield lineno, rec
                del rec  # the consumer has it; this generator must not pin it while reading the next line
    except (gzip.BadGzipFile, EOFError, OSError) as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from None


def iter_input_records(
    path: Path, on_error: OnError = "raise", text_key: str = "text", bad_counter: list[int] | None = None
) -> Iterator[tuple[int, dict]]:
    """Valid records of a JSONL(.gz)/Parquet input; a bad one raises :class:`DataError` (file:line) or
    is skipped and counted. (:func:`bielik.data.corpus.iter_jsonl_records` is the strict JSONL-only
    reader: it stops at the first bad line, so it cannot serve ``on_error="skip"``.)"""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"input {path} does not exist")
    for lineno, rec in iter_records(path, text_key):
        if isinstance(rec, BadRecord):
            if on_error == "raise":
                raise DataError(f"{path}:{lineno}: {rec.why} (pass on_error=skip to skip and count bad lines)")
            if bad_counter is not None:
                bad_counter[0] += 1
            continue
        yield lineno, rec
        del rec  # not pinned while the next line is read


def expand_inputs(paths: list[str]) -> list[Path]:
    """Files and folders (their JSONL/Parquet files, recursively, sorted); ``shipped`` = packaged corpus."""
    from bielik.data.corpus import expand_inputs as expand

    return expand(paths, INPUT_SUFFIXES, recursive=True)
