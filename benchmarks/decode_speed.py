"""Decode speed of a Minitron-pruned student against its teacher (the report: 1.49x at -33% parameters).

Teacher: a random-init Llama shaped like a small Bielik (hidden 1,024, FFN 2,816, 12 layers, 16/4
heads, tied 4k vocabulary: 139M parameters, the embedding 3% of them as in the 11B); student: the
report's kind of cut, depth by Block Influence + FFN width (9 layers, FFN 2,304: -34%). Speed does
not depend on the weights' values, so no training is needed. Single stream, greedy, 128 prompt
tokens, 64 new tokens; teacher and student are timed alternately for ``--pairs`` rounds (this
machine's speed drifts) through ``bench speed``'s timers: the HF decode loop
(:func:`bielik.quant.speed.time_hf`, fp32 and bf16 weights) and, with ``--gguf``, llama.cpp's
``llama-bench`` on f16 GGUF exports (builds llama.cpp on first use: minutes). The speed ratio is the
median over rounds of TPOT_teacher / TPOT_student, printed next to the parameter ratio.

    flock /tmp/bielik-heavy.lock .venv/bin/python benchmarks/decode_speed.py [--pairs 5] [--gguf [--no-hf]]

Measured (2 threads, 5 rounds): decode speed-up 1.47x (HF fp32), 1.52x (HF bf16), 1.53x (llama.cpp
f16) at -34.4% parameters; the report: 1.49x at -33%.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bielik.compress.importance import ImportanceConfig, importance  # noqa: E402
from bielik.compress.prune import PruneConfig, prune  # noqa: E402
from bielik.model.factory import ModelInitConfig, ParamCount, init_model  # noqa: E402
from bielik.model.loading import load_hf_model  # noqa: E402
from bielik.quant.speed import SpeedConfig, time_gguf, time_hf  # noqa: E402
from bielik.tokenizer.train import TokenizerTrainConfig, train_tokenizer  # noqa: E402

TEACHER = dict(
    hidden_size=1024,
    intermediate_size=2816,
    num_hidden_layers=12,
    num_attention_heads=16,
    num_key_value_heads=4,
    tie_word_embeddings=True,
)


def build(work: Path) -> tuple[Path, Path]:
    tok, teacher, student = work / "tok", work / "teacher", work / "student"
    if not tok.exists():
        train_tokenizer(TokenizerTrainConfig(output=str(tok), vocab_size=4096, max_chars=1_000_000))
    if not teacher.exists():
        init_model(ModelInitConfig(preset="tiny-llama", tokenizer=str(tok), output=str(teacher), overrides=TEACHER))
    if not student.exists():
        importance(
            ImportanceConfig(
                model=str(teacher), output=str(work / "imp"), samples=8, ctx=64, text={"chars": 20_000}, overwrite=True
            )
        )
        prune(
            PruneConfig(
                model=str(teacher), importance=str(work / "imp"), output=str(student), layers=9, intermediate_size=2304
            )
        )
    return teacher, student


def gguf(model: Path, out: Path) -> Path:
    from bielik.quant.export import ExportConfig, export

    return export(ExportConfig(model=str(model), output=str(out))) if not out.exists() else next(out.glob("*.gguf"))


def rounds(timer, a, b, pairs: int) -> tuple[list[dict], list[dict]]:
    ra, rb = [], []
    for _ in range(pairs):
        ra.append(timer(a))
        rb.append(timer(b))
    return ra, rb


def report(label: str, ra: list[dict], rb: list[dict], param_ratio: float) -> None:
    med = lambda rows, k: statistics.median(r[k]["median"] for r in rows)  # noqa: E731
    speed = statistics.median(x["tpot_ms"]["median"] / y["tpot_ms"]["median"] for x, y in zip(ra, rb))
    ttft = statistics.median(x["ttft_ms"]["median"] / y["ttft_ms"]["median"] for x, y in zip(ra, rb))
    for name, rows in (("teacher", ra), ("student", rb)):
        print(
            f"| {label} | {name} | {med(rows, 'output_tok_s'):.1f} | {med(rows, 'ttft_ms'):.1f} | "
            f"{med(rows, 'tpot_ms'):.2f} |"
        )
    print(
        f"| {label} | **speed-up** | **{speed:.2f}x** decode | {ttft:.2f}x | "
        f"params x{param_ratio:.3f} ({100 * (param_ratio - 1):+.1f}%) |"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="runs/bench-decode")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--gguf", action="store_true", help="also time f16 GGUF exports with llama-bench")
    ap.add_argument("--no-hf", action="store_true", help="skip the HF timings (with --gguf: llama.cpp only)")
    args = ap.parse_args()
    work = Path(args.work)
    teacher, student = build(work)
    n_t, n_s = (ParamCount.of(load_hf_model(p)).total for p in (teacher, student))
    cfg = SpeedConfig(models=[str(teacher)], runs=3, warmup=1, prompt_tokens=128, new_tokens=64, threads=2)
    results = {}
    for dtype in () if args.no_hf else ("float32", "bfloat16"):
        results[f"HF {dtype}"] = rounds(lambda p, d=dtype: time_hf(p, d, cfg), teacher, student, args.pairs)
    if args.gguf:
        gt, gs = gguf(teacher, work / "gguf-teacher"), gguf(student, work / "gguf-student")
        results["llama.cpp f16"] = rounds(lambda p: time_gguf(p, cfg), gt, gs, args.pairs)
    print(
        f"\nteacher {n_t:,} parameters, student {n_s:,}; single stream, 128 prompt + 64 new tokens; "
        f"{args.pairs} interleaved rounds\n"
    )
    print("| engine | model | output tok/s | TTFT ms | TPOT ms |")
    print("|---|---|---:|---:|---:|")
    for label, (ra, rb) in results.items():
        report(label, ra, rb, n_s / n_t)


if __name__ == "__main__":
    from bielik.runtime import configure_process

    configure_process()  # logging (the entry point's job, not an import's)
    main()
