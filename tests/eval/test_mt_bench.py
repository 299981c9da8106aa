"""Polish MT-Bench against a fake OpenAI-compatible judge on loopback (real HTTP, bounded, stops by itself)."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bielik.errors import BielikError
from bielik.eval.judge import JudgeConfig, parse_rating
from bielik.eval.mt_bench import CATEGORIES, MTBenchConfig, load_questions, run_mt_bench, summarize


def rating_for(prompt: str) -> int:
    return len(prompt) % 10 + 1


class FakeJudge:
    """A chat-completions endpoint: the rating is a function of the prompt; can fail or refuse on demand."""

    def __init__(self):
        self.requests: list[dict] = []
        self.fail_next = 0
        self.refuse = False
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                judge.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if judge.refuse:
                    return self._send(400, {"error": {"message": "model not found"}})
                if judge.fail_next > 0:
                    judge.fail_next -= 1
                    return self._send(503, {"error": {"message": "overloaded"}})
                prompt = body["messages"][-1]["content"]
                return self._send(
                    200,
                    {
                        "choices": [
                            {
                                "index": 0,
                                "message": {
                                    "role": "assistant",
                                    "content": f"Odpowiedź jest poprawna. Rating: [[{rating_for(prompt)}]]",
                                },
                            }
                        ]
                    },
                )

            def _send(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def fake_judge():
    j = FakeJudge()
    yield j
    j.close()


def config(tmp_path, model, judge_url, **kw):
    judge = (
        {"base_url": judge_url, "model": "fake-judge", "backoff": 0.01, "max_retries": 3, "concurrency": 2}
        if judge_url
        else {}
    )
    return MTBenchConfig(
        model=str(model),
        output=str(tmp_path / "mt"),
        max_new_tokens=6,
        judge=JudgeConfig(**judge),
        lm={"device": "cpu"},
        **kw,
    )


def test_parse_rating():
    assert parse_rating("... Rating: [[7]]") == 7 and parse_rating("Ocena [[8.5]] i [[3]]") == 8.5
    assert parse_rating("ocena: [6]") == 6 and parse_rating("brak oceny") == -1


def test_mt_bench_with_fake_judge(tmp_path, tiny_model, fake_judge, monkeypatch):
    monkeypatch.setenv("BIELIK_JUDGE_API_KEY", "sekret")
    fake_judge.fail_next = 2  # two 503s: retried with backoff
    summary = run_mt_bench(config(tmp_path, tiny_model, fake_judge.url))
    questions = load_questions("shipped")
    assert len(questions) == 16 and {q["category"] for q in questions} == set(CATEGORIES)
    assert len(fake_judge.requests) == 32 + 2 and summary["judged"] == 32 and summary["judge_requests"] == 34
    assert all(r["path"] == "/v1/chat/completions" and r["auth"] == "Bearer sekret" for r in fake_judge.requests)
    judgments = [json.loads(line) for line in (tmp_path / "mt" / "model_judgment.jsonl").read_text().splitlines()]
    assert all(j["score"] == rating_for(j["user_prompt"]) for j in judgments)
    assert summary["score"] == pytest.approx(sum(j["score"] for j in judgments) / 32)
    assert set(summary["categories"]) == set(CATEGORIES)
    by = {(j["question_id"], j["turn"]): j["user_prompt"] for j in judgments}
    q_math = next(q for q in questions if q["category"] == "math")
    assert q_math["reference"][0] in by[(q_math["question_id"], 1)]  # math graded against the reference answer
    assert q_math["turns"][0] in by[(q_math["question_id"], 2)] and q_math["turns"][1] in by[(q_math["question_id"], 2)]
    q_writing = next(q for q in questions if q["category"] == "writing")
    assert "referencyjn" not in by[(q_writing["question_id"], 1)]
    answers = [json.loads(line) for line in (tmp_path / "mt" / "model_answer.jsonl").read_text().splitlines()]
    assert len(answers) == 16 and all(len(a["choices"][0]["turns"]) == 2 for a in answers)
    assert 0.0 <= summary["responses_pl"] <= 1.0 and (tmp_path / "mt" / "results.md").is_file()

    # a second run is served from the caches: no judge request, the same answers
    before = len(fake_judge.requests)
    again = run_mt_bench(config(tmp_path, tiny_model, fake_judge.url))
    assert len(fake_judge.requests) == before and again["score"] == summary["score"]
    assert [
        json.loads(line)["choices"] for line in (tmp_path / "mt" / "model_answer.jsonl").read_text().splitlines()
    ] == [a["choices"] for a in answers]

    # resumable: judgments lost from the cache (an interrupted run) are the only ones asked again
    cache = tmp_path / "mt_cache" / "judgments.jsonl"
    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines[:-5]) + "\n" + lines[-5][:20])  # five gone, a torn last line
    run_mt_bench(config(tmp_path, tiny_model, fake_judge.url))
    assert len(fake_judge.requests) == before + 5


def test_judge_refusal_is_a_clear_error(tmp_path, tiny_model, fake_judge):
    fake_judge.refuse = True
    with pytest.raises(BielikError, match="HTTP 400"):
        run_mt_bench(config(tmp_path, tiny_model, fake_judge.url))
    assert not (tmp_path / "mt").exists()


def test_no_judge_means_no_network(tmp_path, tiny_model, monkeypatch):
    monkeypatch.delenv("BIELIK_JUDGE_BASE_URL", raising=False)
    monkeypatch.delenv("BIELIK_JUDGE_MODEL", raising=False)
    summary = run_mt_bench(config(tmp_path, tiny_model, None))
    assert summary["score"] is None and summary["judged"] == 0 and summary["answers"] == 32


def test_summary_language_share_and_pl_score():
    qs = [
        {"question_id": 1, "category": "writing", "turns": ["a", "b"]},
        {"question_id": 2, "category": "math", "turns": ["c", "d"]},
    ]
    answers = {
        1: [
            "Dzień dobry, oto krótki list do sąsiadki z podziękowaniem za podlewanie kwiatów.",
            "Ala ma kota, a kot ma Alę.",
        ],
        2: ["The answer is that x equals three and y equals two, as shown.", "Wynik wynosi trzynaście."],
    }
    judg = [{"question_id": q, "turn": t, "score": s} for (q, t, s) in [(1, 1, 8), (1, 2, 6), (2, 1, 10), (2, 2, 4)]]
    s = summarize(qs, answers, judg)
    assert s["responses_pl"] == 0.75 and s["score"] == 7.0
    assert s["pl_score"] == pytest.approx((8 + 6 + 0 + 4) / 4)  # the English answer counts 0
    assert s["categories"] == {"writing": 7.0, "math": 7.0} and s["score_turn1"] == 9.0


def test_question_file_format_is_checked(tmp_path):
    bad = tmp_path / "q.jsonl"
    bad.write_text(json.dumps({"question_id": 1, "category": "writing"}) + "\n")
    with pytest.raises(BielikError, match=re.escape(str(bad)) + ":1"):
        load_questions(str(bad))


def test_judging_an_existing_answer_file(tmp_path, fake_judge):
    """FastChat model_answer files (e.g. from another inference server) are judged without loading a model."""
    qs = load_questions("shipped")
    answers = tmp_path / "answers.jsonl"
    answers.write_text(
        "".join(
            json.dumps(
                {
                    "question_id": q["question_id"],
                    "model_id": "m",
                    "answer_id": "x",
                    "choices": [
                        {
                            "index": 0,
                            "turns": [
                                "Odpowiadam po polsku, bardzo starannie i wyczerpująco.",
                                "Druga odpowiedź również jest napisana po polsku.",
                            ],
                        }
                    ],
                }
            )
            + "\n"
            for q in qs
        )
    )
    cfg = MTBenchConfig(
        model="not-loaded",
        output=str(tmp_path / "mt"),
        answers=str(answers),
        judge=JudgeConfig(base_url=fake_judge.url, model="fake-judge", backoff=0.01),
    )
    s = run_mt_bench(cfg)
    assert s["judged"] == 32 and s["responses_pl"] == 1.0 and s["pl_score"] == s["score"]
