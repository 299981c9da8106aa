"""What an evaluation prints: a progress count that matches its total, once; one line for tasks without data."""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager

from bielik.eval.tasks import get_task
from bielik.progress import progress

_COUNT = re.compile(r": ([\d,]+)/([\d,]+) (\w+) \((\d+)%\)")


@contextmanager
def captured(name: str):
    """INFO and above of logger ``name``, whatever the process's logging setup (an entry point's
    :func:`bielik.log.setup_logging` stops propagation to the root, where caplog listens)."""
    records: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger, handler = logging.getLogger(name), _Keep(logging.INFO)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _counts(records) -> list[tuple[int, int]]:
    out = []
    for r in records:
        m = _COUNT.search(r.getMessage())
        if m:
            out.append((int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))))
    return out


def test_reporter_logs_the_total_once_and_never_past_it():
    with captured("bielik.progress") as recs, progress("demo", total=5, unit="doc", every=3600) as bar:
        for _ in range(5):
            bar.advance(1)
        bar.advance(1)  # a caller that over-counts must not turn into one log line per item
        bar.advance(1)
    lines = [r.getMessage() for r in recs]
    assert len(lines) == 1, lines
    assert "5/5 doc (100%)" in lines[0] and "ETA 0:00" in lines[0]


def test_reporter_never_shows_a_negative_eta():
    with captured("bielik.progress") as recs, progress("demo", total=2, unit="doc", every=0) as bar:
        bar.start -= 100  # a slow loop: at 0.04 doc/s, two documents too many read as 50 s "left"
        for _ in range(4):
            bar.advance(1)
        lines = [r.getMessage() for r in recs] + [bar.line()]
    assert len(lines) == 3 and all("-" not in x.split("ETA")[-1] for x in lines), lines


def test_five_shot_loglikelihood_counts_each_document_once(eval_lm):
    """Long few-shot contexts are cut per choice (lm-eval's truncation), so one document becomes several pieces,
    scored in different batches: the bar must still advance once per document, to exactly its total."""
    from bielik.eval.data import search_dirs
    from bielik.eval.harness import prepare_task, run_task

    task = prepare_task(get_task("polemo2_in_multiple_choice"), 5, search_dirs(None), limit=12)
    old = eval_lm.max_length, eval_lm.batch_tokens
    eval_lm.max_length, eval_lm.batch_tokens = 48, 150  # every document is cut into 4 pieces; 3 pieces a batch
    try:
        with captured("bielik.progress") as recs:
            records = run_task(eval_lm, task)
    finally:
        eval_lm.max_length, eval_lm.batch_tokens = old
    assert len(records) == 12
    counts = _counts(recs)
    assert counts, [r.getMessage() for r in recs]
    assert all(total == 12 and done <= 12 for done, total in counts), counts
    assert counts[-1] == (12, 12) and sum(done == total for done, total in counts) == 1, counts


def test_skipped_tasks_are_summarised_once_per_run(tmp_path, tiny_model):
    """Tasks without data: one short line for the whole run (not one per task and shot setting, and without
    each task's where-to-get-the-data text, which `bielik eval tasks` and results_*shot.json keep)."""
    from bielik.eval.leaderboard import LeaderboardConfig, resolve_tasks, run_leaderboard

    specs = resolve_tasks(["leaderboard"])
    cfg = LeaderboardConfig(
        model=str(tiny_model),
        output=str(tmp_path / "lb"),
        tasks=["leaderboard"],
        num_fewshot=[0, 1],
        limit=2,
        bootstrap_iters=0,
        write_samples=False,
        lm={"device": "cpu"},
    )
    with captured("bielik") as recs:
        summary = run_leaderboard(cfg)
    skipped = summary["shots"]["0"]["skipped"]
    assert len(skipped) >= 10 and skipped == summary["shots"]["1"]["skipped"]
    about = [r.getMessage() for r in recs if r.levelno >= logging.INFO and any(t in r.getMessage() for t in skipped)]
    assert len(about) == 1, about
    line = about[0]
    assert line.startswith(f"skipped {len(skipped)} of {len(specs)} tasks without data: ")
    assert "bielik eval tasks" in line and all(t in line for t in skipped) and "\n" not in line
    guidance = [get_task(t).get_data.strip()[:40] for t in skipped if get_task(t).get_data]
    assert guidance and not any(g in r.getMessage() for g in guidance for r in recs)
    # the results tables (results.md, and what `bielik eval leaderboard` prints) list them once too
    md = (tmp_path / "lb" / "results.md").read_text(encoding="utf-8")
    assert all(md.count(t) == 1 for t in skipped) and "## 1-shot" in md
