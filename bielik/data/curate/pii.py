"""Polish-first PII anonymisation: typed placeholders and a span-level report.

Hand-written rather than presidio: presidio runs offline only with a blank spaCy pipeline and
pattern recognisers (NOTES.md), i.e. regular expressions like these plus a heavy dependency, and it
has no Polish checksum validators. What is ours here is the Polish knowledge: layouts of Polish
phone numbers, street addresses and postal codes, and the checksums that keep identifiers from
being confused with ordinary numbers:

* PESEL (11 digits): weights (1, 3, 7, 9, 1, 3, 7, 9, 1, 3); check digit = (10 − Σ wᵢdᵢ mod 10) mod 10;
  digits 1–6 must encode a real date (month + 20/40/60/80 for 2000s/2100s/2200s/1800s).
* NIP (10 digits): weights (6, 5, 7, 2, 3, 4, 5, 6, 7); check digit = Σ wᵢdᵢ mod 11 (≠ 10).
* IBAN (ISO 13616) and the Polish NRB (26 digits = IBAN without "PL"): move the country code and
  check digits to the end, letters to numbers (A = 10 … Z = 35); the number mod 97 must be 1.

A span covers the whole identifier or nothing is gained: a phone number's bare country code ("48 512
300 400") and an address's town and postal code after a phrase ("ul. Polna 3 m. 12 w Lublinie, kod
20-001") are part of the span. Years, prices, article numbers, ISBNs, match scores, coordinates and
catalogue numbers do not match any pattern (or fail the checksum), and the tests hold examples of each;
``tests/data/test_pii.py`` scores span recall and precision by type on a labelled set.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass

PII_TYPES = ("EMAIL", "URL", "PHONE", "ADDRESS", "PESEL", "NIP", "IBAN")
PLACEHOLDERS = {t: f"[{t}]" for t in PII_TYPES}


@dataclass(frozen=True)
class Span:
    type: str
    start: int
    end: int
    text: str


# --- checksums -------------------------------------------------------------------------------


def pesel_valid(digits: str) -> bool:
    if len(digits) != 11 or not digits.isdigit():
        return False
    d = [int(c) for c in digits]
    w = (1, 3, 7, 9, 1, 3, 7, 9, 1, 3)
    if (10 - sum(a * b for a, b in zip(w, d)) % 10) % 10 != d[10]:
        return False
    yy, mm, dd = d[0] * 10 + d[1], d[2] * 10 + d[3], d[4] * 10 + d[5]
    century = {0: 1900, 20: 2000, 40: 2100, 60: 2200, 80: 1800}
    base = mm - mm % 20 if mm > 12 else 0
    if base not in century:
        return False
    try:
        _dt.date(century[base] + yy, mm - base, dd)
    except ValueError:
        return False
    return True


def nip_valid(digits: str) -> bool:
    if len(digits) != 10 or not digits.isdigit():
        return False
    w = (6, 5, 7, 2, 3, 4, 5, 6, 7)
    check = sum(a * int(b) for a, b in zip(w, digits)) % 11
    return check != 10 and check == int(digits[9])


def iban_valid(iban: str) -> bool:
    s = re.sub(r"[\s-]", "", iban).upper()
    if s.isdigit() and len(s) == 26:  # Polish NRB
        s = "PL" + s
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{10,30}", s):
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


# --- patterns --------------------------------------------------------------------------------

_U = "A-ZĄĆĘŁŃÓŚŹŻ"
_L = "a-ząćęłńóśźż"
_AT = r"(?:@|\s?[\[\(\{<]\s?(?:at|małpa|malpa)\s?[\]\)\}>]\s?|\s(?:at|małpa)\s)"
_DOT = r"(?:\.|\s?[\[\(\{<]\s?(?:dot|kropka)\s?[\]\)\}>]\s?|\s(?:dot|kropka)\s)"
_EMAIL = re.compile(
    rf"(?<![\w.+-])[\w.+-]*\w{_AT}[\w-]+(?:{_DOT}[\w-]+)*{_DOT}[A-Za-z]{{2,}}\b",
    re.IGNORECASE,
)
_TLDS = (
    "pl|com|org|net|eu|edu|gov|info|io|biz|de|uk|fr|cz|sk|ua|ru|us|it|es|nl|ai|tv|me|app|dev|"
    "waw|krakow|wroc|gda|poznan|lodz"
)
_URL = re.compile(
    r"(?:\b(?:https?|ftp)://[^\s<>\"'\]\)]+"
    r"|\bwww\.[\w-]+(?:\.[\w-]+)+(?:/[^\s<>\"'\]\)]*)?"
    rf"|(?<![\w@.-])(?:[a-z0-9][\w-]*\.)+(?:{_TLDS})\b(?![.\-][\w])(?:/[^\s<>\"'\]\)]*)?)",
    re.IGNORECASE,
)
# +48 / 0048 prefixed numbers (any 9-digit grouping), bare mobiles 3-3-3 with a mobile prefix,
# landlines (2-digit area code) 2-3-2-2, the last two also with a bare country code ("48 512 300 400",
# "48 (22) 621 15 02": the span must take the 48 too, or the country code is left in the text);
# followed by no currency/unit word
_NOT_AMOUNT = r"(?!\s?(?:zł|złotych|złote|pln|eur|euro|usd|\$|€|%|tys|mln|mld|osób|os\.|km|kg|szt|egz)\b)"
_PHONE = re.compile(
    r"(?<![\w+/.,-])(?:"
    r"(?:\+48|0048)[\s-]?(?:\(?\d{2}\)?[\s-]?\d{3}[\s-]?\d{2}[\s-]?\d{2}|\d{3}[\s-]?\d{3}[\s-]?\d{3})"
    r"|(?:\(?48\)?[\s-])?(?:4[5-9]|5[0-9]|6[0-9]|7[2-9]|8[0-9])\d[\s-]\d{3}[\s-]\d{3}"
    r"|(?:\(?48\)?[\s-])?\((?:[1-9]\d)\)[\s-]?\d{3}[\s-]?\d{2}[\s-]?\d{2}"
    r"|(?:\(?48\)?[\s-])?(?:[1-9]\d)[\s-]\d{3}[\s-]\d{2}[\s-]\d{2}"
    rf")(?![\w,.]\d|[\d/-]){_NOT_AMOUNT}",
    re.IGNORECASE,
)
_CITY = rf"[{_U}][{_L}]+(?:[\s-][{_U}][{_L}]+)?"
_POSTAL_CITY = rf"\d{{2}}-\d{{3}}\s+{_CITY}"
_POSTAL_KW = r"(?:kod(?:u|em)?(?:\spocztow(?:y|ego|ym))?|k\.\s?p\.)\s?:?\s?"
_STREET_KW = r"(?:ul\.|ulica|ulicy|al\.|aleja|alei|alejach|pl\.|plac|placu|os\.|osiedle|osiedlu)"
# what may follow a street and number: the town in the locative after "w"/"we" ("w Lublinie"), a postal
# code with its town either way round, or a postal code after "kod (pocztowy)"; at most two of these
_ADDRESS_TAIL = (
    rf"(?:,?\s(?:(?:w|we)\s{_CITY}|{_POSTAL_CITY}|{_CITY},?\s\d{{2}}-\d{{3}}(?!\d)"
    rf"|{_POSTAL_KW}\d{{2}}-\d{{3}}(?!\d)(?:\s{_CITY})?)){{0,2}}"
)
_ADDRESS = re.compile(
    rf"(?<![\w.])(?<!et ){_STREET_KW}\s?"
    rf"(?:\d{{1,2}}\s)?[{_U}][\w.-]*(?:\s(?:[{_U}][\w.-]*|i|z|w|de|von)){{0,3}}"
    r"\s\d{1,4}[a-zA-Z]?(?:\s?/\s?\d{1,4}[a-zA-Z]?)?(?:\s?(?:m\.|lok\.|lokal)\s?\d{1,4})?"
    + _ADDRESS_TAIL
    + rf"|(?<![\w-]){_POSTAL_CITY}"
    rf"|(?<![\w-])(?i:{_POSTAL_KW})\d{{2}}-\d{{3}}(?!\d)(?:\s{_CITY})?"
)
_PESEL = re.compile(r"(?<![\w.,/-])\d{11}(?![\w]|[.,/-]\d)")
_NIP = re.compile(
    r"(?<![\w.,/-])(?:\d{3}-\d{3}-\d{2}-\d{2}|\d{3}-\d{2}-\d{2}-\d{3})(?![\w]|[.,/-]\d)"
    r"|(?<=NIP)(?::?\s?(?:PL)?\s?)\d{10}(?!\w)",
    re.IGNORECASE,
)
_IBAN = re.compile(
    r"(?<![\w])(?:[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?"
    r"|\d{2}(?:[ ]?\d{4}){6})(?![\w])"
)


# cheap pre-checks: most documents hold no PII, and the full patterns cost more than these
_HAS_EMAIL = re.compile(r"@|[\[\(\{<]\s?(?:at|małpa|malpa)\s?[\]\)\}>]|\s(?:at|małpa)\s", re.IGNORECASE)
_HAS_URL = re.compile(rf"://|www\.|\.(?:{_TLDS})\b", re.IGNORECASE)
_HAS_LONG_NUMBER = re.compile(r"\d{10}|\d{3}-\d{2,3}-\d{2}|\d{4} \d{4} \d{4}|[A-Z]{2}\d{2}")


def _digits(s: str) -> str:
    return re.sub(r"\D", "", s)


def find_pii(text: str, types: tuple[str, ...] | None = None) -> list[Span]:
    """All PII spans in ``text`` (non-overlapping; a longer span wins, then the earlier one)."""
    want = set(types or PLACEHOLDERS)
    found: list[Span] = []
    if not _HAS_LONG_NUMBER.search(text):
        want -= {"IBAN", "PESEL", "NIP"}
    if "URL" in want and not _HAS_URL.search(text):
        want.discard("URL")

    def add(kind: str, m: re.Match, start: int | None = None) -> None:
        s = m.start() if start is None else start
        found.append(Span(kind, s, m.end(), text[s : m.end()]))

    if "IBAN" in want:
        for m in _IBAN.finditer(text):
            if iban_valid(m.group()):
                add("IBAN", m)
    if "EMAIL" in want and _HAS_EMAIL.search(text):
        for m in _EMAIL.finditer(text):
            add("EMAIL", m)
    if "URL" in want:
        for m in _URL.finditer(text):
            s, e = m.start(), m.end()
            while e > s and text[e - 1] in ".,;:!?":  # sentence punctuation after a URL
                e -= 1
            found.append(Span("URL", s, e, text[s:e]))
    if "PESEL" in want:
        for m in _PESEL.finditer(text):
            if pesel_valid(m.group()):
                add("PESEL", m)
    if "NIP" in want:
        for m in _NIP.finditer(text):
            d = _digits(m.group())
            if nip_valid(d):
                s = m.start() + (len(m.group()) - len(m.group().lstrip(": PLpl")))
                found.append(Span("NIP", s, m.end(), text[s : m.end()]))
    if "PHONE" in want:
        for m in _PHONE.finditer(text):
            add("PHONE", m)
    if "ADDRESS" in want:
        for m in _ADDRESS.finditer(text):
            add("ADDRESS", m)

    found.sort(key=lambda sp: (-(sp.end - sp.start), sp.start))
    taken: list[Span] = []
    for sp in found:
        if all(sp.end <= t.start or sp.start >= t.end for t in taken):
            taken.append(sp)
    return sorted(taken, key=lambda sp: sp.start)


def anonymize(text: str, types: tuple[str, ...] | None = None) -> tuple[str, list[Span]]:
    """Replace every PII span by its typed placeholder; return the new text and the spans.

    Span offsets refer to the original ``text``.
    """
    spans = find_pii(text, types)
    if not spans:
        return text, spans
    parts, pos = [], 0
    for sp in spans:
        parts.append(text[pos : sp.start])
        parts.append(PLACEHOLDERS[sp.type])
        pos = sp.end
    parts.append(text[pos:])
    return "".join(parts), spans
