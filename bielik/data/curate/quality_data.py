"""A reproducible, constructed HIGH/MEDIUM/LOW quality set (no annotated Polish set exists offline).

The Bielik team labelled web documents by hand; that set was never released and nothing comparable
can be obtained offline. We therefore *construct* a labelled set from openly licensed, edited Polish
text (the shipped corpus: literature, law, news, encyclopaedia) and label by construction, following
the class definitions of RECIPE.md §1.4:

* **HIGH** — a passage of edited text as it is (a window of 400–5,000 characters cut at line
  boundaries).
* **MEDIUM** — a good passage with significant but recoverable flaws: wrapped in site furniture
  (menus, headers, cookie banners, share/login prompts, footers), or with one damaged region
  (a paragraph of mojibake, an inserted number table), or with light OCR-like noise.
* **LOW** — realistic corruptions: whole-text mojibake, shredded tables and number dumps
  ("financial report" soup), thematically mixed truncated fragments stitched from several
  documents, keyword/SEO spam, word salad, heavy OCR damage with broken lines, vulgar content
  (vulgarisms sprinkled over 7–12 % of the words).

Train and test passages come from **disjoint source documents** (split by a hash of the source id),
so the held-out score is not inflated by near-identical passages. The construction is deterministic
given ``seed``. A classifier trained on it learns to separate *these* corruptions from edited text;
how well that transfers to real web data is unknown until someone labels real documents — the
``bielik data quality train`` command takes any labelled JSONL for that.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator

from pydantic import Field

from bielik.config import StageConfig
from bielik.data.curate.config import DEFAULT_MAX_CHARS

LABELS = ("HIGH", "MEDIUM", "LOW")
DEFAULT_SOURCES = ["pl_legal", "pl_ntrex_news", "pl_wikipedia", "pl_wolnelektury", "pl_ud_pud"]


class QualitySetConfig(StageConfig):
    output: str = Field("runs/quality-set", description="output directory (train.jsonl, test.jsonl)")
    inputs: list[str] = Field(
        default_factory=lambda: ["shipped"],
        description="JSONL files/folders of edited Polish text ('shipped' = the packaged corpus)",
    )
    sources: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SOURCES),
        description="file-name stems to use from the inputs (empty = all)",
    )
    examples_per_source: int = Field(
        800,
        ge=1,
        description="passages cut from each source file (spread over its documents), so registers are balanced",
    )
    max_passages_per_doc: int = Field(12, ge=1)
    min_chars: int = Field(400, ge=100)
    max_chars: int = Field(DEFAULT_MAX_CHARS, ge=200)
    test_fraction: float = Field(0.25, gt=0, lt=1)
    seed: int = 0
    overwrite: bool = False


# --- site furniture and spam vocabulary (Polish web) ------------------------------------------

_MENU_ITEMS = [
    "Strona główna",
    "Aktualności",
    "Wiadomości",
    "Sport",
    "Kultura",
    "Biznes",
    "Technologie",
    "Zdrowie",
    "Motoryzacja",
    "Kontakt",
    "O nas",
    "Regulamin",
    "Galeria",
    "Wideo",
    "Blog",
    "Forum",
    "Ogłoszenia",
    "Pogoda",
    "Horoskop",
    "Przepisy",
    "Dom i ogród",
    "Podróże",
    "Praca",
    "Nieruchomości",
    "Szukaj",
]
_FURNITURE = [
    "Ta strona używa plików cookies w celu świadczenia usług. Korzystanie z witryny oznacza zgodę na ich zapis.",
    "Akceptuję pliki cookies",
    "Zaloguj się",
    "Zarejestruj się",
    "Zapisz się do newslettera!",
    "Udostępnij: Facebook | Twitter | LinkedIn | E-mail",
    "Obserwuj nas na Facebooku",
    "© {year} {site}. Wszelkie prawa zastrzeżone.",
    "Polityka prywatności | Regulamin serwisu | Mapa strony",
    "Komentarze ({n})",
    "Dodaj komentarz",
    "Czytaj także: {title}",
    "Czytaj więcej »",
    "REKLAMA",
    "Tagi: {tags}",
    "Ostatnia aktualizacja: {date}",
    "Poprzedni artykuł",
    "Następny artykuł",
    "Powrót do góry",
    "Przejdź do treści",
    "Najczęściej czytane",
    "Polecamy",
    "Zobacz również: {title}",
]
_SPAM = [
    "tanie",
    "najlepsze",
    "promocja",
    "sklep",
    "online",
    "sprzedaż",
    "kup teraz",
    "darmowa dostawa",
    "opinie",
    "cena",
    "ranking",
    "2024",
    "warszawa",
    "kraków",
    "hurtownia",
    "okazja",
    "rabat",
    "kredyt",
    "pożyczka",
]
# vulgar content is LOW in the reports' definition; SGJP marks these forms "wulg."
_VULGAR = [
    "kurwa",
    "kurwy",
    "chuj",
    "chuja",
    "jebany",
    "jebać",
    "pierdolić",
    "spierdalaj",
    "zajebisty",
    "pierdolony",
    "skurwysyn",
    "pizda",
    "wkurwia",
    "chujowy",
]
_SITES = ["portal-informacyjny.pl", "wiadomosci24.pl", "mojemiasto.info", "forum-dyskusyjne.net", "sklep-okazje.pl"]


def _passages(text: str, rng: random.Random, n: int, lo: int, hi: int) -> list[str]:
    """Up to ``n`` non-overlapping windows of lo..hi characters, cut at line boundaries."""
    lines = text.split("\n")
    out, i = [], 0
    starts = list(range(1, len(lines)))
    rng.shuffle(starts)
    starts.insert(0, 0)  # the document's beginning (titles, headings) is always one of the windows
    used: set[int] = set()
    for s in starts:
        if len(out) >= n:
            break
        if s in used or not lines[s].strip():
            continue
        target = rng.randint(lo, hi)
        buf, j = [], s
        while j < len(lines) and j not in used and sum(len(b) + 1 for b in buf) < target:
            buf.append(lines[j])
            j += 1
        chunk = "\n".join(buf).strip()
        if len(chunk) >= lo:
            out.append(chunk[: hi + 500])
            used.update(range(s, j))
        i += 1
    return out


def _mojibake(text: str, rng: random.Random) -> str:
    enc = rng.choice(["cp1250", "latin-1", "cp1252", "iso-8859-2"])
    dec = rng.choice([e for e in ["cp1250", "latin-1", "cp1252", "iso-8859-2", "cp852"] if e != enc])
    try:
        return text.encode("utf-8").decode(dec, errors="replace")
    except LookupError:
        return text.encode("utf-8").decode("latin-1", errors="replace")


def _number_table(rng: random.Random, rows: int, words: list[str]) -> str:
    out = []
    for _ in range(rows):
        cells = []
        if words and rng.random() < 0.6:
            cells.append(rng.choice(words).capitalize())
        for _ in range(rng.randint(3, 9)):
            r = rng.random()
            if r < 0.4:
                cells.append(f"{rng.randint(0, 999_999):,}".replace(",", " "))
            elif r < 0.7:
                cells.append(f"{rng.uniform(-100, 100):.2f}".replace(".", ","))
            elif r < 0.85:
                cells.append(f"{rng.uniform(0, 100):.1f}%")
            else:
                cells.append(str(rng.randint(1990, 2025)))
        sep = rng.choice([" ", "  ", " | ", "\t"])
        out.append(sep.join(cells))
    return "\n".join(out)


def _furniture(rng: random.Random, title: str, words: list[str]) -> str:
    line = rng.choice(_FURNITURE)
    return line.format(
        year=rng.randint(2005, 2025),
        site=rng.choice(_SITES),
        n=rng.randint(0, 250),
        title=title,
        tags=", ".join(rng.sample(words, min(4, len(words)))) if words else "news",
        date=f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.{rng.randint(2010, 2025)}",
    )


def _menu(rng: random.Random) -> str:
    items = rng.sample(_MENU_ITEMS, rng.randint(4, 9))
    return rng.choice([" | ".join(items), " • ".join(items), "\n".join(items), " » ".join(items)])


def _ocr_noise(text: str, rng: random.Random, rate: float) -> str:
    chars = list(text)
    for i in range(len(chars)):
        if chars[i].isalpha() and rng.random() < rate:
            op = rng.random()
            if op < 0.4:
                chars[i] = ""
            elif op < 0.7:
                chars[i] = rng.choice("lI1rnmcéoO0,.'")
            else:
                chars[i] = chars[i] + rng.choice(" -")
    return "".join(chars)


def _words(text: str) -> list[str]:
    return list(re.findall(r"[^\W\d_]{4,}", text))


def make_medium(text: str, rng: random.Random, other_titles: list[str]) -> tuple[str, str]:
    words = _words(text)
    kind = rng.choice(["wrapped", "wrapped", "damaged_region", "table_insert", "light_ocr"])
    if kind == "wrapped":
        # an article snippet wrapped in menus, headers and footers
        body = text[: rng.randint(min(len(text), 600), max(min(len(text), 2500), 600))]
        head = [_menu(rng)] + [_furniture(rng, rng.choice(other_titles), words) for _ in range(rng.randint(2, 5))]
        foot = [_furniture(rng, rng.choice(other_titles), words) for _ in range(rng.randint(3, 7))] + [_menu(rng)]
        return "\n".join(head + [body] + foot), kind
    paras = text.split("\n")
    if kind == "damaged_region" and len(paras) > 2:
        k = rng.randrange(len(paras))
        span = max(1, len(paras) // rng.randint(3, 5))
        for j in range(k, min(k + span, len(paras))):
            paras[j] = _mojibake(paras[j], rng)
        return "\n".join(paras), kind
    if kind in ("damaged_region", "table_insert"):
        k = rng.randrange(len(paras) + 1)
        rows = max(2, len(text) // 400)
        paras.insert(k, _number_table(rng, rows, words))
        return "\n".join(paras), "table_insert"
    return _ocr_noise(text, rng, rng.uniform(0.01, 0.03)), kind


def make_low(text: str, rng: random.Random, pool: list[str]) -> tuple[str, str]:
    words = _words(text)
    kind = rng.choice(
        ["mojibake", "number_dump", "mixed_fragments", "spam", "word_salad", "heavy_ocr", "furniture_only", "vulgar"]
    )
    if kind == "mojibake":
        return _mojibake(text, rng), kind
    if kind == "number_dump":
        rows = rng.randint(8, 40)
        head = " ".join(rng.sample(words, min(len(words), rng.randint(2, 6)))).capitalize() if words else "Raport"
        return head + "\n" + _number_table(rng, rows, words), kind
    if kind == "mixed_fragments":
        frags = []
        for src in rng.sample(pool, min(len(pool), rng.randint(3, 6))):
            a = rng.randrange(max(1, len(src) - 200))
            frags.append(src[a : a + rng.randint(80, 400)])
        return rng.choice(["\n", " ", " ... "]).join(frags), kind
    if kind == "spam":
        base = words[:30] or ["produkt"]
        lines = []
        for _ in range(rng.randint(8, 30)):
            kw = " ".join(rng.sample(_SPAM, 2)) + " " + rng.choice(base).lower()
            lines.append(
                rng.choice(
                    [kw, kw + "!!!", kw.upper(), f"{kw} - {rng.choice(_SITES)}", f"{kw} {rng.randint(10, 999)} zł"]
                )
            )
        return rng.choice([", ", "\n", " | "]).join(lines), kind
    if kind == "word_salad":
        toks = text.split()
        rng.shuffle(toks)
        return " ".join(toks[: rng.randint(80, 600)]), kind
    if kind == "heavy_ocr":
        noisy = _ocr_noise(text, rng, rng.uniform(0.08, 0.2))
        toks = noisy.split()
        out, line = [], []
        for t in toks:
            line.append(t)
            if rng.random() < 0.3:
                out.append(" ".join(line))
                line = []
        return "\n".join(out + [" ".join(line)]), kind
    if kind == "vulgar":
        toks = text.split(" ")
        for i in rng.sample(range(len(toks)), max(1, len(toks) // rng.randint(8, 15))):
            toks[i] = rng.choice(_VULGAR) + rng.choice(["", ",", "!"])
        return " ".join(toks), kind
    # mostly furniture around a sliver of text
    sliver = text[: rng.randint(60, 200)]
    parts = [_menu(rng)] + [_furniture(rng, "", words) for _ in range(rng.randint(6, 14))] + [sliver] + [_menu(rng)]
    return "\n".join(parts), kind


def split_of(source_id: str, test_fraction: float, seed: int) -> str:
    h = int(hashlib.sha256(f"{seed}:{source_id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < test_fraction else "train"


def build_examples(docs: list[dict], cfg: QualitySetConfig) -> Iterator[dict]:
    """Labelled examples from ``docs`` (dicts with id, text); deterministic given ``cfg.seed``."""
    rng = random.Random(cfg.seed)
    titles = [d["text"].strip().split("\n", 1)[0][:80] for d in docs]
    for doc in docs:
        split = split_of(doc["id"], cfg.test_fraction, cfg.seed)
        # fragments for mixing come from documents of the same split only
        for pi, passage in enumerate(
            _passages(doc["text"], rng, doc.get("n_passages", 1), cfg.min_chars, cfg.max_chars)
        ):
            label = LABELS[rng.randrange(3)]
            if label == "HIGH":
                text, kind = passage, "edited"
            elif label == "MEDIUM":
                text, kind = make_medium(passage, rng, titles)
            else:
                pool = [
                    docs[j]["text"]
                    for j in rng.sample(range(len(docs)), min(12, len(docs)))
                    if split_of(docs[j]["id"], cfg.test_fraction, cfg.seed) == split
                ] or [passage]
                text, kind = make_low(passage, rng, pool)
            yield {
                "id": f"{doc['id']}#p{pi}",
                "text": text,
                "label": label,
                "construction": kind,
                "source_doc": doc["id"],
                "split": split,
            }


def build_quality_set(cfg: QualitySetConfig) -> dict:
    """Write ``train.jsonl.gz`` and ``test.jsonl.gz`` (disjoint source documents) and the counts."""
    import gzip
    import json
    from collections import Counter

    from bielik.artifacts import staged_dir, write_stage_record
    from bielik.data.curate.io import expand_inputs, iter_input_records
    from bielik.errors import DataError

    files = [f for f in expand_inputs(cfg.inputs) if not cfg.sources or f.name.split(".")[0] in cfg.sources]
    if not files:
        raise DataError(f"no input file matches sources={cfg.sources} in {cfg.inputs}")
    docs = []
    for f in files:
        recs = [rec for _, rec in iter_input_records(f)]
        per_doc = min(cfg.max_passages_per_doc, -(-cfg.examples_per_source // max(len(recs), 1)))
        rng = random.Random(f"{cfg.seed}:{f.name}")
        if len(recs) * per_doc > cfg.examples_per_source:
            recs = rng.sample(recs, max(1, cfg.examples_per_source // per_doc))
        docs += [
            {"id": str(r.get("id", f"{f.name}:{i}")), "text": r["text"], "n_passages": per_doc}
            for i, r in enumerate(recs)
        ]
    counts: Counter = Counter()
    with staged_dir(cfg.output, overwrite=cfg.overwrite) as out:
        handles = {s: gzip.open(out / f"{s}.jsonl.gz", "wt", encoding="utf-8") for s in ("train", "test")}  # noqa: SIM115
        try:
            for ex in build_examples(docs, cfg):
                handles[ex["split"]].write(json.dumps(ex, ensure_ascii=False) + "\n")
                counts[(ex["split"], ex["label"], ex["construction"])] += 1
        finally:
            for h in handles.values():
                h.close()
        metrics = {
            "source_files": [f.name for f in files],
            "source_docs": len(docs),
            "examples": {
                s: {lab: sum(v for (sp, lb, _), v in counts.items() if sp == s and lb == lab) for lab in LABELS}
                for s in ("train", "test")
            },
            "constructions": {f"{sp}/{lb}/{k}": v for (sp, lb, k), v in sorted(counts.items())},
        }
        write_stage_record(out, "quality.build", cfg, {f.name: f for f in files}, metrics)
    return metrics
