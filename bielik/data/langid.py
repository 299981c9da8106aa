"""Language identification: ``detect(text) -> (lang, prob)``.

Backed by ``py3langid`` (a maintained fork of langid.py: a multinomial naive Bayes over byte
n-grams, 97 languages, model shipped in the wheel, no network; Lui & Baldwin 2012, "langid.py: An
Off-the-shelf Language Identification Tool"). ``prob`` is the posterior P(lang | text) after
normalising the naive-Bayes scores over all languages.

Long documents are classified from their first ``max_chars`` characters: the posterior saturates
after a few hundred characters and the cost grows linearly with length.
"""

from __future__ import annotations

import functools

DEFAULT_MAX_CHARS = 2000


@functools.cache
def _identifier(languages: tuple[str, ...] | None = None):
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    # MODEL_FILE is relative to the package folder, not to the working directory
    ident = LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)
    if languages:
        ident.set_languages(list(languages))
    return ident


def detect(
    text: str, max_chars: int = DEFAULT_MAX_CHARS, languages: tuple[str, ...] | None = None
) -> tuple[str, float]:
    """Most probable ISO 639-1 language of ``text`` and its posterior probability.

    ``languages`` restricts the candidates (e.g. ``("pl", "en")``). Text without letters gives
    ``("und", 0.0)``.
    """
    sample = text[:max_chars]
    if not any(ch.isalpha() for ch in sample):
        return "und", 0.0
    lang, prob = _identifier(tuple(sorted(languages)) if languages else None).classify(sample)
    return str(lang), float(prob)


def share_in(texts: list[str], lang: str, min_prob: float = 0.0) -> float:
    """Fraction of ``texts`` detected as ``lang`` (e.g. MT-Bench's ``responses_pl``)."""
    if not texts:
        return 0.0
    hits = 0
    for t in texts:
        got, p = detect(t)
        hits += got == lang and p >= min_prob
    return hits / len(texts)
