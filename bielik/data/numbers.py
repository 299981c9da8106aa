"""Numbers written in Polish and English, and the final answer of a solution: for verifiable rewards.

Readings (:func:`number_readings`):

==================  ===============  ======================================================
written             value            rule
==================  ===============  ======================================================
``1 234,5``         1234.5           space-like thousands separators (also NBSP, thin space),
                                     decimal comma (Polish)
``1,234.5``         1234.5           comma thousands separators, decimal point (English)
``1.234,5``         1234.5           dot thousands separators, decimal comma
``1234.5`` ``1234,5``  1234.5        a single separator followed by other than three digits
``3/4`` ``\\frac{3}{4}`` ``1 1/2``  3/4, 3/2       fractions, mixed numbers
``1,234`` ``1.234``  1234 *or* 1.234  ambiguous (a thousands group or a decimal): both readings
==================  ===============  ======================================================

An ambiguous number matches the reference when either reading does: "1,234" is 1234 to an
English reader and 1.234 to a Polish one, and the reward cannot know which the model meant. Values
are exact (:class:`fractions.Fraction`), so 0.1 + 0.2 issues do not arise and "0,50" equals "0.5".

The final answer is the first number after the *last* answer marker; without a marker, the last
number of the text (``fallback="last"``; ``"none"`` gives no answer). A known imprecision of that
fallback: "3 100" (three hundred-dollar bills?) reads as 3100, as a Polish thousands group.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Literal

_SPACE = "[ \u00a0\u202f\u2009]"
_NUMBER = (
    rf"\d{{1,3}}(?:{_SPACE}\d{{3}})+(?:,\d+)?(?!\d)"  # 1 234 / 1 234,5
    r"|\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d)"  # 1,234 / 1,234.5
    r"|\d{1,3}(?:\.\d{3})+(?:,\d+)?(?!\d)"  # 1.234,5 / 1.234.567
    r"|\d+(?:[.,]\d+)?(?!\d)"  # 1234 / 1234.5 / 1234,5
)
_MENTION = re.compile(
    r"\\d?frac\{\s*(?P<lsign>[-\u2212])?\s*(?P<lnum>\d+)\s*\}\{\s*(?P<lden>\d+)\s*\}"
    rf"|(?<![\w.,/])(?P<sign>[-\u2212])?(?:"
    rf"(?P<whole>\d+){_SPACE}(?P<mnum>\d+)/(?P<mden>\d+)(?![\d/])"  # mixed number 1 1/2
    rf"|(?P<fnum>\d+)\s*/\s*(?P<fden>\d+)(?![\d/])"  # fraction 3/4
    rf"|(?P<num>{_NUMBER}))"
)
_MARKER = re.compile(
    r"\\boxed\{|####|final\s+answer\s*(?:is|:)?|the\s+answer\s+is|answer\s*:|odpowied[źz]\s*(?:to|brzmi|:)|odp\.|wynik\s*(?:to|:|wynosi)",
    re.IGNORECASE,
)


def _plain_readings(body: str) -> set[Fraction]:
    """Readings of one written number without sign (see the module docstring's table)."""
    compact = re.sub(_SPACE, "", body)
    if compact != body:  # space-grouped: Polish, decimal comma
        return {Fraction(compact.replace(",", "."))}
    commas, dots = body.count(","), body.count(".")
    if commas and dots:  # both: the last one is the decimal separator
        dec = "." if body.rfind(".") > body.rfind(",") else ","
        grp = "," if dec == "." else "."
        return {Fraction(body.replace(grp, "").replace(dec, "."))}
    sep = "," if commas else "." if dots else None
    if sep is None:
        return {Fraction(body)}
    if body.count(sep) > 1:  # several groups: thousands separators
        return {Fraction(body.replace(sep, ""))}
    head, tail = body.split(sep)
    as_decimal = Fraction(f"{head}.{tail}")
    if len(tail) == 3 and len(head) <= 3 and head != "0":
        return {as_decimal, Fraction(head + tail)}
    return {as_decimal}


def _mention_readings(m: re.Match) -> set[Fraction]:
    g = m.groupdict()
    if g["lnum"] is not None:
        sign, value = g["lsign"], {Fraction(int(g["lnum"]), int(g["lden"]))} if int(g["lden"]) else set()
    elif g["mnum"] is not None:
        sign = g["sign"]
        value = {int(g["whole"]) + Fraction(int(g["mnum"]), int(g["mden"]))} if int(g["mden"]) else set()
    elif g["fnum"] is not None:
        sign, value = g["sign"], {Fraction(int(g["fnum"]), int(g["fden"]))} if int(g["fden"]) else set()
    else:
        sign, value = g["sign"], _plain_readings(g["num"])
    return {-v for v in value} if sign else value


def number_mentions(text: str) -> list[tuple[int, set[Fraction]]]:
    """(start offset, readings) of every number written in ``text``, in order."""
    out = []
    for m in _MENTION.finditer(text):
        readings = _mention_readings(m)
        if readings:
            out.append((m.start(), readings))
    return out


def number_readings(text: str) -> set[Fraction]:
    """The readings of ``text`` when it is exactly one number (surrounding space allowed), else empty."""
    text = text.strip()
    m = _MENTION.fullmatch(text)
    return _mention_readings(m) if m else set()


def parse_reference(answer: str) -> Fraction | None:
    """The value of a reference answer, None when it is not one unambiguous number. The machine form
    ("1234", "-3.5", "1.234", "3/4": a dot is a decimal point) is read first, then the written forms
    above ("1 234,5"; "1,234" is ambiguous and gives None)."""
    text = str(answer).strip().replace("\u2212", "-")
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        pass
    readings = number_readings(text)
    return next(iter(readings)) if len(readings) == 1 else None


def final_answer(text: str, fallback: Literal["last", "none"] = "last") -> set[Fraction]:
    """Readings of the completion's final answer: the first number after the last answer marker,
    else (``fallback="last"``) the last number of the text. Empty when there is none."""
    markers = list(_MARKER.finditer(text))
    if markers:
        after = number_mentions(text[markers[-1].end() :])
        if after:
            return after[0][1]
        return set()
    if fallback == "last":
        mentions = number_mentions(text)
        return mentions[-1][1] if mentions else set()
    return set()


def has_marked_answer(text: str) -> bool:
    """Whether the text states a number after its last answer marker."""
    return bool(final_answer(text, fallback="none"))
