"""``bielik tokenizer stats``: how efficiently tokenizers encode a text (RECIPE §2.1).

For a text with C characters and W words that a tokenizer encodes into T tokens:

* **CpT** (characters per token) = C / T — higher is better: more text fits the context, training
  and inference cost less per character;
* **TpW** (tokens per word, "fertility") = T / W — lower is better.

Definitions, printed with every table:

* characters are Unicode code points of the text as read (UTF-8, newlines included);
* words are maximal runs of non-whitespace (``str.split()``), punctuation attached;
* tokens are what the tokenizer produces for the text alone: **no BOS/EOS** or other added special
  tokens; a SentencePiece dummy-prefix ``▁`` is part of the tokenization and counts.

JSONL inputs are encoded document by document and summed. The default texts are the Polish and
English preambles of the Constitution of the Republic of Poland (public domain, shipped in
``bielik/resources/corpus``), the text the Bielik reports compare tokenizers on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from bielik.artifacts import atomic_write_text, staged_dir, write_json, write_stage_record
from bielik.config import StageConfig
from bielik.errors import DataError
from bielik.log import get_logger

log = get_logger(__name__)

NAMED_TEXTS = {
    "preamble-pl": "constitution_preamble_pl.txt",
    "preamble-en": "constitution_preamble_en.txt",
}
DEFINITIONS = (
    "CpT = characters (Unicode code points) / tokens; TpW = tokens / words (whitespace-separated); "
    "tokens exclude BOS/EOS and other added special tokens."
)


class TokenizerStatsConfig(StageConfig):
    tokenizers: list[str] | dict[str, str] = Field(
        default_factory=lambda: ["mistral-v0.1", "llama2", "qwen2"],
        description="HF dirs, SentencePiece .model, .gguf, tekken .json or known names; a mapping gives display names",
    )
    texts: list[str] = Field(
        default_factory=lambda: ["preamble-pl", "preamble-en"],
        description="preamble-pl, preamble-en, .txt files or JSONL corpora",
    )
    output: str = "runs/tokenizer-stats"
    chart: bool = True
    overwrite: bool = False


def read_texts(spec: str) -> tuple[str, list[str]]:
    from bielik.data.corpus import JSONL_SUFFIXES, read_corpus, shipped_corpus_dir

    if spec in NAMED_TEXTS:
        return spec, [(shipped_corpus_dir() / NAMED_TEXTS[spec]).read_text(encoding="utf-8")]
    path = Path(spec)
    if path.is_dir() or path.name.endswith(JSONL_SUFFIXES):
        return path.name, [d.text for d in read_corpus([path])]
    if not path.is_file():
        raise DataError(f"text {spec} does not exist (give {', '.join(NAMED_TEXTS)}, a .txt file or JSONL)")
    try:
        return path.stem, [path.read_text(encoding="utf-8")]
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from None


def measure(tok, texts: list[str]) -> dict[str, Any]:
    """Counts and ratios of one tokenizer (:class:`bielik.tokenizer.formats.Tok`) on texts."""
    chars = sum(len(t) for t in texts)
    words = sum(len(t.split()) for t in texts)
    tokens = sum(len(tok.encode(t)) for t in texts)
    return {
        "characters": chars,
        "words": words,
        "tokens": tokens,
        "cpt": chars / tokens if tokens else 0.0,
        "tpw": tokens / words if words else 0.0,
    }


def markdown_table(rows: list[dict[str, Any]], text_names: list[str]) -> str:
    head = "| tokenizer | vocab | " + " | ".join(f"{t} tokens | {t} CpT | {t} TpW" for t in text_names) + " |"
    sep = "|---|---:|" + "---:|---:|---:|" * len(text_names)
    lines = [head, sep]
    by_tok: dict[str, dict[str, dict]] = {}
    vocab: dict[str, int] = {}
    for r in rows:
        by_tok.setdefault(r["tokenizer"], {})[r["text"]] = r
        vocab[r["tokenizer"]] = r["vocab_size"]
    for name, per_text in by_tok.items():
        cells = " | ".join(
            f"{per_text[t]['tokens']} | {per_text[t]['cpt']:.2f} | {per_text[t]['tpw']:.2f}" for t in text_names
        )
        lines.append(f"| {name} | {vocab[name]:,} | {cells} |")
    return "\n".join(lines) + f"\n\n{DEFINITIONS}\n"


def _chart(rows: list[dict[str, Any]], text_names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["tokenizer"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(4 + 1.6 * len(names), 4))
    width = 0.8 / len(text_names)
    for ax, key, title in (
        (axes[0], "cpt", "characters per token (higher is better)"),
        (axes[1], "tpw", "tokens per word (lower is better)"),
    ):
        for k, text in enumerate(text_names):
            vals = [next(r[key] for r in rows if r["tokenizer"] == n and r["text"] == text) for n in names]
            xs = [i + (k - (len(text_names) - 1) / 2) * width for i in range(len(names))]
            bars = ax.bar(xs, vals, width, label=text)
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
        ax.set_ylim(0, 1.25 * max(r[key] for r in rows))
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8, loc="upper right", ncol=len(text_names))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def tokenizer_stats(cfg: TokenizerStatsConfig) -> dict[str, Any]:
    """Measure every tokenizer on every text; write ``stats.md``, ``stats.json``, ``chart.png``."""
    from bielik.tokenizer.formats import load_tokenizer

    texts = [read_texts(t) for t in cfg.texts]  # fail on a bad text before loading tokenizers
    specs = cfg.tokenizers.items() if isinstance(cfg.tokenizers, dict) else [(None, s) for s in cfg.tokenizers]
    rows = []
    for label, spec in specs:
        tok = load_tokenizer(spec, name=label)
        for text_name, docs in texts:
            rows.append(
                {
                    "tokenizer": tok.name,
                    "source": tok.source,
                    "kind": tok.kind,
                    "vocab_size": tok.vocab_size,
                    "text": text_name,
                    **measure(tok, docs),
                }
            )
        log.info("measured %s (%s, %d tokens)", tok.name, tok.kind, tok.vocab_size)
    text_names = [n for n, _ in texts]
    table = markdown_table(rows, text_names)
    with staged_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
        atomic_write_text(tmp / "stats.md", table)
        write_json(tmp / "stats.json", rows)
        if cfg.chart:
            _chart(rows, text_names, tmp / "chart.png")
        write_stage_record(tmp, "tokenizer.stats", cfg, metrics={"rows": rows, "definitions": DEFINITIONS})
    return {"rows": rows, "table": table, "output": cfg.output}
