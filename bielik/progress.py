"""Progress reporting: a rich progress bar on a terminal, periodic log lines (rate, ETA) elsewhere.

Only rank 0 of a distributed job reports. Without a terminal (or with ``BIELIK_NO_BAR=1``) a line is
logged every ``every`` seconds and once when the count reaches its total; a count that goes past the
total (a caller counting something other than what its total counts) logs nothing more than that, so
it can never turn into one line per item, and the ETA never goes below zero.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator

from bielik.log import get_logger

log = get_logger("bielik.progress")


class _Reporter:
    def __init__(self, desc: str, total: float | None, unit: str, every: float):
        self.desc, self.total, self.unit, self.every = desc, total, unit, every
        self.done = 0.0
        self.start = self._last = time.perf_counter()
        self.info = ""
        self._bar = None
        self._task = None
        self._total_logged = False

    def advance(self, n: float = 1, info: str | None = None) -> None:
        self.done += n
        if info is not None:
            self.info = info
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, info=self.info)
            return
        reached = self.total is not None and self.done >= self.total
        if reached and self._total_logged:
            return
        now = time.perf_counter()
        if now - self._last >= self.every or reached:
            self._last = now
            self._total_logged = reached
            log.info(self.line())

    def line(self) -> str:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        rate = self.done / elapsed
        if self.total:
            eta = max(self.total - self.done, 0) / rate if rate > 0 else float("inf")
            head = f"{self.desc}: {self.done:,.0f}/{self.total:,.0f} {self.unit} ({100 * self.done / self.total:.0f}%)"
            tail = f", ETA {_fmt(eta)}"
        else:
            head, tail = f"{self.desc}: {self.done:,.0f} {self.unit}", ""
        return f"{head} at {rate:,.1f} {self.unit}/s{tail}{' | ' + self.info if self.info else ''}"


def _fmt(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@contextlib.contextmanager
def progress(desc: str, total: float | None = None, unit: str = "it", every: float = 10.0) -> Iterator[_Reporter]:
    """A reporter for a loop over ``total`` items of ``unit``; call ``advance(n)`` as n of those same items
    finish (count what ``total`` counts: a bar whose count passes its total is a caller's bug). ``every``:
    seconds between log lines without a terminal."""
    rep = _Reporter(desc, total, unit, every)
    use_bar = sys.stderr.isatty() and os.environ.get("RANK", "0") == "0" and not os.environ.get("BIELIK_NO_BAR")
    if not use_bar:
        yield rep
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class _Rate(ProgressColumn):
        def render(self, task):
            return Text(f"{task.speed:,.1f} {unit}/s" if task.speed else f"? {unit}/s")

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _Rate(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    ]
    with Progress(*columns, transient=False) as bar:
        rep._bar = bar
        rep._task = bar.add_task(desc, total=total, info="")
        yield rep
