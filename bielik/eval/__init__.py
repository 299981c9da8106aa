"""Evaluation: the Open PL LLM Leaderboard tasks, Polish EQ-Bench and Polish MT-Bench.

* :mod:`bielik.eval.tasks` — task definitions as data (lm-eval's YAML fields, SpeakLeash's prompts);
* :mod:`bielik.eval.data` / :mod:`bielik.eval.processors` — documents from local files or HF datasets;
* :mod:`bielik.eval.lm` — fast scoring: shared-prefix log-likelihoods, batched greedy generation;
* :mod:`bielik.eval.metrics` — filters, metrics and aggregation with lm-eval's semantics;
* :mod:`bielik.eval.harness` — tasks -> results in lm-eval's JSON shape;
* :mod:`bielik.eval.leaderboard` — the ``eval.leaderboard`` stage (normalised average, RAG, perplexity);
* :mod:`bielik.eval.eq_bench`, :mod:`bielik.eval.mt_bench`, :mod:`bielik.eval.judge` — EQ-Bench scoring,
  MT-Bench with an OpenAI-compatible judge;
* :mod:`bielik.eval.lmeval_export` — the same tasks as lm-eval YAMLs (parity checks, lm-eval users).
"""
