"""Reading document corpora: JSONL / JSONL.gz files (one JSON object per line) or folders of them.

Each document needs a string ``text``; ``id`` and ``lang`` are optional but recommended (mixing by
language needs ``lang``). A malformed line is an error naming the file and line number.

Memory on huge documents. One JSONL line is one document, so a book dump or web-archive record can
be a single line of hundreds of MB. The readers keep at most the line being decoded and its decoded
object alive: the raw line is dropped before the document is handed on (``enumerate`` is not used
because it caches its last ``(index, line)`` tuple between steps, which would keep the previous line
alive while the next one is read). Consumers that must work on bounded pieces (tokenisation,
tokenizer training) cut the text with :func:`text_pieces`.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

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
            lineno = 0
            for line in fh:
                lineno += 1
                if line.isspace():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(
                        f"{path}:{lineno}: not a valid JSON object ({exc.msg} at column {exc.colno}); "
                        "expected one JSON document per line"
                    ) from None
                del line  # the raw line is not needed once decoded (module docstring: memory)
                if not isinstance(obj, dict):
                    raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
                yield lineno, obj
                del obj
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
        doc = Document(
            id=str(obj.get("id", f"{path.name}:{lineno}")),
            text=text,
            lang=obj.get("lang"),
            source=obj.get("source"),
        )
        del obj, text  # only ``doc`` refers to the text while the consumer works on it
        yield doc
        del doc


def read_corpus(paths: Iterable[str | Path], text_key: str = "text") -> Iterator[Document]:
    for f in expand_inputs(paths):
        yield from read_jsonl(f, text_key)


#: Default length of a piece of text handed to a tokenizer at once (characters). HF ``tokenizers``
#: keeps ids, offsets, token strings and masks per token (several hundred bytes each), so a whole
#: 52 MB document in one ``encode`` call peaked at ~10 GB; 64k characters keep it to a few MB.
PIECE_CHARS = 1 << 16


def text_pieces(text: str, max_chars: int = PIECE_CHARS) -> Iterator[str]:
    """Cut ``text`` into consecutive pieces of at most ``max_chars`` characters whose concatenation is
    ``text``, so a huge document can be tokenised (or counted) piece by piece in bounded memory.

    A cut is placed just before a space (U+0020) that follows a non-whitespace character, i.e. at
    the start of a whitespace run. Why that point gives the same tokens as the whole text:

    * byte-level BPE (GPT-2/Qwen/Llama-3 style regex pre-tokenizer): every regex alternative that
      matches non-whitespace stops at whitespace, and none looks behind, so the pre-tokens left of
      the cut end there and matching restarts at the cut exactly as in the whole text;
    * SentencePiece style (Metaspace ``▁``, ``prepend_scheme="first"``, ``split=True``): the piece
      starts with a space, which becomes the ``▁`` prefix of its first word as it would mid-text, and
      nothing is prepended because the piece already starts with ``▁``.

    Cutting before a newline is *not* safe for the SentencePiece style (the piece would start with
    a ``\\n`` pre-token that gets a ``▁`` prepended), hence spaces only. When a window of
    ``max_chars`` holds no such space (a text without spaces, e.g. one giant token-free string),
    the cut falls at the window end and the tokens next to that cut may differ from whole-text
    tokenisation (a word is split in two); this is the documented exception.
    (Hand-written: neither ``tokenizers`` nor the standard library offers a boundary-preserving
    chunker.)
    """
    if max_chars < 2:
        raise ValueError("max_chars must be at least 2")
    start, n = 0, len(text)
    while n - start > max_chars:
        end = start + max_chars
        cut = text.rfind(" ", start + 1, end + 1)  # a piece is text[start:cut], at most max_chars long
        while cut > start and text[cut - 1].isspace():
            cut = text.rfind(" ", start + 1, cut)
        if cut <= start:
            cut = end
        yield text[start:cut]
        start = cut
    yield text[start:]
