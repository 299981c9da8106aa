"""The task makers behind ``bielik data instruct``: Polish requests with a reference answer that a
program can check, built from human-written Polish text.

Each maker takes a document (``id``, ``text``, ...) and a seeded ``random.Random`` and returns the
candidate items it can build from it: ``(user request, reference answer, extra meta)``. The
reference is always taken from the text itself or computed from it by a rule stated here:

* ``diacritics``: a passage with its Polish letters flattened (ą→a, ł→l, Ż→Z, ...); the reference
  is the original passage.
* ``punctuation``: a news/encyclopaedic passage lower-cased with punctuation removed; the
  reference is the original (punctuation has some freedom, the original is *a* correct answer).
* ``cloze``: a passage in which one occurrence of a capitalised name that occurs at least twice in
  it is replaced by ``____``; the reference is the name (it can be read off the other mention).
* ``numbers``: list, without repeats and in order of first appearance, every number written with
  digits (``\\d+`` with an optional decimal comma part). Passages where that reading is ambiguous
  (thousands separated by spaces, dotted dates, digit runs glued to letters) or where digits number
  the text itself (``1)``, ``§ 2``, ``art. 13 ust. 2``: legal acts) are not used.
* ``dates``: list every complete date (day, Polish month name, four-digit year) as written;
  passages with an incomplete date (a day and month without a year) or a numeric date
  (``12.05.2020``) are not used.
* ``headline``: a news article without its first line; the reference is that first line, the
  article's real headline (NTREX-128 Polish, human translation).

Requests are drawn from several Polish wordings per task. Non-breaking spaces are normalised to
plain spaces in both the request and the reference.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

Item = tuple[str, str, dict]

FLATTEN = str.maketrans("ąćęłńóśźżĄĆĘŁŃÓŚŹŻ", "acelnoszzACELNOSZZ")
MONTHS = (
    "stycznia",
    "lutego",
    "marca",
    "kwietnia",
    "maja",
    "czerwca",
    "lipca",
    "sierpnia",
    "września",
    "października",
    "listopada",
    "grudnia",
)
_MONTH = "|".join(MONTHS)
FULL_DATE = re.compile(rf"(?<![\w.])\d{{1,2}} (?:{_MONTH}) \d{{4}}(?!\d)")
NUMERIC_DATE = re.compile(r"\d{1,2}[./-]\d{1,2}[./-]\d{2,4}")
DAY_MONTH = re.compile(rf"(?<![\w.])\d{{1,2}} (?:{_MONTH})\b")
NUMBER = re.compile(r"(?<![\w,.])\d+(?:,\d+)?(?![\w])")
STRUCTURAL_NUMBER = re.compile(r"(?:^|\n)\s*\d+[.)]|§|\b(?:[Aa]rt|ust|pkt|poz|Nr|nr)\.?\s*\d")
AMBIGUOUS_NUMBER = re.compile(r"\d[ .]\d{3}\b|\d\.\d|\d[a-zA-ZąćęłńóśźżĄĆĘŁŃÓŚŹŻ]|[a-zA-Z]\d|\d,\d+,\d|\d+,(?!\d)\S")
NAME = re.compile(r"(?<=[a-ząćęłńóśźż,;:] )[A-ZĄĆĘŁŃÓŚŹŻ][a-ząćęłńóśźż]{2,}\b")
PUNCT = re.compile(r"[^\w\s-]|(?<!\w)-|-(?!\w)")

REQUESTS: dict[str, tuple[str, ...]] = {
    "diacritics": (
        "Przywróć polskie znaki diakrytyczne w poniższym tekście:\n\n{text}",
        (
            "Ten tekst napisano bez polskich liter. "
            "Popraw go, dodając brakujące znaki (ą, ć, ę, ł, ń, ó, ś, ź, ż):\n\n{text}"
        ),
        "{text}\n\nDodaj do tego tekstu polskie znaki. Niczego poza tym nie zmieniaj.",
        "Przepisz fragment poprawnie, z polskimi literami:\n\n{text}",
        "Ktoś pisał na klawiaturze bez polskich znaków. Jak powinien wyglądać ten tekst?\n\n{text}",
        "Uzupełnij ogonki i kreski nad literami:\n\n{text}",
    ),
    "punctuation": (
        "Wstaw znaki interpunkcyjne i wielkie litery tam, gdzie są potrzebne:\n\n{text}",
        "Poniższy tekst nie ma interpunkcji ani wielkich liter. Przepisz go poprawnie.\n\n{text}",
        "{text}\n\nPopraw zapis tego tekstu: dodaj kropki, przecinki i wielkie litery.",
        "Przywróć interpunkcję i wielkie litery w tym fragmencie, nie zmieniając słów:\n\n{text}",
    ),
    "cloze": (
        "W tekście jedno słowo zastąpiono znakiem ____. Jakie to słowo?\n\n{text}",
        "Przeczytaj fragment i podaj wyraz, który powinien stać w miejscu luki (____).\n\n{text}",
        "{text}\n\nUzupełnij lukę oznaczoną ____ jednym słowem z tekstu.",
        "Na podstawie tekstu odgadnij brakujące słowo (____):\n\n{text}",
        (
            "Jakie słowo usunięto z poniższego tekstu w miejscu ____? "
            "Podpowiedź: występuje ono w tekście jeszcze raz.\n\n{text}"
        ),
    ),
    "numbers": (
        (
            "Wypisz wszystkie liczby zapisane w tekście cyframi, w kolejności pierwszego wystąpienia, bez powtórzeń, "
            "każdą w osobnym wierszu.\n\n{text}"
        ),
        (
            "{text}\n\nJakie liczby zapisane cyframi występują w tym tekście? Podaj je w kolejności pojawienia się, "
            "bez powtórzeń, jedna pod drugą."
        ),
        (
            "Wyodrębnij z fragmentu wszystkie liczby zapisane cyframi (bez powtórzeń, w kolejności występowania) "
            "i wypisz je w liście.\n\n{text}"
        ),
        (
            "Zrób listę liczb zapisanych cyframi w tym tekście; każda liczba tylko raz, w kolejności, "
            "w jakiej się pojawia:\n\n{text}"
        ),
    ),
    "dates": (
        (
            "Wypisz wszystkie pełne daty (dzień, miesiąc i rok) z poniższego tekstu, w kolejności występowania, "
            "w takiej postaci, w jakiej zostały zapisane.\n\n{text}"
        ),
        (
            "{text}\n\nJakie pełne daty (z dniem, miesiącem i rokiem) pojawiają się w tekście? Wypisz je dosłownie, "
            "każdą w osobnym wierszu."
        ),
        "Wyodrębnij z tekstu wszystkie daty zawierające dzień, miesiąc i rok. Zachowaj ich zapis z tekstu.\n\n{text}",
    ),
    "headline": (
        "Zaproponuj tytuł do poniższego artykułu prasowego:\n\n{text}",
        "{text}\n\nNapisz nagłówek do tego artykułu.",
        "Jaki tytuł pasowałby do tej wiadomości?\n\n{text}",
        "Przeczytaj artykuł i nadaj mu krótki, informacyjny tytuł.\n\n{text}",
    ),
}
CLOZE_ANSWERS = ("{a}", "Brakujące słowo to „{a}”.", "W miejscu luki powinno stać słowo „{a}”.", "{a}")


def clean(text: str) -> str:
    return text.replace("\xa0", " ").strip()


def lines(text: str) -> list[str]:
    return [ln for ln in (clean(x) for x in text.split("\n")) if ln]


def windows(text: str, min_chars: int, max_chars: int) -> list[str]:
    """Consecutive lines joined (``\\n``) into passages of ``min_chars``..``max_chars`` characters."""
    out, cur = [], []
    for ln in lines(text):
        if len(ln) > max_chars:
            cur = []
            continue
        if cur and len("\n".join(cur + [ln])) > max_chars:
            if len("\n".join(cur)) >= min_chars:
                out.append("\n".join(cur))
            cur = []
        cur.append(ln)
    if cur and len("\n".join(cur)) >= min_chars:
        out.append("\n".join(cur))
    return out


def _prose(passage: str) -> bool:
    """A passage of sentences (not a heading, list fragment or table line)."""
    return passage[-1] in '.!?…”"»)' and sum(c.isalpha() for c in passage) > 0.6 * len(passage)


def diacritics(doc: dict, rng: random.Random) -> list[Item]:
    items = []
    for p in windows(doc["text"], 80, 500):
        flat = p.translate(FLATTEN)
        if _prose(p) and sum(a != b for a, b in zip(p, flat)) >= 3:
            items.append((rng.choice(REQUESTS["diacritics"]).format(text=flat), p, {}))
    return items


def punctuation(doc: dict, rng: random.Random) -> list[Item]:
    items = []
    for p in windows(doc["text"], 80, 450):
        if not _prose(p) or any(c in p for c in '„”"«»()[]—–;/'):
            continue
        bare = " ".join(PUNCT.sub(" ", p.replace("\n", " ")).lower().split())
        if len(bare.split()) >= 10:
            items.append((rng.choice(REQUESTS["punctuation"]).format(text=bare), " ".join(p.split()), {}))
    return items


def cloze(doc: dict, rng: random.Random) -> list[Item]:
    items = []
    for p in windows(doc["text"], 200, 1200):
        found = list(NAME.finditer(p))
        names = sorted(
            {m.group() for m in found if p.count(m.group()) >= 2 and len(re.findall(rf"\b{m.group()}\b", p)) >= 2}
        )
        if not names:
            continue
        name = rng.choice(names)
        spots = [m for m in found if m.group() == name]
        hit = rng.choice(spots)
        gapped = p[: hit.start()] + "____" + p[hit.end() :]
        answer = rng.choice(CLOZE_ANSWERS).format(a=name)
        items.append((rng.choice(REQUESTS["cloze"]).format(text=gapped), answer, {"answer": name}))
    return items


def numbers(doc: dict, rng: random.Random) -> list[Item]:
    items = []
    for p in windows(doc["text"], 150, 900):
        if AMBIGUOUS_NUMBER.search(p) or STRUCTURAL_NUMBER.search(p):
            continue
        found = list(dict.fromkeys(m.group() for m in NUMBER.finditer(p)))
        if 2 <= len(found) <= 12 and len(re.findall(r"\d+", p)) == sum(
            len(re.findall(r"\d+", x)) for x in NUMBER.findall(p)
        ):
            answer = "\n".join(f"- {n}" for n in found)
            items.append((rng.choice(REQUESTS["numbers"]).format(text=p), answer, {"answer": found}))
    return items


def dates(doc: dict, rng: random.Random) -> list[Item]:
    items = []
    for p in windows(doc["text"], 120, 1000):
        full = [m.group() for m in FULL_DATE.finditer(p)]
        if not full or len(DAY_MONTH.findall(p)) != len(full) or NUMERIC_DATE.search(p):
            continue
        found = list(dict.fromkeys(full))
        answer = "\n".join(f"- {d}" for d in found)
        items.append((rng.choice(REQUESTS["dates"]).format(text=p), answer, {"answer": found}))
    return items


def headline(doc: dict, rng: random.Random) -> list[Item]:
    body = lines(doc["text"])
    if len(body) < 3 or not doc["id"].startswith("ntrex/"):
        return []
    title, article = body[0], "\n".join(body[1:])
    if len(article) > 4000 or title[-1:] in ".:" or len(title) > 160:
        return []
    return [(rng.choice(REQUESTS["headline"]).format(text=article), title, {})]


MAKERS: dict[str, Callable[[dict, random.Random], list[Item]]] = {
    "diacritics": diacritics,
    "punctuation": punctuation,
    "cloze": cloze,
    "numbers": numbers,
    "dates": dates,
    "headline": headline,
}
# which corpus sources (document id prefix) each task reads
TASK_SOURCES: dict[str, tuple[str, ...]] = {
    "diacritics": ("wolnelektury", "ntrex", "plwiki", "ud_pud", "legal", "tatoeba"),
    "punctuation": ("ntrex", "plwiki", "ud_pud", "tatoeba"),
    "cloze": ("wolnelektury", "ntrex", "plwiki", "ud_pud", "legal"),
    "numbers": ("legal", "ntrex", "plwiki", "ud_pud", "wolnelektury"),
    "dates": ("legal", "ntrex", "plwiki", "ud_pud", "wolnelektury"),
    "headline": ("ntrex",),
}
