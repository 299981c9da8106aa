"""Cleaning heuristics (RECIPE.md §1.1, §1.3): small named steps, each keep/drop with a reason.

Each step takes the text (and the document's metadata) and returns a :class:`StepResult`: whether
to keep the document, the reason when dropped, the possibly repaired text, and a note of what it
changed. :class:`Cleaner` runs the enabled steps in order and stops at the first drop; the caller
counts reasons (the funnel) and keeps the per-document record.

Steps (in order; each can be switched off in :class:`CleanConfig`):

``blocklist``       the document's ``url`` domain or ``source`` is on the terms-of-use blocklist.
``encoding``        mojibake repaired with ftfy (only when a cheap pre-check sees suspicious
                    characters); dropped if replacement characters or mojibake remain.
``control``         control characters removed, line endings normalised.
``boilerplate``     navigation/menu lines, cookie banners, share/login prompts and lines repeated
                    ≥ ``repeated_line_min`` times are removed; dropped if they were more than
                    ``max_boilerplate_fraction`` of the characters.
``broken_table``    dropped when more than ``max_table_fraction`` of the lines are flattened table
                    cells ("number soup": mostly numeric tokens, or ``|``/tab separated cells).
``non_linguistic``  dropped when letters are less than ``min_letter_ratio`` of the non-space
                    characters or alphabetic words are less than ``min_word_ratio`` of the tokens.
``truncated``       dropped when the text stops mid-sentence (last line of ≥ 60 characters ending
                    in a letter, comma or hyphen).
``min_length``      dropped below ``min_chars`` characters or ``min_words`` words.
``language``        dropped unless the language identifier says one of ``languages`` with
                    probability ≥ ``min_lang_prob``.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field

from bielik.config import StageConfig


class CleanConfig(StageConfig):
    steps: list[str] = Field(default_factory=lambda: list(STEP_NAMES), description="steps to run, in this order")
    blocklist_domains: list[str] = Field(
        default_factory=list, description="domains whose terms forbid LLM training (subdomains included)"
    )
    blocklist_sources: list[str] = Field(
        default_factory=list, description="values of the `source` field to drop (prefix match)"
    )
    max_boilerplate_fraction: float = Field(0.5, ge=0, le=1)
    repeated_line_min: int = Field(3, ge=2, description="a line seen this many times in a document is boilerplate")
    max_table_fraction: float = Field(0.3, ge=0, le=1)
    min_letter_ratio: float = Field(0.7, ge=0, le=1)
    min_word_ratio: float = Field(0.6, ge=0, le=1)
    max_bad_char_ratio: float = Field(
        0.001, ge=0, le=1, description="replacement/mojibake characters allowed after repair"
    )
    min_chars: int = Field(200, ge=0)
    min_words: int = Field(30, ge=0)
    languages: list[str] = Field(default_factory=lambda: ["pl"])
    min_lang_prob: float = Field(0.8, ge=0, le=1)
    lang_sample_chars: int = Field(600, ge=50, description="language identification reads this many characters")

    def model_post_init(self, __context: Any) -> None:
        unknown = [s for s in self.steps if s not in STEP_NAMES]
        if unknown:
            from bielik.errors import ConfigError

            raise ConfigError(f"clean.steps: unknown step(s) {unknown}; valid: {', '.join(STEP_NAMES)}")


@dataclass
class StepResult:
    keep: bool
    text: str
    reason: str | None = None
    change: str | None = None


@dataclass
class CleanResult:
    keep: bool
    text: str
    reason: str | None = None
    changes: list[str] = field(default_factory=list)


# --- patterns ---------------------------------------------------------------------------------

_SUSPECT = re.compile(r"[ÃÂÅÄĹĂâ][\x80-\xbf€‚„…†‡ˆ‰‹ŒŽ‘’“”•–—˜™šœžŸ¡-¿ĽĄŚŹŻ]|\ufffd|Ã|Å[ºž¼›‚]")
_MOJIBAKE_LEFT = re.compile(r"[ÃÅĹĂ][\x80-\xbf€‚„…†‡ˆ‰‹ŒŽ‘’“”•–—˜™šœžŸ¡-¿]|â€")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u200e\u200f\u202a-\u202e\ufeff]")
_BOILER = re.compile(
    r"(pliki? cookies?|plików cookies|ciasteczk|cookie policy|we use cookies|polityk\w* prywatności|privacy policy"
    r"|regulamin (serwisu|sklepu|strony|portalu)|wszelkie prawa zastrzeżone|all rights reserved"
    r"|^(zaloguj( się)?|wyloguj|zarejestruj( się)?|log ?in|sign ?up|newsletter|udostępnij|menu|szukaj|kontakt|reklama)$"
    r"|udostępnij na|share on|czytaj (więcej|także|też|dalej)|read more|strona główna|przejdź do (treści|menu)"
    r"|skip to content|mapa strony|copyright|©|kliknij tutaj|click here|zapisz się do|subskrybuj|obserwuj nas"
    r"|follow us|komentarze \(\d+\)|dodaj komentarz|akceptuję (wszystkie|pliki|cookies)|tagi:|poprzedni artykuł"
    r"|następny artykuł|powrót do (góry|strony)|wróć do (góry|strony)|ostatnia aktualizacja:)",
    re.IGNORECASE,
)
_NAV_SEP = re.compile(r"\s(?:\||»|›|•|·|/|>)\s")
_NUMERIC_TOKEN = re.compile(r"^[\d.,:%+\-–/()]+$")
_ALPHA_RUN = re.compile(r"[^\W\d_]{2,}")
_DIGIT = re.compile(r"\d")
_FINAL_OK = ".!?…:;\"”»)'*]"


def _domain(url: str) -> str:
    try:
        host = urlsplit(url if "//" in url else "//" + url).hostname or ""
    except ValueError:
        return ""
    return host.lower().removeprefix("www.")


# --- steps ------------------------------------------------------------------------------------


def step_blocklist(text: str, meta: dict, cfg: CleanConfig) -> StepResult:
    url = meta.get("url") or ""
    if url and cfg.blocklist_domains:
        host = _domain(str(url))
        for d in cfg.blocklist_domains:
            d = d.lower().removeprefix("www.")
            if host == d or host.endswith("." + d):
                return StepResult(False, text, "blocklisted_domain")
    src = str(meta.get("source") or "")
    if src and any(src.startswith(s) for s in cfg.blocklist_sources):
        return StepResult(False, text, "blocklisted_source")
    return StepResult(True, text)


@functools.cache
def _ftfy_config():
    import ftfy

    # keep typographic quotes and ligature-free text as they are; only repair encodings
    return ftfy.TextFixerConfig(uncurl_quotes=False, fix_line_breaks=False, normalization="NFC", explain=False)


def step_encoding(text: str, meta: dict, cfg: CleanConfig) -> StepResult:
    change = None
    if _SUSPECT.search(text):
        import ftfy

        fixed = ftfy.fix_text(text, _ftfy_config())
        if fixed != text:
            text, change = fixed, "encoding_repaired"
    bad = text.count("\ufffd") + len(_MOJIBAKE_LEFT.findall(text))
    if bad > cfg.max_bad_char_ratio * max(len(text), 1):
        return StepResult(False, text, "encoding_errors", change)
    return StepResult(True, text, change=change)


def step_control(text: str, meta: dict, cfg: CleanConfig) -> StepResult:
    new = text.replace("\r\n", "\n").replace("\r", "\n")
    new = _CONTROL.sub("", new)
    if not unicodedata.is_normalized("NFC", new):
        new = unicodedata.normalize("NFC", new)
    return StepResult(True, new, change="control_chars_removed" if new != text else None)


def _is_nav(line: str) -> bool:
    s = line.strip()
    seps = len(_NAV_SEP.findall(s))
    return seps >= 2 and len(s) / (seps + 1) < 25


def step_boilerplate(text: str, meta: dict, cfg: CleanConfig) -> StepResult:
    lines = text.split("\n")
    stripped = [ln.strip() for ln in lines]
    counts = Counter(s for s in stripped if len(s) > 0)
    drop = [False] * len(lines)
    for i, s in enumerate(stripped):
        if not s:
            continue
        if s[0] in "—–":  # Polish dialogue lines are never boilerplate
            continue
        # repeated label-like lines (footers, bylines); refrains, legal formulas and drama speaker
        # labels end in punctuation or are in capitals, and stay
        if (
            (
                counts[s] >= cfg.repeated_line_min
                and 20 <= len(s) < 200
                and s[-1] not in _FINAL_OK + ",—"
                and not s.isupper()
            )
            or len(s) < 120
            and (_BOILER.search(s) or _is_nav(s))
        ):
            drop[i] = True
    # runs of ≥ 5 one- or two-word capitalised lines without final punctuation are menus
    run: list[int] = []
    for i, s in enumerate(stripped + [""]):
        if s and len(s) <= 25 and s[0].isupper() and s[-1] not in _FINAL_OK and len(s.split()) <= 2:
            run.append(i)
            continue
        if len(run) >= 5:
            for j in run:
                drop[j] = True
        run = [] if s else run
    if not any(drop):
        return StepResult(True, text)
    removed = sum(len(lines[i]) + 1 for i in range(len(lines)) if drop[i])
    if removed > cfg.max_boilerplate_fraction * max(len(text), 1):
        return StepResult(False, text, "boilerplate")
    kept = "\n".join(ln for ln, d in zip(lines, drop) if not d)
    kept = re.sub(r"\n{3,}", "\n\n", kept).strip("\n")
    return StepResult(True, kept, change=f"boilerplate_lines_removed:{sum(drop)}")


def _is_table_line(line: str) -> bool:
    s = line.strip()
    if not s:
        return False
    if s.count("|") >= 2 or s.count("\t") >= 2:
        return True
    if not _DIGIT.search(s):
        return False
    toks = s.split()
    if len(toks) < 3:
        return False
    numeric = sum(1 for t in toks if _NUMERIC_TOKEN.match(t))
    return numeric / len(toks) >= 0.5


def step_broken_table(text: str, meta: dict, cfg: CleanConfig) -> StepResult:
    lines = [ln for ln in text.split("\n") if ln.strip()]
    if not lines:
        return StepResult(True, text)
    # a single long line flattened from a table is judged by its tokens
    chars_in_tables = sum(len(ln) for ln in lines if _is_table_line(ln))
    total = sum(len(ln) for ln in lines)
    if chars_in_tables > cfg.max_table_fraction * total:
        return StepResult(False, text, "broken_table")
    return StepResult(True, text)


def step_non_linguistic(text: str, meta: dict, cfg: CleanConfig) -> StepResult:
    nonspace = len(text) - sum(map(str.isspace, text))
    letters = sum(map(str.isalpha, text))
    if nonspace and letters / nonspace < cfg.min_letter_ratio:
        return StepResult(False, text, "non_linguistic")
    n_toks = len(text.split())
    # alphabetic runs of ≥ 2 letters per whitespace token (≈ share of word-like tokens)
    if n_toks and min(len(_ALPHA_RUN.findall(text)) / n_toks, 1.0) < cfg.min_word_ratio:
        return StepResult(False, text, "non_linguistic")
    return StepResult(True, text)


def step_truncated(text: str, meta: dict, cfg: CleanConfig) -> StepResult:
    s = text.rstrip()
    last = s.rsplit("\n", 1)[-1].strip()
    if len(last) >= 60 and (last[-1].isalpha() or last[-1] in ",-–("):
        return StepResult(False, text, "truncated")
    return StepResult(True, text)


def step_min_length(text: str, meta: dict, cfg: CleanConfig) -> StepResult:
    if len(text) < cfg.min_chars or len(text.split()) < cfg.min_words:
        return StepResult(False, text, "too_short")
    return StepResult(True, text)


def step_language(text: str, meta: dict, cfg: CleanConfig) -> StepResult:
    from bielik.data.langid import detect

    lang, prob = detect(text, max_chars=cfg.lang_sample_chars)
    meta["language"], meta["language_prob"] = lang, round(prob, 4)
    if lang not in cfg.languages:
        return StepResult(False, text, f"language_{lang}")
    if prob < cfg.min_lang_prob:
        return StepResult(False, text, "language_uncertain")
    return StepResult(True, text)


STEPS: dict[str, Callable[[str, dict, CleanConfig], StepResult]] = {
    "blocklist": step_blocklist,
    "encoding": step_encoding,
    "control": step_control,
    "boilerplate": step_boilerplate,
    "broken_table": step_broken_table,
    "non_linguistic": step_non_linguistic,
    "truncated": step_truncated,
    "min_length": step_min_length,
    "language": step_language,
}
STEP_NAMES = tuple(STEPS)


class Cleaner:
    """Run the configured steps on one document; stops at the first drop."""

    def __init__(self, cfg: CleanConfig | None = None):
        self.cfg = cfg or CleanConfig()
        self.steps = [(name, STEPS[name]) for name in self.cfg.steps]

    def __call__(self, text: str, meta: dict | None = None) -> CleanResult:
        meta = {} if meta is None else meta
        changes: list[str] = []
        for _name, fn in self.steps:
            r = fn(text, meta, self.cfg)
            text = r.text
            if r.change:
                changes.append(r.change)
            if not r.keep:
                return CleanResult(False, text, r.reason, changes)
        return CleanResult(True, text, None, changes)
