"""Reading document corpora: JSONL / JSONL.gz files (one JSON object per line) or folders of them.

Each document needs a string ``text``; ``id`` and ``lang`` are optional but recommended (mixing by
language needs ``lang``). A malformed line is an error naming the file and line number.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator

from bielik.errors import DataError

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json.gz", ".ndjson")


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    lang: str | None = None
    source: str | None = None


def shipped_corpus_dir() -> Path:
    """The openly licensed Polish/English corpus shipped inside the package (see its SOURCES.md)."""
    return Path(str(resources.files("bielik") / "resources" / "corpus"))


def expand_inputs(
    paths: Iterable[str | Path],
    suffixes: tuple[str, ...] = JSONL_SUFFIXES,
    recursive: bool = False,
    what: str = "input",
) -> list[Path]:
    """Resolve files and folders into a list of files: a folder stands for its files whose names end
    with one of ``suffixes`` (sorted; with ``recursive`` also those in sub-folders).

    The special name ``shipped`` stands for :func:`shipped_corpus_dir`. A missing path, an empty
    folder or no paths at all is a :class:`DataError` naming ``what`` was expected.
    """
    files: list[Path] = []
    for raw in paths:
        p = shipped_corpus_dir() if str(raw) == "shipped" else Path(raw)
        if p.is_dir():
            walk = p.rglob("*") if recursive else p.iterdir()
            found = sorted(f for f in walk if f.is_file() and f.name.endswith(suffixes))
            if not found:
                raise DataError(f"{what} folder {p} holds no {'/'.join(suffixes)} files")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"{what} {p} does not exist")
    if not files:
        raise DataError(f"no {what} files given")
    return files


def _open(path: Path):
    # utf-8-sig: a byte-order mark some editors put at the start of a file is not part of line 1
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig")
    return open(path, encoding="utf-8-sig")


def iter_jsonl_records(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, JSON object) for every non-empty line of one JSONL(.gz) file; raise
    :class:`DataError` naming the file and line at the first line that is not a JSON object."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    try:
        with _open(path) as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(
                        f"{path}:{lineno}: not a valid JSON object ({exc.msg} at column {exc.colno}); "
                        "expected one JSON document per line"
                    ) from None
                if not isinstance(obj, dict):
                    raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
                yield lineno, obj
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as exc:
        raise DataError(f"{path}: cannot be read as UTF-8 JSONL ({exc})") from None


def read_jsonl(path: str | Path, text_key: str = "text") -> Iterator[Document]:
    """Yield the documents of one JSONL(.gz) file; raise :class:`DataError` at the first bad line."""
    path = Path(path)
    for lineno, obj in iter_jsonl_records(path):
        text = obj.get(text_key)
        if not isinstance(text, str):
            raise DataError(
                f"{path}:{lineno}: field '{text_key}' is "
                f"{'missing' if text is None else type(text).__name__}; expected a string"
            )
        yield Document(
            id=str(obj.get("id", f"{path.name}:{lineno}")),
            text=text,
            lang=obj.get("lang"),
            source=obj.get("source"),
        )


def read_corpus(paths: Iterable[str | Path], text_key: str = "text") -> Iterator[Document]:
    for f in expand_inputs(paths):
        yield from read_jsonl(f, text_key)
