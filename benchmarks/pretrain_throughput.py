"""Pretraining throughput: the bielik engine against ``transformers.Trainer`` (the named baseline).

Same tiny model (same initial weights), same packed data, sequence length, micro-batch, AdamW
(fused) and schedule. Runs are interleaved A B A B … because this machine's speed drifts up to 2×
from minute to minute; the result is the median of the per-pair ratios. Each side uses its best
settings for the device (``--precision``/``--compile`` apply to both; bf16 only pays off with native
bf16 matmuls: see ``bielik doctor``).

    .venv/bin/python benchmarks/pretrain_throughput.py [--pairs 3] [--steps 30] [--compile]

Prints tokens/s of both, the ratio (target ≥ 1.3) and bielik's MFU. Measured (vocab 32,000): 1.47 with
``--precision bf16-autocast --chunk 2048`` on an AVX-512-BF16 CPU (fp32 there: 1.18); 1.46 fp32 on an
AVX2 CPU. See the README for the table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bielik.data.pack import PackConfig, TokenShards, pack  # noqa: E402
from bielik.model.factory import ModelInitConfig, init_model  # noqa: E402
from bielik.model.loading import load_hf_model  # noqa: E402
from bielik.tokenizer.train import TokenizerTrainConfig, train_tokenizer  # noqa: E402
from bielik.train.batches import PackedRowBatches  # noqa: E402
from bielik.train.config import EngineConfig  # noqa: E402
from bielik.train.distributed import Dist  # noqa: E402
from bielik.train.engine import Engine  # noqa: E402
from bielik.train.metrics import cached_peak  # noqa: E402
from bielik.train.objectives import CausalLM  # noqa: E402


def prepare(work: Path, seq_len: int, vocab: int) -> tuple[Path, Path]:
    tok = work / "tok"
    train_tokenizer(TokenizerTrainConfig(output=str(tok), vocab_size=vocab, max_chars=3_000_000))
    data = work / "data"
    pack(
        PackConfig(
            tokenizer=str(tok), output=str(data), seq_len=seq_len, max_tokens=3_000_000, mix={"pl": 0.75, "en": 0.25}
        )
    )
    model = work / "init"
    init_model(ModelInitConfig(preset="tiny-llama", tokenizer=str(tok), output=str(model)))
    return model, data


def run_bielik(model_dir: Path, data: Path, args, out: Path) -> float:
    cfg = EngineConfig(
        steps=args.warmup + args.steps,
        micro_batch_size=args.batch,
        precision=args.precision,
        compile=args.compile,
        lm_head_chunk=args.chunk,
        optim={"lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 5},
        eval={"every": 0, "at_start": False},
        checkpoint={"every": 0, "save_final": False},
        logging={"every": 1000},
    )
    shards = TokenShards(data, "train")
    src = PackedRowBatches(shards, cfg.micro_batch_size, 1, seed=0)
    eng = Engine(cfg, load_hf_model(model_dir), CausalLM(cfg.lm_head_chunk), src, out, Dist(), seq_len=shards.seq_len)
    for _ in range(args.warmup):
        eng.train_step()
    t = time.perf_counter()
    for _ in range(args.steps):
        eng.train_step()
    return args.steps * src.tokens_per_step / (time.perf_counter() - t), eng.flops_per_token


def run_trainer(model_dir: Path, data: Path, args, out: Path) -> float:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    shards = TokenShards(data, "train")

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(shards)

        def __getitem__(self, i):
            ids = torch.from_numpy(shards.rows([i])[0])
            return {"input_ids": ids, "labels": ids}

    class Clock(TrainerCallback):
        t0 = None

        def on_step_end(self, a, state, control, **kw):
            if state.global_step == args.warmup:
                Clock.t0 = time.perf_counter()

    targs = TrainingArguments(
        output_dir=str(out),
        max_steps=args.warmup + args.steps,
        per_device_train_batch_size=args.batch,
        learning_rate=1e-3,
        lr_scheduler_type="cosine",
        warmup_steps=5,
        weight_decay=0.1,
        adam_beta2=0.95,
        max_grad_norm=1.0,
        optim="adamw_torch_fused",
        use_cpu=not torch.cuda.is_available(),
        bf16=args.precision != "fp32",
        torch_compile=args.compile,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=0,
    )
    model = load_hf_model(model_dir)
    if args.precision == "bf16":
        model = model.to(torch.bfloat16)
    trainer = Trainer(model=model, args=targs, train_dataset=Rows(), callbacks=[Clock()])
    trainer.train()
    return args.steps * args.batch * shards.seq_len / (time.perf_counter() - Clock.t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--steps", type=int, default=30, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per run")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--chunk", type=int, default=1024, help="bielik lm_head_chunk")
    p.add_argument(
        "--vocab", type=int, default=32000, help="tokenizer size (Bielik models use 32k; 8192 also reported)"
    )
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16-autocast", "bf16"])
    p.add_argument("--compile", action="store_true")
    p.add_argument("--work", type=Path, default=None, help="reuse a prepared directory")
    args = p.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="bielik-bench-"))
    if (work / "init" / "config.json").is_file():
        model_dir, data = work / "init", work / "data"
    else:
        model_dir, data = prepare(work, args.seq_len, args.vocab)
    rows = []
    for i in range(args.pairs):
        b, fpt = run_bielik(model_dir, data, args, work / f"bielik-{i}")
        h = run_trainer(model_dir, data, args, work / f"trainer-{i}")
        rows.append((b, h))
        print(
            f"pair {i + 1}: bielik {b:,.0f} tok/s   transformers.Trainer {h:,.0f} tok/s   ratio {b / h:.2f}", flush=True
        )
    ratio = statistics.median(b / h for b, h in rows)
    b_med = statistics.median(b for b, _ in rows)
    h_med = statistics.median(h for _, h in rows)
    dtype = torch.float32 if args.precision == "fp32" else torch.bfloat16
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    peak = cached_peak(dev, dtype)
    mfu = f"{100 * b_med * fpt / peak:.1f}% of {peak / 1e9:,.0f} GFLOP/s" if peak else "n/a (run `bielik bench peak`)"
    print(
        f"\nsettings: tiny-llama (vocab {TokenShards(data, 'train').vocab_size}), "
        f"seq {TokenShards(data, 'train').seq_len}, batch {args.batch}, "
        f"precision {args.precision}, compile {args.compile}, {torch.get_num_threads()} threads"
    )
    print(f"bielik engine          {b_med:,.0f} tok/s (median)")
    print(f"transformers.Trainer   {h_med:,.0f} tok/s (median)")
    print(f"ratio (median of pairs) {ratio:.2f}   target >= 1.3")
    print(f"bielik MFU             {mfu}")


if __name__ == "__main__":
    from bielik.runtime import configure_process

    configure_process()  # logging (the entry point's job, not an import's)
    main()
