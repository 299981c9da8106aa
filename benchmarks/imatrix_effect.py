"""Does an importance matrix make every GGUF quantisation better? (RECIPE.md §8; Bielik 7B v0.1 report, Table 8)

A tiny Llama whose hidden and FFN sizes K-quants accept (256 / 768) is trained briefly with the
bielik engine on the shipped corpus *minus* the held-out documents, exported to GGUF f32 (the
reference), calibrated with an imatrix on Polish-English calibration text, quantised to Q8_0, Q6_K,
Q5_K_M, Q4_K_M, Q3_K_M, Q2_K with and without the imatrix (plus IQ2_XXS, which needs one), and
compared on held-out Polish text the model and the imatrix never saw. The report's finding to check:
with the imatrix, mean KLD is never worse and clearly lower at Q2_K and Q3_K_M.

    .venv/bin/python benchmarks/imatrix_effect.py [--steps 300] [--work runs/imatrix-effect]

Prints the full comparison table and, per type, the KLD ratio imatrix / plain (with the standard
error of each mean). Takes ~10-20 min on 2 idle cores (48 min on the busy shared machine), most of it
training. Whatever comes out is reported.

Measured here (2026-11-25; 5.25M-parameter Llama, 4 layers, vocab 4096, 300 steps, held-out PPL 379;
imatrix on 200k characters PL/EN 50/50, 69,888 tokens; 25,146 scored held-out Polish tokens):
mean KLD with / without imatrix = Q8_0 1.000, Q6_K 0.991, Q5_K_M 0.972, Q4_K_M 0.989, Q3_K_M 1.142,
Q2_K 1.065 — the report's finding does NOT reproduce on this barely trained tiny model: the
imatrix is neutral to slightly better at 4-6 bits and worse at 2-3 bits (a Polish-only calibration
set gave Q3_K_M 1.104, Q2_K 1.045: still worse).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bielik.data.corpus import read_corpus  # noqa: E402
from bielik.data.pack import PackConfig, pack  # noqa: E402
from bielik.model.factory import ModelInitConfig, init_model  # noqa: E402
from bielik.quant.calibration import is_heldout  # noqa: E402
from bielik.quant.compare import CompareConfig, compare, markdown_table  # noqa: E402
from bielik.quant.export import ExportConfig, export  # noqa: E402
from bielik.quant.imatrix import ImatrixConfig, compute_imatrix  # noqa: E402
from bielik.quant.quantize import DEFAULT_TYPES, QuantizeConfig, quantize  # noqa: E402
from bielik.quant.toolchain import build_tools  # noqa: E402
from bielik.tokenizer.train import TokenizerTrainConfig, train_tokenizer  # noqa: E402
from bielik.train.config import EngineConfig  # noqa: E402
from bielik.train.pretrain import PretrainConfig, pretrain  # noqa: E402


def train_corpus(work: Path) -> Path:
    """The shipped corpus without the held-out documents (those are the comparison text)."""
    out = work / "corpus" / "train.jsonl.gz"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(out, "wt", encoding="utf-8") as fh:
            for d in read_corpus(["shipped"]):
                if not is_heldout(d):
                    fh.write(
                        json.dumps({"id": d.id, "text": d.text, "lang": d.lang, "source": d.source}, ensure_ascii=False)
                        + "\n"
                    )
    return out.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("runs/imatrix-effect"))
    ap.add_argument("--steps", type=int, default=300, help="pretraining steps (batch 8 x 256 tokens)")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--calib-chars", type=int, default=200_000)
    ap.add_argument("--heldout-chars", type=int, default=150_000)
    ap.add_argument("--ctx", type=int, default=256)
    args = ap.parse_args()
    w = args.work
    t0 = time.perf_counter()
    build_tools()
    corpus = str(train_corpus(w))
    if not (w / "tok").exists():
        train_tokenizer(
            TokenizerTrainConfig(inputs=[corpus], output=str(w / "tok"), vocab_size=args.vocab, max_chars=4_000_000)
        )
    if not (w / "data").exists():
        pack(
            PackConfig(
                inputs=[corpus],
                tokenizer=str(w / "tok"),
                output=str(w / "data"),
                seq_len=256,
                mix={"pl": 0.75, "en": 0.25},
                val_fraction=0.02,
            )
        )
    if not (w / "init").exists():
        init_model(
            ModelInitConfig(
                preset="tiny-llama",
                tokenizer=str(w / "tok"),
                output=str(w / "init"),
                overrides={"num_hidden_layers": args.layers},
            )
        )
    if not (w / "pretrain" / "final").exists():
        engine = EngineConfig.model_validate(
            {
                "steps": args.steps,
                "micro_batch_size": 8,
                "precision": "fp32",
                "lm_head_chunk": 1024,
                "optim": {"lr": 2e-3, "min_lr": 2e-4, "warmup_steps": 20, "weight_decay": 0.1},
                "eval": {"every": 0, "batches": 8},
                "checkpoint": {"every": 0},
                "logging": {"every": 50},
            }
        )
        summary = pretrain(
            PretrainConfig(model=str(w / "init"), data=str(w / "data"), output=str(w / "pretrain"), train=engine)
        )
        print("pretraining:", {k: v for k, v in summary.items() if "loss" in k or "ppl" in k})
    t_train = time.perf_counter() - t0
    ref = export(
        ExportConfig(model=str(w / "pretrain" / "final"), output=str(w / "gguf"), outtype="f32", overwrite=True)
    )
    imat = compute_imatrix(
        ImatrixConfig(
            model=str(ref),
            output=str(w / "imatrix"),
            ctx=args.ctx,
            text={"chars": args.calib_chars, "mix": {"pl": 0.5, "en": 0.5}},
            overwrite=True,
        )
    )
    quantize(
        QuantizeConfig(
            model=str(ref),
            output=str(w / "quantized"),
            types=[*DEFAULT_TYPES, "IQ2_XXS"],
            imatrix=str(imat),
            overwrite=True,
        )
    )
    result = compare(
        CompareConfig(
            reference=str(ref),
            models=[str(w / "quantized")],
            output=str(w / "compare"),
            ctx=args.ctx,
            text={"chars": args.heldout_chars, "mix": {"pl": 1.0}},
            overwrite=True,
        )
    )
    print()
    print(markdown_table(result))
    rows = {(r["type"], r["imatrix"]): r for r in result["rows"]}
    print("| type | mean KLD without | mean KLD with imatrix | with / without | never worse? |")
    print("|---|---:|---:|---:|---|")
    for t in DEFAULT_TYPES:
        a, b = rows[(t, False)], rows[(t, True)]
        se = math.hypot(a["kld_stderr"], b["kld_stderr"])
        verdict = (
            "yes"
            if b["kld_mean"] <= a["kld_mean"]
            else ("within noise" if b["kld_mean"] - a["kld_mean"] < 2 * se else "NO")
        )
        print(
            f"| {t} | {a['kld_mean']:.5f} ± {a['kld_stderr']:.5f} | {b['kld_mean']:.5f} ± {b['kld_stderr']:.5f} | "
            f"{b['kld_mean'] / a['kld_mean']:.3f} | {verdict} |"
        )
    print(
        f"\ntraining {t_train / 60:.1f} min, total {(time.perf_counter() - t0) / 60:.1f} min; "
        f"artifacts in {w}/compare (compare.md, compare.json, kld_vs_bpw.png)"
    )


if __name__ == "__main__":
    from bielik.runtime import configure_process

    configure_process()  # logging (the entry point's job, not an import's)
    main()
