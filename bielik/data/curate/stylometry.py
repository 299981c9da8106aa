"""Stylometric features of a Polish document, in the spirit of StyloMetrix (Okulska et al. 2023).

StyloMetrix itself needs a spaCy Polish model (not installable offline) and is GPL-3.0, so the
features are computed here from Morfeusz 2 readings (:mod:`bielik.data.curate.morph`) and plain
string statistics. :data:`FEATURES` is the one place where every feature is named and documented;
:func:`features` returns them in that order. All ratios are in [0, 1] unless stated, so documents of
different lengths are comparable; counts are log-scaled (``log1p``).

Groups (per-token ratios are over word tokens, punctuation excluded, unless noted):

* ``upos_*`` — share of each Universal POS tag (17).
* ``flex_*`` — share of each NKJP flexeme (grammatical class) of the chosen reading.
* ``case_*``, ``num_*``, ``gend_*``, ``pers_*``, ``asp_*``, ``deg_*`` — shares of morphological
  categories among the tokens that carry them (case among nominal tokens, etc.).
* ``qual_*`` — share of tokens whose dictionary reading has a stylistic qualifier (vulgar,
  colloquial, archaic, bookish, ...); ``morph_*`` — ambiguity and out-of-dictionary rates.
* ``lex_*`` — lexical richness: type/token ratio, Guiraud's root TTR V/√N, Herdan's log V / log N,
  hapax and dis legomena ratios, Yule's K = 10⁴ (Σ i² Vᵢ − N) / N², lemma TTR, word-length
  statistics and its histogram (``wlen_*``).
* ``syn_*`` — syntactic proxies: sentence length statistics, subordinating/coordinating
  conjunctions and specific subordinators per sentence, questions and exclamations.
* ``punct_*`` — each punctuation mark per 1,000 characters.
* ``str_*`` — structure: lines, paragraphs, list items, repeated lines, short lines, lines without
  final punctuation, digits, upper case, whitespace, non-letters, non-ASCII, control and replacement
  characters, mojibake markers, table cells (| and tabs), character entropy, placeholders left by
  anonymisation.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from bielik.data.curate.morph import UPOS_TAGS, Analyzer, analyzer
from bielik.data.curate.pii import PII_TYPES

_FLEXEMES = (
    "subst",
    "depr",
    "ger",
    "adj",
    "adja",
    "adjp",
    "adjc",
    "pact",
    "ppas",
    "adv",
    "num",
    "numcol",
    "ppron12",
    "ppron3",
    "siebie",
    "fin",
    "bedzie",
    "aglt",
    "praet",
    "impt",
    "imps",
    "inf",
    "pcon",
    "pant",
    "winien",
    "pred",
    "prep",
    "conj",
    "comp",
    "part",
    "interj",
    "brev",
    "burk",
    "dig",
    "romandig",
    "ign",
)
_CATS = {
    "case": ("nom", "gen", "dat", "acc", "inst", "loc", "voc"),
    "num": ("sg", "pl"),
    "gend": ("m1", "m2", "m3", "f", "n"),
    "pers": ("pri", "sec", "ter"),
    "asp": ("imperf", "perf"),
    "deg": ("pos", "com", "sup"),
}
_QUALS = {
    "wulg": "wulg.",
    "pot": "pot.",
    "przest": "przest.",
    "ksiazk": "książk.",
    "rzad": "rzad.",
    "daw": "daw.",
    "poet": "poet.",
    "specj": "specj.",
    "urz": "urz.",
    "srod": "środ.",
    "reg": "reg.",
    "zart": "żart.",
    "pogard": "pogard.",
    "obraz": "obraz.",
}
_SUBORD = {
    "ze": "że",
    "ktory": "który",
    "aby": "aby",
    "zeby": "żeby",
    "poniewaz": "ponieważ",
    "gdy": "gdy",
    "kiedy": "kiedy",
    "jesli": "jeśli",
    "jezeli": "jeżeli",
    "chociaz": "chociaż",
    "bo": "bo",
    "gdyz": "gdyż",
}
_PUNCT = {
    "period": ".",
    "comma": ",",
    "semicolon": ";",
    "colon": ":",
    "excl": "!",
    "quest": "?",
    "hyphen": "-",
    "endash": "–",
    "emdash": "—",
    "lparen": "(",
    "rparen": ")",
    "dquote": '"',
    "lowquote": "„",
    "rquote": "”",
    "apos": "'",
    "ellipsis": "…",
    "slash": "/",
    "asterisk": "*",
    "hash": "#",
    "at": "@",
    "amp": "&",
    "percent": "%",
    "dollar": "$",
    "plus": "+",
    "equals": "=",
    "underscore": "_",
    "pipe": "|",
    "lbracket": "[",
    "guillemet": "«",
    "bullet": "•",
}
_WLEN_BINS = 15

_STR_DOCS = {
    "str_log_chars": "log1p(number of characters)",
    "str_log_words": "log1p(number of word tokens)",
    "str_log_lines": "log1p(number of non-empty lines)",
    "str_mean_line_len": "mean non-empty line length / 100",
    "str_std_line_len": "standard deviation of non-empty line length / 100",
    "str_empty_lines": "share of empty lines among all lines",
    "str_short_lines": "share of non-empty lines shorter than 30 characters",
    "str_lines_no_final_punct": "share of non-empty lines not ending in . ! ? : ; … or a quote",
    "str_lines_upper_start": "share of non-empty lines starting with an upper-case letter",
    "str_list_lines": "share of lines that are list items (-, *, •, 1., a))",
    "str_repeated_lines": "share of non-empty lines that repeat an earlier line",
    "str_log_paragraphs": "log1p(number of blank-line separated paragraphs)",
    "str_mean_paragraph_words": "mean words per paragraph / 100",
    "str_digit_ratio": "digits / characters",
    "str_upper_ratio": "upper-case letters / letters",
    "str_letter_ratio": "letters / characters",
    "str_space_ratio": "whitespace / characters",
    "str_nonletter_ratio": "non-letter, non-space characters / characters",
    "str_nonascii_ratio": "non-ASCII characters / characters",
    "str_pl_diacritic_ratio": "Polish diacritic letters (ąćęłńóśźż) / letters",
    "str_foreign_letter_ratio": "letters q, v, x / letters",
    "str_control_ratio": "control characters (except newline, tab) / characters",
    "str_replacement_ratio": "U+FFFD replacement characters / characters",
    "str_mojibake_ratio": "mojibake markers (Ã, Å, Ä, Ĺ, â€, Ă) / characters",
    "str_table_ratio": "'|' and tab characters / characters",
    "str_char_entropy": "Shannon entropy of the character distribution / 8 bits",
    "str_numeric_tokens": "share of word tokens that are numbers",
    "str_alnum_mixed_tokens": "share of word tokens mixing letters and digits",
    "str_allcaps_tokens": "share of word tokens of ≥ 2 letters written in capitals",
    "str_capitalised_tokens": "share of word tokens starting with a capital letter",
    "str_url_like": "URL/e-mail-like substrings per word token",
    "str_placeholders": "anonymisation placeholders ([EMAIL], [PHONE], ...) per word token",
    "str_numbers_per_line": "numbers per non-empty line / 10",
    "str_longest_line": "log1p(length of the longest line)",
}


def _build_docs() -> dict[str, str]:
    docs: dict[str, str] = {}
    for t in UPOS_TAGS:
        docs[f"upos_{t}"] = f"share of word tokens tagged {t} (UPOS, heuristic disambiguation)"
    for f in _FLEXEMES:
        docs[f"flex_{f}"] = f"share of segments whose chosen NKJP flexeme is '{f}'"
    for cat, vals in _CATS.items():
        for v in vals:
            docs[f"{cat}_{v}"] = f"share of segments marked '{v}' among those carrying {cat}"
    for k, q in _QUALS.items():
        docs[f"qual_{k}"] = f"share of segments whose chosen reading has the SGJP qualifier '{q}'"
    docs["morph_mean_readings"] = "mean number of Morfeusz readings per segment / 10"
    docs["morph_unambiguous"] = "share of segments with exactly one reading"
    docs["morph_unknown"] = "share of word segments not in the dictionary (ign)"
    docs["morph_neg"] = "share of gerunds/participles in the negated form (neg)"
    docs["morph_segments_per_word"] = "Morfeusz segments per word token − 1 (agglutinates split off)"
    docs.update(
        {
            "lex_ttr": "type/token ratio V/N (word forms, lower-cased)",
            "lex_root_ttr": "Guiraud's index V/√N / 10",
            "lex_log_ttr": "Herdan's C = log V / log N",
            "lex_hapax": "hapax legomena (forms seen once) / N",
            "lex_dislegomena": "dis legomena (forms seen twice) / N",
            "lex_yule_k": "Yule's K = 10⁴ (Σ i² Vᵢ − N) / N², / 1000",
            "lex_lemma_ttr": "distinct lemmas / segments",
            "lex_mean_word_len": "mean word length in characters / 10",
            "lex_std_word_len": "standard deviation of word length / 10",
            "lex_long_words": "share of words of ≥ 10 characters",
            "lex_top_word_share": "share of the most frequent word form",
            "lex_function_words": "share of tokens that are prepositions, conjunctions, particles or pronouns",
        }
    )
    for i in range(1, _WLEN_BINS + 1):
        docs[f"wlen_{i}"] = f"share of words of length {i}" + (" or more" if i == _WLEN_BINS else "")
    docs.update(
        {
            "syn_log_sentences": "log1p(number of sentences)",
            "syn_mean_sent_len": "mean sentence length in words / 50",
            "syn_std_sent_len": "standard deviation of sentence length / 50",
            "syn_max_sent_len": "longest sentence in words / 200 (capped at 1)",
            "syn_long_sents": "share of sentences with > 40 words",
            "syn_short_sents": "share of sentences with < 5 words",
            "syn_questions": "share of sentences ending in '?'",
            "syn_exclamations": "share of sentences ending in '!'",
            "syn_commas_per_sent": "commas per sentence / 10",
            "syn_subord_per_sent": "subordinating conjunctions (comp) per sentence",
            "syn_coord_per_sent": "coordinating conjunctions (conj) per sentence",
            "syn_verbs_per_sent": "finite/past verb forms per sentence / 5",
            "syn_verbless_sents": "share of sentences without a verb form",
            "syn_noun_verb_ratio": "nouns / (nouns + verbs)",
            "syn_adj_noun_ratio": "adjectives / (adjectives + nouns)",
        }
    )
    for k, w in _SUBORD.items():
        docs[f"syn_w_{k}"] = f"occurrences of '{w}' per sentence"
    for k, p in _PUNCT.items():
        docs[f"punct_{k}"] = f"occurrences of '{p}' per 1,000 characters / 10"
    docs["punct_total"] = "punctuation marks per word token"
    docs.update(_STR_DOCS)
    return docs


FEATURES: dict[str, str] = _build_docs()
"""Every feature name → its definition, in the order of :func:`features`' vector."""
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURES)
_INDEX = {n: i for i, n in enumerate(FEATURE_NAMES)}

_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*|\d+(?:[.,]\d+)*|[^\W_]+", re.UNICODE)
_SENT_END = re.compile(r"(?<=[.!?…])\s+(?=[\"„(]?[A-ZĄĆĘŁŃÓŚŹŻ0-9])|\n\s*\n")
_LIST_LINE = re.compile(r"^\s*(?:[-*•–·]|\d{1,3}[.)]|[a-z][.)])\s+")
_URLISH = re.compile(r"https?://|www\.|@|\[(?:at|dot)\]|\.(?:pl|com|org|net|eu)\b")
_PLACEHOLDER = re.compile(rf"\[(?:{'|'.join(PII_TYPES)})\]")
_MOJIBAKE = re.compile(r"[ÃÅÄĹĂ]|â€")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_LINE_FINAL = set(".!?:;…\"”»)'")
_PL = set("ąćęłńóśźżĄĆĘŁŃÓŚŹŻ")
_FOREIGN = set("qvxQVX")
_VERB_FLEX = {"fin", "praet", "impt", "imps", "inf", "bedzie", "pred", "winien"}
_FUNC_UPOS = {"ADP", "CCONJ", "SCONJ", "PART", "PRON", "DET", "AUX"}

# per-form vector layout: the morphological counts a word contributes (summed over its segments)
_M_KEYS = (
    [f"upos_{t}" for t in UPOS_TAGS]
    + [f"flex_{f}" for f in _FLEXEMES]
    + [f"{c}_{v}" for c, vs in _CATS.items() for v in vs]
    + [f"qual_{k}" for k in _QUALS]
    + ["_segments", "_readings", "_unamb", "_ign", "_neg", "_negable"]
    + [f"_has_{c}" for c in _CATS]
    + ["_verb", "_noun", "_adj", "_func", "_numeric", "_mixed", "_allcaps", "_capit", "_len"]
)
_M = {k: i for i, k in enumerate(_M_KEYS)}


@functools.lru_cache(maxsize=65536)
def _segment_vector(tag: str, upos: str, qualifiers: tuple[str, ...], n_readings: int) -> np.ndarray:
    """What one chosen reading contributes (cached: a few thousand distinct tags cover a language)."""
    v = np.zeros(len(_M_KEYS), dtype=np.float64)
    parts = tag.split(":")
    flex = parts[0]
    v[_M["_segments"]] = 1
    v[_M["_readings"]] = n_readings
    v[_M["_unamb"]] = n_readings == 1
    v[_M["_ign"]] = flex == "ign"
    if upos != "PUNCT":
        v[_M[f"upos_{upos}"]] += 1
    if f"flex_{flex}" in _M:
        v[_M[f"flex_{flex}"]] += 1
    vals = {x for p in parts[1:] for x in p.split(".")}
    for cat, opts in _CATS.items():
        hit = [o for o in opts if o in vals]
        if hit:
            v[_M[f"_has_{cat}"]] += 1
            for o in hit:
                v[_M[f"{cat}_{o}"]] += 1 / len(hit)
    if flex in {"ger", "pact", "ppas"}:
        v[_M["_negable"]] = 1
        v[_M["_neg"]] = "neg" in vals
    for k, q in _QUALS.items():
        if q in qualifiers:
            v[_M[f"qual_{k}"]] += 1
    v[_M["_verb"]] = flex in _VERB_FLEX
    v[_M["_noun"]] = upos in {"NOUN", "PROPN"}
    v[_M["_adj"]] = upos == "ADJ"
    v[_M["_func"]] = upos in _FUNC_UPOS
    v.flags.writeable = False
    return v


def _form_vector(form: str, segs) -> np.ndarray:
    v = np.zeros(len(_M_KEYS), dtype=np.float64)
    for seg in segs:
        v += _segment_vector(seg.tag, seg.upos, seg.qualifiers, seg.n_readings)
    v[_M["_numeric"]] = form[0].isdigit() and form.replace(",", "").replace(".", "").isdigit()
    v[_M["_mixed"]] = any(ch.isdigit() for ch in form) and any(ch.isalpha() for ch in form)
    v[_M["_allcaps"]] = len(form) >= 2 and form.isalpha() and form.isupper()
    v[_M["_capit"]] = form[0].isupper()
    v[_M["_len"]] = len(form)
    return v


@dataclass
class _Doc:
    """What the feature sections share about one document (computed once by ``FeatureExtractor._analyse``)."""

    text: str
    n: int  # words
    counts: Counter  # word form -> count
    low: Counter  # lower-cased form -> count
    w: np.ndarray  # counts of the distinct forms, in ``rows`` order
    rows: np.ndarray  # row of each distinct form in the per-form matrix
    V_rows: np.ndarray  # those rows
    m: np.ndarray  # w @ V_rows: count-weighted sum of the morphological vectors (see _M)
    seg: float  # morphological segments (≥ 1)
    chars: Counter  # character -> count
    n_chars: int  # characters (≥ 1)


class FeatureExtractor:
    """Computes :data:`FEATURES` for documents; keeps a per-form cache of morphological vectors."""

    def __init__(self, analyzer_: Analyzer | None = None, max_chars: int | None = None, max_forms: int = 300_000):
        self.an = analyzer_ or analyzer()
        self.max_chars, self.max_forms = max_chars, max_forms
        # per-form morphological rows live in one growing matrix: a document gathers its rows with
        # one fancy-indexing call instead of stacking hundreds of small arrays
        self._idx: dict[str, int] = {}
        self._mat = np.zeros((4096, len(_M_KEYS)), dtype=np.float64)
        self._lemmas: list[frozenset[str]] = []

    def _rows(self, forms) -> np.ndarray:
        """Row indices of ``forms`` in the per-form matrix (analysing forms not seen before)."""
        idx = self._idx
        out = np.empty(len(forms), dtype=np.int64)
        for i, f in enumerate(forms):
            j = idx.get(f)
            if j is None:
                j = len(idx)
                if j >= len(self._mat):
                    self._mat = np.concatenate([self._mat, np.zeros_like(self._mat)])
                segs = self.an.word(f)
                self._mat[j] = _form_vector(f, segs)
                self._lemmas.append(frozenset(s.lemma for s in segs))
                idx[f] = j
            out[i] = j
        return out

    def __call__(self, text: str) -> np.ndarray:
        """The feature vector of ``text`` (its first ``max_chars`` characters), in :data:`FEATURE_NAMES` order."""
        out = np.zeros(len(FEATURE_NAMES), dtype=np.float32)

        def put(name: str, value: float) -> None:
            out[_INDEX[name]] = value

        d = self._analyse(text[: self.max_chars] if self.max_chars else text)
        for section in self.SECTIONS:
            getattr(self, section)(d, put)
        return out

    # each section writes one group of features (tests check that together they write every feature once)
    SECTIONS = ("_morphology", "_lexical", "_syntax", "_punctuation", "_structure")

    def _analyse(self, text: str) -> _Doc:
        """Words, their counts and the count-weighted sum ``m`` of their morphological rows (see :data:`_M`)."""
        if len(self._idx) >= self.max_forms:  # bound memory: start the per-form cache afresh
            self._idx.clear()
            self._lemmas.clear()
        words = _WORD.findall(text)
        counts = Counter(words)
        if counts:
            forms = list(counts)
            w = np.fromiter(counts.values(), dtype=np.float64, count=len(forms))
            rows = self._rows(forms)
            V_rows = self._mat[rows]
            m = w @ V_rows
        else:
            w, rows, V_rows, m = np.zeros(0), np.zeros(0, np.int64), np.zeros((0, len(_M_KEYS))), np.zeros(len(_M_KEYS))
        low: Counter = Counter()
        for f, c in counts.items():
            low[f.lower()] += c
        return _Doc(
            text=text,
            n=len(words),
            counts=counts,
            low=low,
            w=w,
            rows=rows,
            V_rows=V_rows,
            m=m,
            seg=max(m[_M["_segments"]], 1.0),
            chars=Counter(text),
            n_chars=max(len(text), 1),
        )

    def _morphology(self, d: _Doc, put) -> None:
        """UPOS, flexeme, category and qualifier shares of the segments; ambiguity and negation."""
        m, seg, n = d.m, d.seg, d.n
        for t in UPOS_TAGS:
            put(f"upos_{t}", m[_M[f"upos_{t}"]] / seg)
        for f in _FLEXEMES:
            put(f"flex_{f}", m[_M[f"flex_{f}"]] / seg)
        for cat, vals in _CATS.items():
            den = max(m[_M[f"_has_{cat}"]], 1.0)
            for v in vals:
                put(f"{cat}_{v}", m[_M[f"{cat}_{v}"]] / den)
        for k in _QUALS:
            put(f"qual_{k}", m[_M[f"qual_{k}"]] / seg)
        put("morph_mean_readings", m[_M["_readings"]] / seg / 10)
        put("morph_unambiguous", m[_M["_unamb"]] / seg)
        put("morph_unknown", m[_M["_ign"]] / seg)
        put("morph_neg", m[_M["_neg"]] / max(m[_M["_negable"]], 1.0))
        put("morph_segments_per_word", (m[_M["_segments"]] / n - 1) if n else 0.0)

    def _lexical(self, d: _Doc, put) -> None:
        """Vocabulary richness (TTR, hapaxes, Yule's K), word lengths and token kinds."""
        n, m, low = d.n, d.m, d.low
        put(
            "lex_lemma_ttr",
            0.0 if not n else min(len(frozenset().union(*(self._lemmas[j] for j in d.rows))) / d.seg, 1.0),
        )
        put("lex_function_words", m[_M["_func"]] / d.seg)
        if not n:
            return
        V = len(low)
        freq_of_freq = Counter(low.values())
        put("lex_ttr", V / n)
        put("lex_root_ttr", V / math.sqrt(n) / 10)
        put("lex_log_ttr", math.log(V) / math.log(n) if n > 1 else 1.0)
        put("lex_hapax", freq_of_freq.get(1, 0) / n)
        put("lex_dislegomena", freq_of_freq.get(2, 0) / n)
        put("lex_yule_k", 1e4 * (sum(i * i * vi for i, vi in freq_of_freq.items()) - n) / (n * n) / 1000)
        put("lex_top_word_share", max(low.values()) / n)
        lens, cw = d.V_rows[:, _M["_len"]], d.w
        mean = float(lens @ cw) / n
        put("lex_mean_word_len", mean / 10)
        put("lex_std_word_len", math.sqrt(max(float(((lens - mean) ** 2) @ cw) / n, 0.0)) / 10)
        put("lex_long_words", float(cw[lens >= 10].sum()) / n)
        hist = np.bincount(np.minimum(lens, _WLEN_BINS).astype(int), weights=cw, minlength=_WLEN_BINS + 1)
        for i in range(1, _WLEN_BINS + 1):
            put(f"wlen_{i}", hist[i] / n)
        put("str_numeric_tokens", m[_M["_numeric"]] / n)
        put("str_alnum_mixed_tokens", m[_M["_mixed"]] / n)
        put("str_allcaps_tokens", m[_M["_allcaps"]] / n)
        put("str_capitalised_tokens", m[_M["_capit"]] / n)
        put("str_url_like", len(_URLISH.findall(d.text)) / n)
        put("str_placeholders", len(_PLACEHOLDER.findall(d.text)) / n)

    def _syntax(self, d: _Doc, put) -> None:
        """Syntax proxies: sentence lengths and kinds, clause markers and part-of-speech ratios per sentence."""
        text, m = d.text, d.m
        sents = [s for s in _SENT_END.split(text) if s and s.strip()]
        ns = max(len(sents), 1)
        slen_l, verbless = [], 0
        idx, verb_col = self._idx, self._mat[:, _M["_verb"]]
        for s_ in sents:
            ws = _WORD.findall(s_)
            slen_l.append(len(ws))
            verbless += not any(verb_col[idx[f]] for f in ws if f in idx)
        slen = np.array(slen_l or [0], dtype=np.float64)
        put("syn_log_sentences", math.log1p(len(sents)))
        put("syn_mean_sent_len", slen.mean() / 50)
        put("syn_std_sent_len", slen.std() / 50)
        put("syn_max_sent_len", min(slen.max() / 200, 1.0))
        put("syn_long_sents", float((slen > 40).mean()))
        put("syn_short_sents", float((slen < 5).mean()))
        ends = [s.rstrip()[-1:] for s in sents]
        put("syn_questions", ends.count("?") / ns)
        put("syn_exclamations", ends.count("!") / ns)
        put("syn_commas_per_sent", text.count(",") / ns / 10)
        put("syn_subord_per_sent", m[_M["flex_comp"]] / ns)
        put("syn_coord_per_sent", m[_M["flex_conj"]] / ns)
        put("syn_verbs_per_sent", m[_M["_verb"]] / ns / 5)
        put("syn_verbless_sents", verbless / ns)
        nv = m[_M["_noun"]] + m[_M["_verb"]]
        put("syn_noun_verb_ratio", m[_M["_noun"]] / nv if nv else 0.0)
        an_ = m[_M["_adj"]] + m[_M["_noun"]]
        put("syn_adj_noun_ratio", m[_M["_adj"]] / an_ if an_ else 0.0)
        for k, wd in _SUBORD.items():
            put(f"syn_w_{k}", d.low.get(wd, 0) / ns)

    def _punctuation(self, d: _Doc, put) -> None:
        """Each punctuation mark per 100 characters, and all of them per word."""
        total_p = 0
        for k, p in _PUNCT.items():
            c = d.chars.get(p, 0)
            total_p += c
            put(f"punct_{k}", c / d.n_chars * 100)
        put("punct_total", total_p / max(d.n, 1))

    def _structure(self, d: _Doc, put) -> None:
        """Layout (lines, paragraphs, lists, repeats) and character classes (digits, case, scripts, noise)."""
        text, n = d.text, d.n
        lines = text.split("\n")
        ne = [ln.strip() for ln in lines if ln.strip()]
        nl = max(len(ne), 1)
        ll = np.array([len(x) for x in ne] or [0], dtype=np.float64)
        put("str_log_chars", math.log1p(len(text)))
        put("str_log_words", math.log1p(n))
        put("str_log_lines", math.log1p(len(ne)))
        put("str_mean_line_len", ll.mean() / 100)
        put("str_std_line_len", ll.std() / 100)
        put("str_longest_line", math.log1p(ll.max()))
        put("str_empty_lines", (len(lines) - len(ne)) / max(len(lines), 1))
        put("str_short_lines", float((ll < 30).mean()) if ne else 0.0)
        put("str_lines_no_final_punct", sum(1 for x in ne if x[-1] not in _LINE_FINAL) / nl)
        put("str_lines_upper_start", sum(1 for x in ne if x[0].isupper()) / nl)
        put("str_list_lines", sum(1 for x in ne if _LIST_LINE.match(x)) / nl)
        put("str_repeated_lines", (len(ne) - len(set(ne))) / nl)
        paras = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
        put("str_log_paragraphs", math.log1p(len(paras)))
        put("str_mean_paragraph_words", n / max(len(paras), 1) / 100)
        put("str_numbers_per_line", len(_NUMBER.findall(text)) / nl / 10)
        self._char_classes(d, put)

    @staticmethod
    def _char_classes(d: _Doc, put) -> None:
        chars, n_chars, text = d.chars, d.n_chars, d.text
        digits = sum(c for ch, c in chars.items() if ch.isdigit())
        letters = sum(c for ch, c in chars.items() if ch.isalpha())
        upper = sum(c for ch, c in chars.items() if ch.isupper())
        spaces = sum(c for ch, c in chars.items() if ch.isspace())
        nonascii = sum(c for ch, c in chars.items() if ord(ch) > 127)
        control = sum(c for ch, c in chars.items() if (ord(ch) < 32 and ch not in "\n\t\r") or 0x7F <= ord(ch) < 0xA0)
        put("str_digit_ratio", digits / n_chars)
        put("str_upper_ratio", upper / max(letters, 1))
        put("str_letter_ratio", letters / n_chars)
        put("str_space_ratio", spaces / n_chars)
        put("str_nonletter_ratio", (n_chars - letters - spaces) / n_chars if text else 0.0)
        put("str_nonascii_ratio", nonascii / n_chars)
        put("str_pl_diacritic_ratio", sum(chars.get(ch, 0) for ch in _PL) / max(letters, 1))
        put("str_foreign_letter_ratio", sum(chars.get(ch, 0) for ch in _FOREIGN) / max(letters, 1))
        put("str_control_ratio", control / n_chars)
        put("str_replacement_ratio", chars.get("\ufffd", 0) / n_chars)
        put("str_mojibake_ratio", len(_MOJIBAKE.findall(text)) / n_chars)
        put("str_table_ratio", (chars.get("|", 0) + chars.get("\t", 0)) / n_chars)
        p = np.fromiter(chars.values(), dtype=np.float64, count=len(chars)) / n_chars
        put("str_char_entropy", float(-(p * np.log2(p)).sum()) / 8 if len(p) else 0.0)

    def many(self, texts) -> np.ndarray:
        return np.stack([self(t) for t in texts]) if texts else np.zeros((0, len(FEATURE_NAMES)), np.float32)


def features(text: str) -> dict[str, float]:
    """Named features of one document (convenience wrapper around :class:`FeatureExtractor`)."""
    return dict(zip(FEATURE_NAMES, _default_extractor()(text).tolist()))


@functools.cache
def _default_extractor() -> FeatureExtractor:
    return FeatureExtractor()


def markdown_table() -> str:
    """The feature list as Markdown (docs/curation_features.md is generated from this)."""
    rows = [
        "# Stylometric features",
        "",
        "Generated from `bielik.data.curate.stylometry.FEATURES` by "
        "`python -m bielik.data.curate.stylometry > docs/curation_features.md`; do not edit by hand.",
        "",
        f"{len(FEATURES)} features, in the order of the feature vector.",
        "",
        "| # | feature | definition |",
        "|---:|---|---|",
    ]
    rows += [f"| {i} | `{n}` | {d} |" for i, (n, d) in enumerate(FEATURES.items())]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
