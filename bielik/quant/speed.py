"""``bielik bench speed``: single-stream inference speed of HF checkpoints and GGUF files (RECIPE.md §9.4).

Definitions (one request, batch 1, greedy):

* time to first token (TTFT) = time to process the prompt and produce the first output token;
* prompt tokens/s = prompt tokens / TTFT;
* time per output token (TPOT) = decode time of the remaining tokens / their number;
* output tokens/s = 1 / TPOT.

HF models (fp32 and/or bf16 weights) are timed here through :func:`bielik.model.generation.sample`,
the decode loop ``generate``, eval and GRPO use (a prefill forward, then one forward per token with
a KV cache; no ``generate()`` overheads); TTFT and TPOT are its own timing hooks. GGUF files are timed by
llama.cpp's own ``llama-bench``: a ``pp<prompt>`` test (prefill) and a ``tg<new>`` test (decode);
TTFT is the prefill time and TPOT the decode time per token. Every configuration runs ``runs``
times after ``warmup`` runs; we report the median and the spread (min-max) — the machine's speed
drifts, so compare A and B from the same invocation.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Literal

from pydantic import Field

from bielik.artifacts import staged_dir, write_json, write_stage_record
from bielik.config import StageConfig
from bielik.errors import BielikError
from bielik.log import get_logger
from bielik.progress import progress
from bielik.runtime import threads

log = get_logger(__name__)


class SpeedConfig(StageConfig):
    models: list[str] = Field(..., min_length=1, description="HF model directories and/or GGUF files")
    output: str | None = Field(None, description="write speed.json/speed.md and the stage record here")
    hf_dtypes: list[Literal["float32", "bfloat16"]] = Field(default_factory=lambda: ["float32", "bfloat16"])
    prompt_tokens: int = Field(128, ge=1)
    new_tokens: int = Field(64, ge=2)
    runs: int = Field(5, ge=1)
    warmup: int = Field(1, ge=0)
    threads: int = Field(0, ge=0, description="0: OMP_NUM_THREADS or all cores")
    overwrite: bool = False


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _summary(ttft: list[float], tpot: list[float], prompt_tokens: int) -> dict:
    return {
        "ttft_ms": _spread([1e3 * t for t in ttft]),
        "tpot_ms": _spread([1e3 * t for t in tpot]),
        "output_tok_s": _spread([1 / t for t in tpot]),
        "prompt_tok_s": _spread([prompt_tokens / t for t in ttft]),
    }


def _prompt_ids(model_dir: Path, n: int, vocab_size: int):
    """``n`` token ids of held-out Polish text (the model's tokenizer), or seeded random ids without one."""
    import torch

    if (model_dir / "tokenizer.json").is_file() or (model_dir / "tokenizer.model").is_file():
        from bielik.quant.calibration import TextConfig, select_text
        from bielik.tokenizer.formats import load_hf_tokenizer

        tok = load_hf_tokenizer(model_dir)
        text, _ = select_text(TextConfig(mix={"pl": 1.0}, chars=max(4 * n * 8, 1000)), heldout=True)
        ids = tok(text, return_tensors="pt").input_ids[:, :n]
        if ids.shape[1] == n:
            return ids
    return torch.randint(0, vocab_size, (1, n), generator=torch.Generator().manual_seed(0))


def time_hf(model_dir: Path, dtype: str, cfg: SpeedConfig) -> dict:
    """TTFT and TPOT of one greedy request through :func:`bielik.model.generation.sample` (the decode loop of
    ``generate``, eval and GRPO). No stop tokens: every run decodes exactly ``new_tokens`` tokens."""
    with threads(cfg.threads):  # restores the caller's thread count
        return _time_hf(model_dir, dtype, cfg)


def _time_hf(model_dir: Path, dtype: str, cfg: SpeedConfig) -> dict:
    import torch

    from bielik.model.generation import DecodeTimings, HFForward, SamplingParams, sample
    from bielik.model.loading import load_hf_model

    model = load_hf_model(model_dir).to(getattr(torch, dtype)).eval()
    ids = _prompt_ids(model_dir, cfg.prompt_tokens, model.config.vocab_size)
    forward, params = HFForward(model), SamplingParams(max_new_tokens=cfg.new_tokens)
    ttft, tpot = [], []
    for i in range(cfg.warmup + cfg.runs):
        timings = DecodeTimings()
        sample(forward, [ids[0].tolist()], params, timings=timings)
        if i >= cfg.warmup:
            ttft.append(timings.first_token)
            tpot.append(timings.per_token)
    return {
        "model": str(model_dir),
        "engine": "transformers",
        "dtype": dtype,
        **_summary(ttft, tpot, ids.shape[1]),
        "prompt_tokens": int(ids.shape[1]),
        "new_tokens": cfg.new_tokens,
        "runs": cfg.runs,
    }


def time_gguf(path: Path, cfg: SpeedConfig) -> dict:
    from bielik.quant.gguf_file import read_gguf
    from bielik.quant.toolchain import default_threads, run_tool

    info = read_gguf(path)
    args = [
        "-m",
        str(path),
        "-p",
        str(cfg.prompt_tokens),
        "-n",
        str(cfg.new_tokens - 1),
        "-r",
        str(cfg.runs),
        "-t",
        str(cfg.threads or default_threads()),
        "-o",
        "json",
    ]
    if cfg.warmup == 0:
        args.append("--no-warmup")
    output = run_tool("llama-bench", args, f"benchmarking {path}")
    start = output.find("[")
    try:
        tests = json.loads(output[start : output.rindex("]") + 1])
    except (ValueError, json.JSONDecodeError):
        raise BielikError(
            f"llama-bench printed no JSON results for {path}:\n" + "\n".join(output.splitlines()[-8:])
        ) from None
    pp = next(t for t in tests if t["n_prompt"] > 0 and t["n_gen"] == 0)
    tg = next(t for t in tests if t["n_gen"] > 0 and t["n_prompt"] == 0)
    ttft = [ns / 1e9 for ns in pp["samples_ns"]]
    tpot = [ns / 1e9 / tg["n_gen"] for ns in tg["samples_ns"]]
    return {
        "model": str(path),
        "engine": "llama.cpp",
        "dtype": info.type_name,
        **_summary(ttft, tpot, cfg.prompt_tokens),
        "prompt_tokens": cfg.prompt_tokens,
        "new_tokens": cfg.new_tokens,
        "runs": cfg.runs,
        "gib": info.gib,
        "bits_per_weight": info.bits_per_weight,
    }


def bench_speed(cfg: SpeedConfig) -> list[dict]:
    """Time every model (HF: once per dtype); write ``speed.json``/``speed.md`` when ``output`` is set."""
    jobs: list[tuple[Path, str | None]] = []
    for raw in cfg.models:
        p = Path(raw)
        if p.is_file() and p.suffix == ".gguf":
            jobs.append((p, None))
        elif p.is_dir() and (p / "config.json").is_file():
            jobs.extend((p, d) for d in cfg.hf_dtypes)
        elif p.is_dir() and len(list(p.glob("*.gguf"))) >= 1:
            jobs.extend((g, None) for g in sorted(p.glob("*.gguf")))
        else:
            raise BielikError(
                f"models: {p} is neither a GGUF file nor an HF model directory (config.json) nor a folder of GGUF files"
            )
    rows = []
    with progress("bench speed", len(jobs), "configs", every=1) as bar:
        for path, dtype in jobs:
            row = time_hf(path, dtype, cfg) if dtype else time_gguf(path, cfg)
            rows.append(row)
            bar.advance(1, info=f"{path.name} {row['dtype']}: {row['output_tok_s']['median']:.1f} tok/s")
    if cfg.output:
        with staged_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
            write_json(tmp / "speed.json", rows)
            (tmp / "speed.md").write_text(markdown_table(rows), encoding="utf-8")
            write_stage_record(
                tmp,
                "bench.speed",
                cfg,
                inputs={f"model{i}": p for i, (p, _) in enumerate(jobs)},
                metrics={"rows": rows},
            )
    return rows


def markdown_table(rows: list[dict]) -> str:
    """``speed.md``: the report's table of this stage (:func:`bielik.report.tables.speed`), as Markdown."""
    from bielik.report.render import table_markdown
    from bielik.report.tables import speed as speed_tables

    return "".join(table_markdown(t) for t in speed_tables(rows))
