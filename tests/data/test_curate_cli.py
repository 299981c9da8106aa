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
    res = runner.invoke(app, ["data", "curate", f"inputs=[{src}]", f"output={tmp_path / 'out'}", "steps=[clean,dedup]",
                              "on_error=skip"])
    assert res.exit_code == 0, res.output
    assert "funnel: 3 -> 1 documents" in res.output and "bad records skipped: 1" in res.output  # near-duplicates
    res = runner.invoke(app, ["data", "curate", "inputs=[x]", "clean.lang=pl"])
    assert res.exit_code == 2 and "did you mean 'clean.languages'" in res.output
