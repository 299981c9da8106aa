"""``bielik eval mt-bench``: Polish MT-Bench (Zheng et al. 2023, arXiv:2306.05685; SpeakLeash's Polish version).

1. **Answers**: the model under test answers every two-turn question through its chat template
   (greedy, ``max_new_tokens`` per turn; the second turn sees the first question and answer). Answers
   are written in FastChat's ``model_answer`` format and cached, so a resumed run does not regenerate.
   An existing answer file can be judged instead (``answers=...``).
2. **Judging** (single-answer grading): each turn is rated 1-10 by a judge behind an OpenAI-compatible
   endpoint (:mod:`bielik.eval.judge`); turn 1 with ``single-v1``, turn 2 with
   ``single-v1-multi-turn``; math, reasoning and coding questions with the ``-math-`` prompts, which
   show the reference answers. Judge prompts are FastChat ``judge_prompts.jsonl`` records (shipped in
   Polish; any file in that format works).
3. **Scores**: ``score`` = the mean rating over all rated turns (FastChat's MT-Bench score), per turn
   and per category; ``responses_pl`` = the share of answers identified as Polish
   (:func:`bielik.data.langid.detect`, py3langid); ``pl_score`` = the mean rating with every answer
   not in Polish rated 0 — a Polish benchmark answered in another language is not answered. (The
   leaderboard's own ``pl_score`` code was not available; this is our definition.)

Questions: FastChat's ``question.jsonl`` format (``question_id``, ``category``, ``turns``, optional
``reference``). bielik ships 16 Polish questions written for this project (2 per category); the 80
questions of SpeakLeash's MT-Bench-PL can be passed as ``questions=path/to/question.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

from pydantic import Field

from bielik.artifacts import atomic_write_text, staged_dir, write_json, write_stage_record
from bielik.config import StageConfig
from bielik.errors import DataError
from bielik.eval.data import read_records
from bielik.eval.judge import Judge, JudgeConfig, JudgmentCache
from bielik.eval.leaderboard import ModelOptions
from bielik.log import get_logger
from bielik.progress import progress

log = get_logger(__name__)

CATEGORIES = ["writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"]
NEED_REFERENCE = {"math", "reasoning", "coding"}


def shipped(name: str) -> Path:
    return Path(str(resources.files("bielik") / "resources" / "eval" / "mt_bench" / name))


class MTBenchConfig(StageConfig):
    model: str = Field("runs/sft/final", description="HF model directory of the model under test")
    output: str = "runs/eval/mt_bench"
    questions: str = Field("shipped", description="FastChat question.jsonl ('shipped': 16 Polish questions)")
    judge_prompts: str = Field("shipped", description="FastChat judge_prompts.jsonl ('shipped': Polish prompts)")
    answers: str | None = Field(None, description="judge this FastChat model_answer file instead of generating")
    model_id: str | None = Field(None, description="name in the answer file (default: the model directory's name)")
    max_new_tokens: int = Field(512, ge=1)
    system_prompt: str | None = None
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    cache_dir: str | None = Field(None, description="answers/judgments cache (default: <output>_cache)")
    lm: ModelOptions = Field(default_factory=ModelOptions)
    overwrite: bool = True


def load_questions(path: str) -> list[dict]:
    p = shipped("question.jsonl") if path == "shipped" else Path(path)
    if not p.is_file():
        raise DataError(f"MT-Bench question file {p} does not exist")
    qs = read_records(p)
    for i, q in enumerate(qs, 1):
        if not isinstance(q.get("turns"), list) or not q["turns"] or "question_id" not in q or "category" not in q:
            raise DataError(f"{p}:{i}: a question needs question_id, category and a non-empty list 'turns'")
        if q["category"] in NEED_REFERENCE and len(q.get("reference") or []) < len(q["turns"]):
            log.warning(
                "%s:%d: %s question %s has no reference answer per turn; judged without one",
                p,
                i,
                q["category"],
                q["question_id"],
            )
    return qs


def load_judge_prompts(path: str) -> dict[str, dict]:
    p = shipped("judge_prompts.jsonl") if path == "shipped" else Path(path)
    prompts = {r["name"]: r for r in read_records(p)}
    need = {"single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn"}
    if missing := need - set(prompts):
        raise DataError(f"judge prompt file {p} lacks {', '.join(sorted(missing))}")
    return prompts


def judge_request(q: dict, answers: list[str], turn: int, prompts: dict[str, dict]) -> tuple[str, str]:
    """(system prompt, user prompt) grading ``turn`` (0 or 1) of question ``q``, as FastChat builds them."""
    ref = q.get("reference") or []
    math = q["category"] in NEED_REFERENCE and len(ref) >= turn + 1
    name = ("single-math-v1" if math else "single-v1") + ("-multi-turn" if turn == 1 else "")
    tpl = prompts[name]
    if turn == 0:
        fields = {"question": q["turns"][0], "answer": answers[0]}
        if math:
            fields["ref_answer_1"] = ref[0]
    else:
        fields = {
            "question_1": q["turns"][0],
            "question_2": q["turns"][1],
            "answer_1": answers[0],
            "answer_2": answers[1],
        }
        if math:
            fields.update(ref_answer_1=ref[0], ref_answer_2=ref[1])
    return tpl["system_prompt"], tpl["prompt_template"].format(**fields)


def generate_answers(cfg: MTBenchConfig, questions: list[dict], cache_dir: Path) -> list[dict]:
    """Two-turn answers of the model, cached per (model files, question, settings)."""
    from bielik.artifacts import path_digest
    from bielik.eval.lm import EvalLM
    from bielik.model.generation import end_of_turn_ids

    lm = EvalLM.from_pretrained(
        cfg.model,
        cfg.lm.device,
        cfg.lm.dtype,
        batch_tokens=cfg.lm.batch_tokens,
        max_batch=cfg.lm.max_batch,
        gen_batch_tokens=cfg.lm.gen_batch_tokens,
    )
    if not getattr(lm.tok, "chat_template", None):
        raise DataError(f"model {cfg.model}: MT-Bench needs a tokenizer with a chat template")
    stop_ids = end_of_turn_ids(lm.tok)
    model_key = (
        path_digest(Path(cfg.model) / "model.safetensors")
        if (Path(cfg.model) / "model.safetensors").is_file()
        else cfg.model
    )
    cache = JudgmentCache(cache_dir, "answers.jsonl")
    cached = cache.entries
    keys = {
        q["question_id"]: hashlib.sha256(
            json.dumps([model_key, q["turns"], cfg.max_new_tokens, cfg.system_prompt], ensure_ascii=False).encode()
        ).hexdigest()
        for q in questions
    }
    todo = [q for q in questions if keys[q["question_id"]] not in cached]
    if todo:
        log.info("MT-Bench: generating answers to %d questions (%d cached)", len(todo), len(questions) - len(todo))
        convs = {
            q["question_id"]: ([{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else [])
            for q in todo
        }
        answers: dict = {q["question_id"]: [] for q in todo}
        for turn in range(max(len(q["turns"]) for q in todo)):
            live = [q for q in todo if turn < len(q["turns"])]
            prompts = []
            for q in live:
                convs[q["question_id"]].append({"role": "user", "content": q["turns"][turn]})
                prompts.append(
                    lm.tok.apply_chat_template(convs[q["question_id"]], tokenize=False, add_generation_prompt=True)
                )
            outs = lm.generate_until(
                prompts, [], cfg.max_new_tokens, desc=f"MT-Bench turn {turn + 1}", stop_ids=stop_ids
            )
            for q, out in zip(live, outs):
                out = out.strip()
                answers[q["question_id"]].append(out)
                convs[q["question_id"]].append({"role": "assistant", "content": out})
        for q in todo:
            cache.put(
                {"key": keys[q["question_id"]], "question_id": q["question_id"], "turns": answers[q["question_id"]]}
            )
    model_id = cfg.model_id or Path(cfg.model).name
    return [
        {
            "question_id": q["question_id"],
            "answer_id": keys[q["question_id"]][:22],
            "model_id": model_id,
            "choices": [{"index": 0, "turns": cached[keys[q["question_id"]]]["turns"]}],
            "tstamp": time.time(),
        }
        for q in questions
    ]


def summarize(questions: list[dict], answers: dict, judgments: list[dict]) -> dict:
    from bielik.data.langid import detect

    by_q = {q["question_id"]: q for q in questions}
    lang = {}
    for qid, turns in answers.items():
        for t, a in enumerate(turns):
            lang[(qid, t)] = detect(a)[0] if a.strip() else "und"
    polish = [v == "pl" for v in lang.values()]
    rated = [j for j in judgments if j["score"] >= 0]

    def mean(xs):
        xs = list(xs)
        return sum(xs) / len(xs) if xs else None

    per_cat = {c: mean(j["score"] for j in rated if by_q[j["question_id"]]["category"] == c) for c in CATEGORIES}
    extra = sorted({by_q[j["question_id"]]["category"] for j in rated} - set(CATEGORIES))
    per_cat.update({c: mean(j["score"] for j in rated if by_q[j["question_id"]]["category"] == c) for c in extra})
    return {
        "score": mean(j["score"] for j in rated),
        "score_turn1": mean(j["score"] for j in rated if j["turn"] == 1),
        "score_turn2": mean(j["score"] for j in rated if j["turn"] == 2),
        "pl_score": mean(j["score"] if lang.get((j["question_id"], j["turn"] - 1)) == "pl" else 0.0 for j in rated),
        "responses_pl": mean(polish),
        "categories": {c: v for c, v in per_cat.items() if v is not None},
        "judged": len(judgments),
        "unparseable": len(judgments) - len(rated),
        "answers": len(polish),
    }


def markdown(summary: dict, model: str) -> str:
    f = lambda x: "–" if x is None else f"{x:.2f}"  # noqa: E731
    share = "–" if summary["responses_pl"] is None else f"{100 * summary['responses_pl']:.0f}%"
    lines = [
        f"# Polish MT-Bench: {model}",
        "",
        "| score | turn 1 | turn 2 | pl_score | responses_pl |",
        "|---:|---:|---:|---:|---:|",
        f"| {f(summary['score'])} | {f(summary['score_turn1'])} | {f(summary['score_turn2'])} | "
        f"{f(summary['pl_score'])} | {share} |",
        "",
    ]
    if summary["categories"]:
        lines += [
            "| " + " | ".join(summary["categories"]) + " |",
            "|" + "---:|" * len(summary["categories"]),
            "| " + " | ".join(f(v) for v in summary["categories"].values()) + " |",
            "",
        ]
    lines.append(f"{summary['judged']} judgments, {summary['unparseable']} without a rating.")
    return "\n".join(lines) + "\n"


def run_mt_bench(cfg: MTBenchConfig) -> dict:
    questions = load_questions(cfg.questions)
    prompts = load_judge_prompts(cfg.judge_prompts)
    cache_dir = Path(cfg.cache_dir or f"{cfg.output.rstrip('/')}_cache")
    base_url, judge_model = cfg.judge.resolved()
    judge = Judge(cfg.judge, cache_dir) if base_url and judge_model else None
    if cfg.answers:
        recs = read_records(Path(cfg.answers))
        answers = {r["question_id"]: r["choices"][0]["turns"] for r in recs}
        records = recs
        missing = [q["question_id"] for q in questions if q["question_id"] not in answers]
        if missing:
            raise DataError(f"answer file {cfg.answers} has no answers to questions {missing[:10]}")
    else:
        records = generate_answers(cfg, questions, cache_dir)
        answers = {r["question_id"]: r["choices"][0]["turns"] for r in records}
    judgments: list[dict] = []
    if judge is None:
        log.warning(
            "MT-Bench: no judge configured (judge.base_url / judge.model): answers and responses_pl only, no ratings"
        )
    else:
        jobs = [(q, t) for q in questions for t in range(min(2, len(q["turns"])))]

        def one(job):
            q, t = job
            system, prompt = judge_request(q, answers[q["question_id"]], t, prompts)
            row = judge.judge(system, prompt)
            return {
                "question_id": q["question_id"],
                "model": records[0].get("model_id", ""),
                "judge": [judge.model, "single"],
                "turn": t + 1,
                "score": row["score"],
                "judgment": row["judgment"],
                "user_prompt": prompt,
            }

        with (
            progress("MT-Bench judging", total=len(jobs), unit="judgment") as bar,
            ThreadPoolExecutor(cfg.judge.concurrency) as pool,
        ):
            for res in pool.map(one, jobs):
                judgments.append(res)
                bar.advance(1)
    summary = summarize(questions, answers, judgments)
    summary.update(
        model=cfg.model,
        judge=judge_model if judge else None,
        questions=len(questions),
        judge_requests=judge.requests_sent if judge else 0,
    )
    with staged_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
        atomic_write_text(
            tmp / "model_answer.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        )
        atomic_write_text(
            tmp / "model_judgment.jsonl", "".join(json.dumps(j, ensure_ascii=False) + "\n" for j in judgments)
        )
        atomic_write_text(tmp / "results.md", markdown(summary, cfg.model))
        write_json(tmp / "results.json", summary)
        write_stage_record(tmp, "eval.mt_bench", cfg, inputs={"model": cfg.model}, metrics=summary)
    return summary
