import json

from typer.testing import CliRunner

from bielik.cli import app


def test_cli_curate_reports_bad_line_and_funnel(tmp_path):
    good = "Sejm uchwalił ustawę o ochronie zwierząt. " * 12
    lines = [json.dumps({"id": str(i), "text": good + f"Dokument numer {i}."}, ensure_ascii=False) for i in range(3)]
    src = tmp_path / "raw.jsonl"
    src.write_text("\n".join(lines[:2] + ['{"id": "bad", "text": 5}'] + lines[2:]) + "\n", encoding="utf-8")
    runner = CliRunner()
    res = runner.invoke(app, ["data", "curate", f"inputs=[{src}]", f"output={tmp_path / 'out'}", "steps=[clean,dedup]"])
    assert res.exit_code == 2 and "raw.jsonl:3: field 'text' is int" in res.output
    res = runner.invoke(
        app, ["data", "curate", f"inputs=[{src}]", f"output={tmp_path / 'out'}", "steps=[clean,dedup]", "on_error=skip"]
    )
    assert res.exit_code == 0, res.output
    assert "funnel: 3 → 1 documents" in res.output and "bad records skipped: 1" in res.output  # near-duplicates
    res = runner.invoke(app, ["data", "curate", "inputs=[x]", "clean.lang=pl"])
    assert res.exit_code == 2 and "did you mean 'clean.languages'" in res.output


def _bielik(*args, cwd):
    import os
    import subprocess
    import sys

    env = dict(os.environ, BIELIK_NO_BAR="1")
    env.pop("BIELIK_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "bielik.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300, env=env
    )


# what datatrove prints for every task when its loguru sinks are left alone (banner, per-task stats)
DATATROVE_CHATTER = ("PIPELINE", "Launching pipeline", "📉", "Stats", "datatrove.executor", "Traceback")


def test_cli_shows_no_datatrove_output_but_the_logs_keep_it(tmp_path, shipped_pl_docs):
    news = [d for d in shipped_pl_docs if d["id"].startswith("ntrex")][:4]
    src = tmp_path / "raw.jsonl"
    src.write_text(
        "".join(json.dumps({"id": d["id"], "text": d["text"]}, ensure_ascii=False) + "\n" for d in news),
        encoding="utf-8",
    )
    res = _bielik(
        "data",
        "curate",
        f"inputs=[{src}]",
        "output=out",
        "steps=[clean,anonymize,dedup]",
        "executor.tasks=2",
        "executor.workers=2",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    for text in DATATROVE_CHATTER:
        assert text not in res.stdout + res.stderr, (text, res.stderr)
    assert "funnel: 4 → 4 documents" in res.stdout and "data.curate: 4 -> 4 documents" in res.stderr
    stage_log = (tmp_path / "out" / "logs" / "curation.log").read_text(encoding="utf-8")
    assert "📉📉📉 Stats: All 2 tasks" in stage_log
    task_log = (tmp_path / "out" / "logs" / "logs" / "task_00001.log").read_text(encoding="utf-8")
    assert "--- 🛠️ PIPELINE 🛠" in task_log and "bielik anonymize" in task_log and "Stats: Task 1" in task_log

    # a broken line: bielik's one line on stderr (exit 2); datatrove's traceback only in the task's log
    src.write_text(src.read_text(encoding="utf-8") + '{"id": "bad", "text": 5}\n', encoding="utf-8")
    res = _bielik("data", "clean", f"inputs=[{src}]", "output=out2", cwd=tmp_path)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [
        "error: " + f"{src}:5: field 'text' is int; expected a string (pass on_error=skip to skip and count bad lines)"
    ]
    task_log = (tmp_path / "out2.work" / "logs" / "logs" / "task_00000.log").read_text(encoding="utf-8")
    assert "Traceback" in task_log and "field 'text' is int" in task_log


def test_slurm_dry_run_prints_the_sbatch_script(tmp_path):
    from bielik.data.curate.config import CleanStageConfig
    from bielik.data.curate.stages import clean

    for i in range(3):
        (tmp_path / f"part{i}.jsonl").write_text(json.dumps({"id": str(i), "text": "Zdanie. " * 40}) + "\n")
    overrides = [
        f"inputs=[{tmp_path}]",
        f"output={tmp_path / 'out'}",
        "executor.kind=slurm",
        "executor.partition=cpu",
        "executor.time=01:30:00",
        "executor.cpus_per_task=2",
        "executor.workers=2",
        "executor.venv_path=/opt/venv/bin/activate",
        "executor.dry_run=true",
    ]
    res = CliRunner().invoke(app, ["data", "clean", *overrides])
    assert res.exit_code == 0, res.output
    assert "dry run, nothing submitted" in res.output and "#SBATCH --partition=cpu" in res.output

    cfg = CleanStageConfig.model_validate(
        {
            "inputs": [str(tmp_path)],
            "output": str(tmp_path / "out"),
            "executor": {
                "kind": "slurm",
                "partition": "cpu",
                "time": "01:30:00",
                "cpus_per_task": 2,
                "workers": 2,
                "venv_path": "/opt/venv/bin/activate",
                "dry_run": True,
            },
        }
    )
    summary = clean(cfg)
    assert summary["status"] == "incomplete" and summary["dry_run"] and summary["tasks"] == 3
    script = summary["sbatch"][0]["script"]
    logs = tmp_path / "out.work" / "logs"
    for line in (
        "#SBATCH --partition=cpu",
        "#SBATCH --time=01:30:00",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --array=0-2%2",
        "#SBATCH --job-name=bielik-logs",
        "source /opt/venv/bin/activate",
        f"srun  -l -n 1 launch_pickled_pipeline {logs / 'executor.pik'}",
    ):
        assert line in script.splitlines(), (line, script)
    assert script == (logs / "launch_script.slurm").read_text() and (logs / "executor.pik").is_file()
    assert any(ln.startswith("merge_stats ") for ln in summary["sbatch"][1]["script"].splitlines())  # stats job
    assert not (tmp_path / "out").exists()
