"""An LLM judge behind any OpenAI-compatible ``/chat/completions`` endpoint, with a disk cache.

Nothing leaves the machine unless a base URL is configured (``judge.base_url`` or the
``BIELIK_JUDGE_BASE_URL`` environment variable); the API key is read from an environment variable
(``BIELIK_JUDGE_API_KEY`` by default) and never written to configs or outputs.

Every judgment is appended to ``judgments.jsonl`` in the cache directory under the SHA-256 of
(model, system prompt, prompt, temperature, max_tokens), so an interrupted run resumes where it
stopped and a repeated run sends no request. Transient failures (connection errors, timeouts, HTTP
408/409/429/5xx) are retried with exponential backoff and jitter (``backoff · 2^attempt`` seconds,
``Retry-After`` honoured); other HTTP errors stop the run with the server's message.

Ratings follow FastChat's single-answer grading: the first ``[[N]]`` in the judge's reply, else the
first ``[N]``; -1 when there is none (counted as unparseable, excluded from the means).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import threading
import time
from pathlib import Path

from pydantic import Field

from bielik.config import StageConfig
from bielik.errors import BielikError, ConfigError
from bielik.log import get_logger

log = get_logger(__name__)

_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class JudgeConfig(StageConfig):
    base_url: str | None = Field(
        None, description="OpenAI-compatible API root, e.g. http://localhost:8000/v1 (env BIELIK_JUDGE_BASE_URL)"
    )
    model: str | None = Field(None, description="judge model name (env BIELIK_JUDGE_MODEL)")
    api_key_env: str = Field(
        "BIELIK_JUDGE_API_KEY", description="environment variable holding the API key (may be unset)"
    )
    temperature: float = Field(0.0, ge=0.0)
    max_tokens: int = Field(2048, ge=1)
    timeout: float = Field(120.0, gt=0)
    max_retries: int = Field(5, ge=0)
    backoff: float = Field(2.0, ge=0.0, description="first retry delay in seconds; doubles every retry")
    concurrency: int = Field(4, ge=1, description="requests in flight")

    def resolved(self) -> tuple[str | None, str | None]:
        return (
            self.base_url or os.environ.get("BIELIK_JUDGE_BASE_URL"),
            self.model or os.environ.get("BIELIK_JUDGE_MODEL"),
        )


def parse_rating(text: str) -> float:
    m = _RATING.search(text) or _RATING_BACKUP.search(text)
    if not m:
        return -1.0
    try:
        return float(m.group(1))
    except ValueError:
        return -1.0


class JudgmentCache:
    """Append-only JSONL of rows keyed by their ``key`` (a request's digest); a torn last line is ignored.

    Judgments live in ``judgments.jsonl``; MT-Bench caches the model's answers the same way (``name``).
    """

    def __init__(self, directory: str | Path, name: str = "judgments.jsonl"):
        self.path = Path(directory) / name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.entries: dict[str, dict] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self.entries[row["key"]] = row
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def put(self, row: dict) -> None:
        with self._lock:
            self.entries[row["key"]] = row
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())


class Judge:
    def __init__(self, cfg: JudgeConfig, cache_dir: str | Path):
        self.cfg = cfg
        self.base_url, self.model = cfg.resolved()
        if not self.base_url or not self.model:
            raise ConfigError(
                "the judge needs judge.base_url and judge.model (or BIELIK_JUDGE_BASE_URL / BIELIK_JUDGE_MODEL)"
            )
        self.url = self.base_url.rstrip("/") + "/chat/completions"
        self.cache = JudgmentCache(cache_dir)
        self.requests_sent = 0
        import requests

        self._session = requests.Session()
        key = os.environ.get(cfg.api_key_env)
        if key:
            self._session.headers["Authorization"] = f"Bearer {key}"

    def key(self, system: str, prompt: str) -> str:
        blob = json.dumps([self.model, system, prompt, self.cfg.temperature, self.cfg.max_tokens], ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def judge(self, system: str, prompt: str) -> dict:
        """``{"key", "judgment", "score"}`` for one prompt, from the cache when it is there."""
        k = self.key(system, prompt)
        hit = self.cache.get(k)
        if hit is not None:
            return hit
        text = self._complete(system, prompt)
        row = {"key": k, "model": self.model, "judgment": text, "score": parse_rating(text), "tstamp": time.time()}
        self.cache.put(row)
        return row

    def _complete(self, system: str, prompt: str) -> str:
        import requests

        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": self.cfg.temperature,
            "max_tokens": self.cfg.max_tokens,
        }
        for attempt in range(self.cfg.max_retries + 1):
            retry_after = None
            try:
                self.requests_sent += 1
                resp = self._session.post(self.url, json=body, timeout=self.cfg.timeout)
                if resp.status_code == 200:
                    try:
                        return resp.json()["choices"][0]["message"]["content"] or ""
                    except (ValueError, KeyError, IndexError, TypeError):
                        raise BielikError(
                            f"judge {self.url} answered 200 without choices[0].message.content: {resp.text[:200]}"
                        ) from None
                if resp.status_code not in RETRY_STATUS:
                    raise BielikError(
                        f"judge {self.url} refused the request: HTTP {resp.status_code} {resp.text[:300]}"
                    )
                problem = f"HTTP {resp.status_code}"
                retry_after = resp.headers.get("Retry-After")
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = type(exc).__name__
            if attempt == self.cfg.max_retries:
                raise BielikError(f"judge {self.url} failed after {attempt + 1} attempts (last: {problem})")
            delay = self.cfg.backoff * (2**attempt) * (0.5 + random.random() / 2)
            if retry_after:
                with contextlib.suppress(ValueError):  # an HTTP date instead of seconds: keep the backoff
                    delay = max(delay, float(retry_after))
            log.warning("judge: %s, retrying in %.1fs (%d/%d)", problem, delay, attempt + 1, self.cfg.max_retries)
            time.sleep(delay)
        raise AssertionError("unreachable")
