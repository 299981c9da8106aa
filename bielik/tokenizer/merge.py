"""``bielik tokenizer merge``: extend a base BPE tokenizer with a Polish one, and measure the damage.

Bielik 7B v0.1 tried to extend Mistral's 32k vocabulary with the tokens of the Polish APT3
tokenizer and gave up: "the two BPE vocabularies overlap and merges become ambiguous" (RECIPE
§2.2). This stage performs that merge the way vocabulary extensions are usually done (e.g.
Chinese-LLaMA, Cui et al., arXiv 2304.08177): the new tokens are appended after the base vocabulary
and the extra tokenizer's merges after the base merges, so the base behaviour has priority. Both
tokenizers must be BPE with the same token spelling (both SentencePiece-style ``▁``, or both
byte-level ``Ġ``).

It then measures, on a sample of target-language documents, the ambiguity that made the merge
fail. With M the merged tokenizer, E the extra (Polish) one and B the base:

* **non-canonical words**: distinct words w whose E-segmentation uses only tokens that exist in M,
  yet M segments w differently *and into more tokens*: M's vocabulary contains the better
  segmentation but its merge order cannot produce it (base merges fire first and cut the word
  where the Polish merges did not expect it);
* **unreachable tokens**: added tokens that E uses on the sample but M never produces there
  (dead embedding rows);
* **conflicting merges**: extra merges (a, b) -> r where B already builds r from a different pair
  (same token, two derivations: which one fires depends on the surrounding merges), and extra
  merges whose parts never occur together under M;
* **round-trip failures**: documents with decode(encode(x)) != x under M but not under B and E
  (failures a parent shares, such as SentencePiece's leading-space handling, are counted apart).

Counts are by distinct word and weighted by occurrences; examples are written to the report.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

from pydantic import Field

from bielik.artifacts import atomic_write_text, staged_dir, write_json, write_stage_record
from bielik.config import StageConfig
from bielik.errors import BielikError, DataError
from bielik.log import get_logger
from bielik.progress import progress
from bielik.tokenizer.formats import tokenizer_style

log = get_logger(__name__)


class TokenizerMergeConfig(StageConfig):
    base: str = Field("mistral-v0.1", description="base tokenizer (e.g. mistral-v0.1 or an HF dir)")
    extra: str = Field(
        "runs/tokenizer",
        description="tokenizer whose tokens are added (same spelling: SentencePiece-style for Mistral)",
    )
    output: str = "runs/tokenizer-merged"
    sample: list[str] = Field(
        default_factory=lambda: ["shipped"], description="JSONL corpus to measure the ambiguity on"
    )
    langs: list[str] | None = Field(default_factory=lambda: ["pl"])
    sample_docs: int = Field(300, ge=1)
    examples: int = Field(20, ge=0)
    seed: int = 0
    overwrite: bool = False


def _bpe_json(tok) -> dict[str, Any]:
    spec = json.loads(tok.backend_tokenizer.to_str())
    if spec.get("model", {}).get("type") != "BPE":
        raise BielikError(
            f"tokenizer {getattr(tok, 'name_or_path', '?')} is {spec.get('model', {}).get('type')}, "
            "not BPE: cannot merge"
        )
    spec["model"]["merges"] = [
        tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in spec["model"]["merges"]
    ]
    return spec


def merge_vocabularies(base, extra) -> tuple[Any, dict[str, Any]]:
    """The merged HF tokenizer and static facts (added tokens, merges, conflicting merges)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    sb, se = tokenizer_style(base), tokenizer_style(extra)
    if sb != se:
        raise BielikError(
            f"cannot merge a {se} tokenizer into a {sb} one: their tokens are spelled differently "
            f"(train the extra tokenizer with style={'sentencepiece' if sb == 'metaspace' else 'bytelevel'})"
        )
    jb, je = _bpe_json(base), _bpe_json(extra)
    vocab: dict[str, int] = dict(jb["model"]["vocab"])
    specials_e = set(extra.all_special_tokens)
    next_id = max([*vocab.values(), *(t["id"] for t in jb.get("added_tokens", []))]) + 1
    added: list[str] = []
    for token, _ in sorted(je["model"]["vocab"].items(), key=lambda kv: kv[1]):
        if (
            token in vocab
            or token in specials_e
            or (token.startswith("<0x") and token.endswith(">") and len(token) == 6)
        ):
            continue
        vocab[token] = next_id
        next_id += 1
        added.append(token)
    base_merges = jb["model"]["merges"]
    have = set(base_merges)
    producer = {a + b: (a, b) for a, b in base_merges}
    merges = list(base_merges)
    conflicting = []
    for a, b in je["model"]["merges"]:
        if (a, b) in have or a not in vocab or b not in vocab or a + b not in vocab:
            continue
        if a + b in producer and producer[a + b] != (a, b):
            conflicting.append({"merge": [a, b], "token": a + b, "base_merge": list(producer[a + b])})
        merges.append((a, b))
        have.add((a, b))
    spec = dict(jb)
    spec["model"] = {**jb["model"], "vocab": vocab, "merges": [list(m) for m in merges]}
    backend = Tokenizer.from_str(json.dumps(spec))
    specials = {
        k: getattr(base, k) for k in ("bos_token", "eos_token", "unk_token", "pad_token") if getattr(base, k, None)
    }
    merged = PreTrainedTokenizerFast(tokenizer_object=backend, clean_up_tokenization_spaces=False, **specials)
    if getattr(base, "chat_template", None):
        merged.chat_template = base.chat_template
    facts = {
        "base_vocab": len(base),
        "extra_vocab": len(extra),
        "merged_vocab": len(merged),
        "added_tokens": len(added),
        "base_merges": len(base_merges),
        "added_merges": len(merges) - len(base_merges),
        "conflicting_merges": len(conflicting),
    }
    return merged, {"facts": facts, "added": added, "conflicting": conflicting}


def _sample_docs(cfg: TokenizerMergeConfig) -> list[str]:
    from bielik.data.corpus import read_corpus

    docs = [d.text for d in read_corpus(cfg.sample) if cfg.langs is None or d.lang in cfg.langs]
    if not docs:
        raise DataError(f"no documents in {cfg.sample} with lang in {cfg.langs} to measure the merge on")
    random.Random(cfg.seed).shuffle(docs)
    return docs[: cfg.sample_docs]


def ambiguity_report(base, extra, merged, added: list[str], docs: list[str], n_examples: int) -> dict[str, Any]:
    """Measure non-canonical words, unreachable tokens and round-trip failures on ``docs``."""
    words = Counter(w for d in docs for w in d.split())
    distinct = list(words)
    # a word as it occurs in running text: byte-level BPE sees its leading space (Ġ), SentencePiece
    # style tokenizers add the ▁ themselves
    lead = " " if tokenizer_style(merged) == "bytelevel" else ""
    units = [lead + w for w in distinct]
    enc = lambda tok: [tok.convert_ids_to_tokens(ids) for ids in tok(units, add_special_tokens=False).input_ids]  # noqa: E731
    seg_m, seg_e, seg_b = enc(merged), enc(extra), enc(base)
    mvocab = merged.get_vocab()
    added_set = set(added)
    noncanon, noncanon_occ = [], 0
    used_e: Counter = Counter()
    used_m: Counter = Counter()
    for w, m, e, b in zip(distinct, seg_m, seg_e, seg_b):
        n = words[w]
        used_m.update({t: n for t in m if t in added_set})
        used_e.update({t: n for t in e if t in added_set})
        if all(t in mvocab for t in e) and m != e and len(m) > len(e):
            noncanon.append((w, m, e, b, n))
            noncanon_occ += n
    unreachable = sorted((t for t in used_e if t not in used_m), key=lambda t: -used_e[t])

    def fails(tok, d: str) -> bool:
        return tok.decode(tok(d, add_special_tokens=False).input_ids) != d

    roundtrip, parents_fail = [], 0
    with progress("round-trip check", total=len(docs), unit="docs") as bar:
        for d in docs:
            back = merged.decode(merged(d, add_special_tokens=False).input_ids)
            if back != d:
                if fails(base, d) or fails(extra, d):
                    parents_fail += 1  # a parent fails too (e.g. SentencePiece leading-space handling)
                else:
                    i = next((k for k, (x, y) in enumerate(zip(back, d)) if x != y), min(len(back), len(d)))
                    roundtrip.append(
                        {"at": i, "expected": d[max(0, i - 20) : i + 20], "got": back[max(0, i - 20) : i + 20]}
                    )
            bar.advance()
    total_occ = sum(words.values())
    count = lambda tok: sum(len(ids) for ids in tok(docs, add_special_tokens=False).input_ids)  # noqa: E731
    chars = sum(len(d) for d in docs)
    noncanon.sort(key=lambda x: -x[4])
    return {
        "documents": len(docs),
        "characters": chars,
        "words": total_occ,
        "distinct_words": len(distinct),
        "non_canonical_words": len(noncanon),
        "non_canonical_occurrences": noncanon_occ,
        "non_canonical_share": noncanon_occ / max(total_occ, 1),
        "added_tokens_used_by_extra": len(used_e),
        "unreachable_tokens": len(unreachable),
        "unreachable_share": len(unreachable) / max(len(used_e), 1),
        "roundtrip_failures": len(roundtrip),
        "roundtrip_failures_shared_with_a_parent": parents_fail,
        "cpt": {"base": chars / count(base), "extra": chars / count(extra), "merged": chars / count(merged)},
        "examples": {
            "non_canonical": [
                {"word": w, "merged": m, "extra": e, "base": b, "count": n} for w, m, e, b, n in noncanon[:n_examples]
            ],
            "unreachable": [{"token": t, "uses_by_extra": used_e[t]} for t in unreachable[:n_examples]],
            "roundtrip": roundtrip[:n_examples],
        },
    }


def _markdown(facts: dict[str, Any], rep: dict[str, Any], conflicting: list[dict]) -> str:
    lines = [
        "# Tokenizer merge report",
        "",
        f"base {facts['base_vocab']:,} + {facts['added_tokens']:,} added tokens = {facts['merged_vocab']:,}; "
        f"{facts['added_merges']:,} merges added after {facts['base_merges']:,} base merges.",
        "",
        "| check | count | share |",
        "|---|---:|---:|",
        f"| non-canonical words (M longer than E although M has E's tokens) | "
        f"{rep['non_canonical_words']:,} distinct / "
        f"{rep['non_canonical_occurrences']:,} occurrences | {100 * rep['non_canonical_share']:.1f}% of words |",
        f"| unreachable added tokens (E uses them, M never produces them) | "
        f"{rep['unreachable_tokens']:,} of {rep['added_tokens_used_by_extra']:,} | "
        f"{100 * rep['unreachable_share']:.1f}% |",
        f"| conflicting merges (token already built by a different base merge) | {facts['conflicting_merges']:,} | |",
        f"| round-trip failures introduced by the merge (documents) | "
        f"{rep['roundtrip_failures']:,} of {rep['documents']:,} | "
        f"({rep['roundtrip_failures_shared_with_a_parent']} more fail in a parent too) |",
        "",
        f"Characters per token on the sample: base {rep['cpt']['base']:.3f}, extra {rep['cpt']['extra']:.3f}, "
        f"merged {rep['cpt']['merged']:.3f}.",
        "",
        "## Non-canonical examples",
        "",
    ]
    for ex in rep["examples"]["non_canonical"][:10]:
        lines.append(f"- `{ex['word']}` ×{ex['count']}: merged {ex['merged']} vs extra {ex['extra']}")
    lines += ["", "## Unreachable tokens", ""]
    lines += [f"- `{u['token']}` (extra uses it {u['uses_by_extra']}×)" for u in rep["examples"]["unreachable"][:10]]
    lines += ["", "## Conflicting merges", ""]
    lines += [f"- {c['merge']} -> `{c['token']}`; base builds it from {c['base_merge']}" for c in conflicting[:10]]
    return "\n".join(lines) + "\n"


def merge_tokenizers(cfg: TokenizerMergeConfig) -> dict[str, Any]:
    """Write the merged tokenizer and ``report.md``/``report.json`` to ``cfg.output``."""
    from bielik.tokenizer.formats import load_tokenizer

    docs = _sample_docs(cfg)  # fail on bad inputs before the expensive part
    base, extra = load_tokenizer(cfg.base).hf(), load_tokenizer(cfg.extra).hf()
    merged, info = merge_vocabularies(base, extra)
    log.info(
        "merged %s + %s: %d added tokens, %d added merges (%d conflicting)",
        cfg.base,
        cfg.extra,
        info["facts"]["added_tokens"],
        info["facts"]["added_merges"],
        info["facts"]["conflicting_merges"],
    )
    rep = ambiguity_report(base, extra, merged, info["added"], docs, cfg.examples)
    rep["examples"]["conflicting_merges"] = info["conflicting"][: cfg.examples]
    summary = {**info["facts"], **{k: v for k, v in rep.items() if k != "examples"}}
    with staged_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
        merged.save_pretrained(tmp)
        atomic_write_text(tmp / "report.md", _markdown(info["facts"], rep, info["conflicting"]))
        write_json(tmp / "report.json", {**summary, "examples": rep["examples"]})
        write_stage_record(tmp, "tokenizer.merge", cfg, metrics=summary)
    log.info(
        "non-canonical words: %d (%.1f%% of occurrences), unreachable tokens: %d/%d, round-trip failures: %d",
        rep["non_canonical_words"],
        100 * rep["non_canonical_share"],
        rep["unreachable_tokens"],
        rep["added_tokens_used_by_extra"],
        rep["roundtrip_failures"],
    )
    return {**summary, "output": cfg.output}
