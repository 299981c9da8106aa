"""Initial Polish loss after a tokenizer swap: FOCUS vs mean vs random initialisation (RECIPE §2.3).

The experiment behind ``bielik model swap-tokenizer``'s claim, end to end on the shipped corpus:

1. source model: a small Llama with an English-centric tokenizer (by default a byte-level BPE
   trained on the shipped English text, ``en-bpe:4096``; ``--source-tokenizer mistral-v0.1`` uses
   Mistral's real 32k vocabulary at ~8x the LM-head cost), pretrained on the shipped
   Polish+English corpus with the bielik engine;
2. target tokenizer: a Polish SentencePiece-style BPE trained with ``bielik tokenizer train``;
3. the source model gets the target tokenizer three times, with ``init`` = focus, mean, random
   (shared tokens are copied in all three);
4. each is evaluated, before any training, on held-out Polish text: the news documents of
   ``pl_ntrex_news.jsonl.gz``, which are excluded from every training step above.

Loss is reported in nats per target token (all three share the target tokenizer, so they compare
directly) and bits per character (comparable with the source model under its own tokenizer).

    OMP_NUM_THREADS=1 BIELIK_NO_BAR=1 .venv/bin/python benchmarks/swap_init_loss.py \\
        [--steps 600] [--out runs/bench-swap]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HELDOUT = "pl_ntrex_news.jsonl.gz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--source-tokenizer",
        default="en-bpe:4096",
        help="en-bpe:N (English byte-level BPE) or any tokenizer bielik reads",
    )
    ap.add_argument("--target-vocab", type=int, default=8192)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--fasttext-chars", type=int, default=6_000_000)
    ap.add_argument("--eval-tokens", type=int, default=40_000)
    ap.add_argument("--out", default="runs/bench-swap")
    args = ap.parse_args()

    from bielik.config import validate
    from bielik.data.corpus import shipped_corpus_dir
    from bielik.data.pack import PackConfig, pack
    from bielik.model.factory import ModelInitConfig, init_model
    from bielik.model.loading import load_hf_model
    from bielik.model.swap import SwapTokenizerConfig, heldout_loss, swap_tokenizer
    from bielik.tokenizer.formats import load_tokenizer
    from bielik.tokenizer.train import TokenizerTrainConfig, train_tokenizer
    from bielik.train.config import EngineConfig
    from bielik.train.pretrain import PretrainConfig, pretrain

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    corpus = shipped_corpus_dir()
    train_files = [str(f) for f in sorted(corpus.glob("*.jsonl.gz")) if f.name != HELDOUT]
    heldout = [str(corpus / HELDOUT)]
    timings: dict[str, float] = {}

    def timed(name, fn):
        t = time.perf_counter()
        res = fn()
        timings[name] = round(time.perf_counter() - t, 1)
        print(f"[{name}] {timings[name]} s", flush=True)
        return res

    src_tok = out / "source-tokenizer"
    if not src_tok.exists():
        if args.source_tokenizer.startswith("en-bpe:"):
            timed(
                "source tokenizer",
                lambda: train_tokenizer(
                    TokenizerTrainConfig(
                        inputs=train_files,
                        output=str(src_tok),
                        vocab_size=int(args.source_tokenizer.split(":")[1]),
                        langs=["en"],
                        max_chars=None,
                    )
                ),
            )
        else:
            load_tokenizer(args.source_tokenizer).hf().save_pretrained(src_tok)
    if not (out / "data").exists():
        timed(
            "pack",
            lambda: pack(
                PackConfig(
                    inputs=train_files,
                    tokenizer=str(src_tok),
                    output=str(out / "data"),
                    seq_len=args.seq_len,
                    val_fraction=0.01,
                )
            ),
        )
    if not (out / "init").exists():
        init_model(
            ModelInitConfig(
                preset="tiny-llama",
                tokenizer=str(src_tok),
                output=str(out / "init"),
                overrides={
                    "hidden_size": args.hidden,
                    "intermediate_size": 3 * args.hidden,
                    "num_hidden_layers": args.layers,
                    "num_attention_heads": max(2, args.hidden // 32),
                    "num_key_value_heads": max(1, args.hidden // 64),
                },
            )
        )
    engine = validate(
        EngineConfig,
        {
            "steps": args.steps,
            "micro_batch_size": args.batch,
            "lm_head_chunk": 512,
            "optim": {"lr": args.lr, "min_lr": args.lr / 10, "warmup_steps": max(1, args.steps // 20)},
            "eval": {"every": 0, "batches": 8},
            "logging": {"every": 50},
            "checkpoint": {"every": 0, "save_final": True},
        },
    )
    source = out / "source"
    if not (source / "final").exists():
        timed(
            "pretrain",
            lambda: pretrain(
                PretrainConfig(model=str(out / "init"), data=str(out / "data"), output=str(source), train=engine)
            ),
        )
    tgt_tok = out / "target-tokenizer"
    if not tgt_tok.exists():
        timed(
            "target tokenizer",
            lambda: train_tokenizer(
                TokenizerTrainConfig(
                    inputs=train_files,
                    output=str(tgt_tok),
                    style="sentencepiece",
                    vocab_size=args.target_vocab,
                    langs=["pl"],
                    max_chars=None,
                )
            ),
        )

    from bielik.tokenizer.formats import load_hf_tokenizer

    ref = heldout_loss(
        load_hf_model(source / "final"),
        load_hf_tokenizer(source / "final"),
        heldout,
        ["pl"],
        args.eval_tokens,
        args.seq_len,
    )
    results = {"source (own tokenizer)": ref}
    for init in ("focus", "mean", "random"):
        s = timed(
            f"swap {init}",
            lambda init=init: swap_tokenizer(
                SwapTokenizerConfig(
                    model=str(source / "final"),
                    tokenizer=str(tgt_tok),
                    output=str(out / f"swap-{init}"),
                    init=init,
                    corpus=train_files,
                    max_chars=args.fasttext_chars,
                    eval_inputs=heldout,
                    eval_max_tokens=args.eval_tokens,
                    eval_seq_len=args.seq_len,
                    overwrite=True,
                )
            ),
        )
        results[init] = {**s["eval"], "shared": s["shared"], "new": s["new"], "new_random": s["new_random"]}
    print("\n| model | loss (nats/token) | bits/char | held-out tokens |\n|---|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['loss']:.4f} | {r['bits_per_char']:.4f} | {r['tokens']} |")
    (out / "results.json").write_text(
        json.dumps({"args": vars(args), "results": results, "timings_s": timings}, indent=2)
    )
    ok = results["focus"]["loss"] < results["mean"]["loss"] < results["random"]["loss"]
    print(f"\nFOCUS < mean < random: {ok}")


if __name__ == "__main__":
    from bielik.runtime import configure_process

    configure_process()  # logging (the entry point's job, not an import's)
    main()
