"""The report's section builders, tables and renderers on the records of a real run (tests/fixtures/report_run,
copied from runs/report-demo by tests/fixtures/make_report_run.py): every stage gets its section, and the
tables hold the numbers of the stages' metrics files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from bielik.artifacts import read_log_rows
from bielik.errors import BielikError, ConfigError
from bielik.report import ReportConfig, build_report, report, tables_for
from bielik.report.document import Table, duration, format_cell, slug
from bielik.report.plots import lr_lines
from bielik.report.render import table_markdown, to_rich
from bielik.report.run import find_stages
from bielik.report.sections import BUILDERS, stage_section

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "report_run"


def _metrics(stage: str) -> dict:
    return json.loads((FIXTURE / stage / "metrics.json").read_text(encoding="utf-8"))


def _records(stage: str) -> list[dict]:
    return [
        json.loads(x) for x in (FIXTURE / stage / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()
    ]


def _stage_dirs() -> list[Path]:
    return sorted(p for p in FIXTURE.iterdir() if (p / "config.yaml").is_file())


def _kind(stage_dir: Path) -> str:
    return yaml.safe_load((stage_dir / "config.yaml").read_text(encoding="utf-8"))["stage"]


@pytest.fixture(scope="module")
def rep():
    return build_report(FIXTURE)


def _section(rep, name: str):
    return next(s for s in rep.sections if s.title == name)


def _table(section, title_part: str) -> Table:
    return next(t for t in section.tables if title_part in t.title)


def _by_kind(rep, kind: str):
    secs = [s for s in rep.sections if s.kind == kind]
    assert secs, f"the fixture run has no {kind} stage: regenerate it (tests/fixtures/make_report_run.py)"
    return secs[0]


def test_every_stage_has_a_section_in_run_order(rep):
    dirs = _stage_dirs()
    assert sorted(s.title for s in rep.sections) == sorted(d.name for d in dirs)
    assert [s.id for s in rep.sections] == ["stage-" + slug(s.title) for s in rep.sections]
    started = [st.started for st in find_stages(FIXTURE)]
    assert all(started), "every stage of a real run has a start time"
    for s in rep.sections:
        assert not any("could not be built" in n for n in s.notes), (s.title, s.notes)
        d = FIXTURE / s.title
        assert s.kind == _kind(d)
        assert f"stage: {s.kind}" in s.config_yaml
        facts = dict(s.facts)
        assert facts["status"] == "done" and "wall time" in facts and "git rev" in facts
        lineage = json.loads((d / "lineage.json").read_text(encoding="utf-8"))
        if lineage.get("inputs"):
            assert s.lineage is not None
            assert s.lineage.column("input") == list(lineage["inputs"])
            assert s.lineage.column("sha256 (first 12)") == [
                (i["sha256"] or "")[:12] or None for i in lineage["inputs"].values()
            ]
    # the kinds the run covers have builders of their own (not the generic fallback)
    kinds = {s.kind for s in rep.sections}
    assert {"train.pretrain", "train.sft", "data.pack", "generate"} <= kinds & set(BUILDERS)


def test_summary_lists_stages_with_status_and_wall_time(rep):
    t = rep.summary.tables[0]
    assert t.column("stage")[:-1] == [s.title for s in rep.sections]
    assert t.column("status")[-1] == f"{len(rep.sections)}/{len(rep.sections)} done"
    stages = find_stages(FIXTURE)
    walls = [st.wall_time_s for st in stages]
    assert all(w is not None for w in walls), "a run of the recipe runner records every stage's wall time"
    assert t.column("wall time")[-1] == duration(sum(walls))
    assert [f.name for f in rep.summary.figures] == ["summary-wall-time.png"]


def test_training_tables_and_curves_match_metrics(rep):
    pre = _section(rep, "pretrain")
    m = _metrics("pretrain")
    t = _table(pre, "training summary")
    values = dict(zip(t.column("metric"), t.column("value")))
    for key in ("steps", "tokens", "final_val_loss", "final_train_loss"):
        assert values[key] == m[key]
    assert [f.name for f in pre.figures] == ["pretrain-loss.png"]
    assert pre.figures[0].png[:8] == b"\x89PNG\r\n\x1a\n"
    # plain schedule in pretraining: one LR line; SFT with the adaptive LR: the schedule and the LR used
    assert [label for label, *_ in lr_lines(_records("pretrain"))] == ["learning rate"]
    sft_cfg = yaml.safe_load((FIXTURE / "sft" / "config.yaml").read_text(encoding="utf-8"))
    if sft_cfg["train"]["optim"]["alr"]["enabled"]:
        assert [label for label, *_ in lr_lines(_records("sft"))] == [
            "LR schedule",
            "LR used (adaptive)",
        ]


def test_sft_weight_mix_and_trend(rep):
    sec = _by_kind(rep, "train.sft")
    m = _metrics(sec.title)
    mix = _table(sec, "weight mix")
    assert sorted(mix.column("weight")) == sorted(float(w) for w in m["data"]["weights"])
    assert sum(mix.column("dialogues")) == sum(m["data"]["weights"].values()) == m["data"]["train_dialogues"]
    assert abs(sum(mix.column("share [%]")) - 100) < 1e-6
    trend = _table(sec, "instruction CE")
    ce = [r["ce"] for r in _records(sec.title) if r["kind"] == "train"]
    row = trend.rows[trend.column("metric").index("ce")]
    assert row[1] == ce[0] and row[2] == ce[-1]


def test_curation_funnel_reasons_and_pii(rep):
    sec = _by_kind(rep, "data.curate")
    m = _metrics(sec.title)
    funnel = _table(sec, "funnel")
    assert funnel.column("step") == [r["step"] for r in m["funnel"]]
    assert funnel.column("remaining") == [r["remaining"] for r in m["funnel"]]
    assert funnel.column("remaining")[-1] == m["kept"]
    reasons = _table(sec, "drop reasons")
    assert dict(zip(reasons.column("reason"), reasons.column("documents"))) == m["dropped"]
    if m["pii_spans"]:
        pii = _table(sec, "PII")
        assert dict(zip(pii.column("type")[:-1], pii.column("spans")[:-1])) == m["pii_spans"]
        assert pii.column("spans")[-1] == sum(m["pii_spans"].values())
        assert any(f.name.endswith("-pii.png") for f in sec.figures)


def test_quality_confusion_matrix(rep):
    sec = _by_kind(rep, "quality.eval")
    m = _metrics(sec.title)
    cm = _table(sec, "confusion")
    assert cm.header[1:] == m["labels"]
    assert [row[1:] for row in cm.rows] == m["confusion"]
    prf = _table(sec, "precision")
    assert prf.column("F1")[:-1] == [m["per_class"][lab]["f1"] for lab in m["labels"]]


def test_tokenizer_cpt_tpw(rep):
    sec = _by_kind(rep, "tokenizer.stats")
    rows = _metrics(sec.title)["rows"]
    t = _table(sec, "tokenizer efficiency")
    for r in rows:
        line = t.rows[t.column("tokenizer").index(r["tokenizer"])]
        assert line[t.header.index(f"{r['text']} CpT")] == r["cpt"]
        assert line[t.header.index(f"{r['text']} TpW")] == r["tpw"]
        assert line[t.header.index(f"{r['text']} tokens")] == r["tokens"]


def test_dpo_and_grpo_sections(rep):
    dpo = _by_kind(rep, "train.dpo")
    recs = [r for r in _records(dpo.title) if r["kind"] == "train"]
    trend = _table(dpo, "DPO-P objective")
    for key in ("margin", "penalty", "accuracy"):
        row = trend.rows[trend.column("metric").index(key)]
        assert row[1] == recs[0][key] and row[2] == recs[-1][key]
    assert any(f.name.endswith("-dpo.png") for f in dpo.figures)
    grpo = _by_kind(rep, "train.grpo")
    m = _metrics(grpo.title)
    t = _table(grpo, "before and after")
    for name, before, after in zip(t.column("metric"), t.column("before"), t.column("after")):
        assert (before, after) == (m[f"initial_{name}"], m[f"final_{name}"])
    assert any(f.name.endswith("-grpo.png") for f in grpo.figures)


def test_compression_quantisation_speed_leaderboard(rep):
    imp = _by_kind(rep, "compress.importance")
    assert _table(imp, "Block Influence").column("Block Influence") == _metrics(imp.title)["block_influence"]
    dist = _by_kind(rep, "compress.distill")
    h = _metrics(dist.title)["heldout"]
    rec = _table(dist, "recovery")
    assert rec.column("CE (nats/token)")[0] == h["teacher_ce"] and rec.column("CE (nats/token)")[-1] == h["student_ce"]
    cmp_ = _by_kind(rep, "quant.compare")
    rows = _metrics(cmp_.title)["rows"]
    t = _table(cmp_, "quantisation error")
    assert t.column("mean KLD") == [r["kld_mean"] for r in rows]
    assert t.column("imatrix") == [r["imatrix"] for r in rows]
    assert any(f.name.endswith("-quant-error.png") for f in cmp_.figures)
    speed = _by_kind(rep, "bench.speed")
    assert len(_table(speed, "speed").rows) == len(_metrics(speed.title)["rows"])
    lb = _by_kind(rep, "eval.leaderboard")
    m = _metrics(lb.title)
    for k, s in m["shots"].items():
        assert _table(lb, f"{k}-shot").column("score") == [r["score"] for r in s["tasks"]]


def test_unknown_kind_gets_a_generic_section(tmp_path):
    src = FIXTURE / "data"
    dst = tmp_path / "run" / "custom"
    shutil.copytree(src, dst)
    text = (dst / "config.yaml").read_text(encoding="utf-8")
    (dst / "config.yaml").write_text(
        re.sub(r"^stage: .*$", "stage: custom.thing", text, flags=re.MULTILINE),
        encoding="utf-8",
    )
    st = find_stages(tmp_path / "run")[0]
    sec = stage_section(st)
    assert sec.kind == "custom.thing" and sec.id == "stage-custom"
    kv = _table(sec, "metrics")
    values = dict(zip(kv.column("metric"), kv.column("value")))
    m = _metrics("data")
    assert values["documents"] == m["documents"] and values["train.tokens"] == m["train"]["tokens"]
    assert "stage: custom.thing" in sec.config_yaml and dict(sec.facts)["wall time"]


def test_incomplete_and_failed_stages(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE / "pretrain", run / "pretrain")
    shutil.copytree(FIXTURE / "tokenizer", run / "tokenizer")
    (run / "pretrain" / "metrics.json").unlink()  # a training stage that was stopped: metrics.jsonl only
    lineage = json.loads((run / "tokenizer" / "lineage.json").read_text())
    for key in ("wall_time_s", "started", "finished"):  # as written by a stage run outside the recipe runner
        lineage.pop(key, None)
    (run / "tokenizer" / "lineage.json").write_text(json.dumps(lineage))
    (run / "recipe-state.json").write_text(
        json.dumps(
            {
                "recipe": "tiny",
                "stages": {
                    "tokenizer": {
                        "kind": "tokenizer.train",
                        "output": str(run / "tokenizer"),
                        "status": "done",
                        "wall_time_s": 12.5,
                    },
                    "pretrain": {
                        "kind": "train.pretrain",
                        "output": str(run / "pretrain"),
                        "status": "failed",
                        "error": "RuntimeError: out of memory",
                    },
                    "sft": {
                        "kind": "train.sft",
                        "output": str(run / "sft"),
                        "status": "failed",
                        "error": "BielikError: no data",
                    },
                },
            }
        )
    )
    rep = build_report(run)
    by = {s.title: s for s in rep.sections}
    assert dict(by["pretrain"].facts)["status"] == "failed"
    assert by["pretrain"].notes[0] == "failed: RuntimeError: out of memory"
    assert [f.name for f in by["pretrain"].figures] == ["pretrain-loss.png"]  # the curve up to the failure
    assert dict(by["sft"].facts)["status"] == "failed" and "no data" in by["sft"].notes[0]
    assert dict(by["tokenizer"].facts)["wall time"] == "12.5 s"
    assert rep.summary.tables[0].column("status")[-1] == "1/3 done"
    assert "tiny" in rep.title


def test_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(BielikError, match="does not exist"):
        find_stages(tmp_path / "nope")
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"step": 1}\n{broken\n{"step": 3}\n')
    with pytest.raises(BielikError, match=r"m\.jsonl:2"):
        read_log_rows(bad)
    bad.write_text('{"step": 1}\n{"step": 2, "lo')  # a stage killed mid-write: the torn last line is ignored
    assert read_log_rows(bad) == [{"step": 1}]
    with pytest.raises(ConfigError, match="run_dir"):
        ReportConfig()
    assert ReportConfig(output="runs/x/report").run_dir == "runs/x"
    assert ReportConfig(run_dir="runs/y").output == str(Path("runs/y") / "report")


def test_report_writes_html_markdown_and_record(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    res = report(ReportConfig(run_dir=str(run)))
    out = run / "report"
    html = (out / "report.html").read_text(encoding="utf-8")
    md = (out / "report.md").read_text(encoding="utf-8")
    assert res["output"] == str(out) and res["stages"] == len(_stage_dirs())
    # self-contained: no external resources, every image inline
    assert (
        not re.search(r"""(src|href)=["'](https?:|//|file:)""", html) and "<script" not in html and "<link" not in html
    )
    assert html.count('src="data:image/png;base64,') == res["figures"]
    for sid in res["sections"]:
        assert f'<section id="{sid}">' in html
    links = re.findall(r"!\[[^\]]*\]\((report_files/[^)]+)\)", md)
    assert len(links) == res["figures"] and all((out / link).is_file() for link in links)
    assert json.loads((out / "metrics.json").read_text())["figures"] == res["figures"]
    assert yaml.safe_load((out / "config.yaml").read_text())["stage"] == "report"
    # a second run replaces the report and does not report on the report
    res2 = report(ReportConfig(run_dir=str(run)))
    assert res2["sections"] == res["sections"]


def test_cli_tables_and_renderers():
    rows = _metrics("data")
    t = tables_for("data.pack", rows)[0]
    assert t.column("tokens") == [rows["train"]["tokens"], rows["val"]["tokens"]]
    md = table_markdown(t)
    assert md.splitlines()[2].startswith("| split | rows | tokens |") and "|---|---:|---:|" in md
    assert f"{rows['train']['tokens']:,}" in md
    assert to_rich(t).row_count == 2
    assert tables_for("something.new", {"a": {"b": 1.5}})[0].rows == [["a.b", 1.5]]
    assert tables_for("bench.speed", None) == []


@pytest.mark.parametrize(
    "value,fmt,text",
    [
        (None, None, "—"),
        (float("nan"), None, "—"),
        (True, None, "yes"),
        (1234567, None, "1,234,567"),
        (0.000123456, None, "1.235e-04"),
        (3.14159, None, "3.142"),
        (12345.6, None, "12,346"),
        (0.5, ".1%", "50.0%"),
        ([1, 2], None, "1, 2"),
        ("a|b", None, "a|b"),
    ],
)
def test_format_cell(value, fmt, text):
    assert format_cell(value, fmt) == text
