"""Multiple-choice scoring throughput: bielik's scorer against lm-eval's ``hf`` back end (the named baseline).

Same model (the ``tiny-llama`` preset: hidden 256, 4 layers, 8k vocabulary, untrained), same
requests: the leaderboard's multiple-choice tasks whose data is here (PolEmo 2.0 in/out, shipped; with
``../shared`` also 8TAGS, PPC and KLEJ-NER), ``--docs`` documents each, prompts built by bielik and
handed to both scorers as (context, " " + choice) pairs — prompt parity itself is what
``tests/eval/test_parity.py`` checks. lm-eval runs ``HFLM.loglikelihood`` with its best settings
(fixed batch size, its one-token-continuation logits cache); bielik runs ``EvalLM.loglikelihood``.

Runs are interleaved A B A B … (this machine's speed drifts up to 2× from minute to minute); the result
is the median of the per-pair ratios. Every pair also checks that both pick the same answer for every
document (arg-max of the log-likelihoods; lm-eval's acc prediction).

    .venv/bin/python benchmarks/eval_speed.py [--pairs 5] [--docs 100] [--shots 0] [--threads 2]

Measured here (tiny-llama 7.3M, fp32, CPU shared with other jobs, identical predictions in every pair):
0-shot, 300 documents, 1 thread: median 6.06x (5 pairs, 4.6-8.5); 2 threads: 6.55x (3 pairs);
5-shot, 150 documents, 1 thread: 6.73x (3 pairs, 4.2-7.9).
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

from bielik.eval.data import search_dirs  # noqa: E402
from bielik.eval.harness import prepare_task  # noqa: E402
from bielik.eval.lm import EvalLM  # noqa: E402
from bielik.eval.tasks import get_task  # noqa: E402
from bielik.model.factory import ModelInitConfig, init_model  # noqa: E402
from bielik.tokenizer.train import TokenizerTrainConfig, train_tokenizer  # noqa: E402

TASKS = ["polemo2_in_multiple_choice", "polemo2_out_multiple_choice", "polish_8tags_multiple_choice", "polish_ppc_multiple_choice",
         "polish_klej_ner_multiple_choice"]


def build_model(work: Path) -> Path:
    tok = work / "tok"
    train_tokenizer(TokenizerTrainConfig(output=str(tok), vocab_size=8192, max_chars=3_000_000))
    model = work / "model"
    init_model(ModelInitConfig(preset="tiny-llama", tokenizer=str(tok), output=str(model)))
    return model


def requests(args) -> list[tuple[str, str, list[str]]]:
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "eval"
    dirs = search_dirs([str(shared)] if shared.is_dir() else [])
    out = []
    for name in TASKS:
        spec = get_task(name)
        try:
            task = prepare_task(spec, args.shots, dirs, limit=args.docs, split_fallback=["validation"])
        except Exception as exc:  # data not here: measure the others
            print(f"skip {name}: {str(exc)[:80]}")
            continue
        out += [(name, ctx, [" " + c for c in task.prompter.choices(d)]) for d, ctx in zip(task.docs, task.contexts)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--docs", type=int, default=100, help="documents per task")
    ap.add_argument("--shots", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lm-eval-batch", type=int, default=32)
    ap.add_argument("--batch-tokens", type=int, default=16384)
    ap.add_argument("--model", type=Path, default=None, help="an HF model directory (default: build the tiny-llama preset)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or build_model(Path(tmp))
        reqs = requests(args)
        n_docs = len(reqs)
        n_pairs = sum(len(c) for _, _, c in reqs)
        print(f"{n_docs} documents, {n_pairs} (context, choice) pairs, {args.shots}-shot, tasks: {sorted({r[0] for r in reqs})}")

        ours = EvalLM.from_pretrained(model_dir, device="cpu", batch_tokens=args.batch_tokens)
        theirs = HFLM(pretrained=str(model_dir), dtype="float32", device="cpu", batch_size=args.lm_eval_batch)
        instances = [Instance(request_type="loglikelihood", doc={}, arguments=(ctx, c), idx=j, metadata=(name, i, 0))
                     for i, (name, ctx, choices) in enumerate(reqs) for j, c in enumerate(choices)]

        def run_ours():
            res = ours.loglikelihood([ours.encode_choices(ctx, choices) for _, ctx, choices in reqs])
            return [[r[0] for r in doc] for doc in res]

        def run_theirs():
            res = theirs.loglikelihood(instances, disable_tqdm=True)
            per, k = [], 0
            for _, _, choices in reqs:
                per.append([r[0] for r in res[k : k + len(choices)]])
                k += len(choices)
            return per

        def argmax(xs):
            return max(range(len(xs)), key=xs.__getitem__)

        run_ours(), run_theirs()  # warm-up (allocator, first-call overheads)
        ratios = []
        for p in range(args.pairs):
            t0 = time.perf_counter()
            a = run_theirs()
            t1 = time.perf_counter()
            b = run_ours()
            t2 = time.perf_counter()
            same = sum(argmax(x) == argmax(y) for x, y in zip(a, b))
            max_diff = max(abs(u - v) for x, y in zip(a, b) for u, v in zip(x, y))
            ratios.append((t1 - t0) / (t2 - t1))
            print(f"pair {p + 1}: lm-eval {n_docs / (t1 - t0):8.1f} docs/s | bielik {n_docs / (t2 - t1):8.1f} docs/s | "
                  f"ratio {ratios[-1]:.2f} | same prediction {same}/{n_docs} | max |Δ log-lik| {max_diff:.2e}")
            if same != n_docs:
                raise SystemExit("predictions differ")
        print(f"median speed-up over lm-eval's hf back end: {statistics.median(ratios):.2f}x (target >= 2)")


if __name__ == "__main__":
    main()
