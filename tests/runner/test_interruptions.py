"""A run stopped by a signal, a resume and an unexpected error: what the user reads and what is kept."""

import json
import os
import signal

from typer.testing import CliRunner

from budgetft.cli import app

from budgetft.rundir import RunDir

runner = CliRunner()


def run_cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_sigterm_interrupts_like_ctrl_c_with_a_resume_hint(tiny_job_file, tmp_path, monkeypatch):
    from budgetft.stages.tune import TuneSession

    def terminated(self, plan, specs):
        os.kill(os.getpid(), signal.SIGTERM)  # a `kill`, or a machine shutting down

    monkeypatch.setattr(TuneSession, "round", terminated)
    out = tmp_path / "run"
    result = run_cli("run", tiny_job_file, "--budget", "2", "--price-per-hour", "36", "--out", out)
    assert result.exit_code == 143, result.output
    assert "interrupted by SIGTERM" in result.output and f"budgetft run --resume {out}" in result.output
    assert RunDir(out).run()["status"] == "interrupted" and (out / "report.md").exists()


def test_the_cap_never_changes_on_resume(tiny_job_file, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"status": "interrupted", "cap_usd": "1.000000", "price_per_hour": "36"}))
    (out / "job.yaml").write_text(tiny_job_file.read_text())
    result = run_cli("run", "--resume", out, "--budget", "5")
    assert result.exit_code == 2 and "cap never changes on resume" in result.output and "$1" in result.output
    assert not (out / "ledger.jsonl").exists()


def test_an_unexpected_error_is_one_line_and_keeps_the_records(tiny_job_file, tmp_path, monkeypatch):
    from budgetft.stages.tune import TuneSession

    def broken(self, plan, specs):
        raise ZeroDivisionError("a bug of ours")

    monkeypatch.setattr(TuneSession, "round", broken)
    out = tmp_path / "run"
    result = run_cli("run", tiny_job_file, "--budget", "2", "--price-per-hour", "36", "--out", out)
    assert result.exit_code == 1
    assert "the run failed unexpectedly: ZeroDivisionError: a bug of ours" in result.output
    assert "Traceback" not in result.output and "error.log" in result.output
    assert (out / "ledger.jsonl").exists() and (out / "report.md").exists()
    assert "ZeroDivisionError" in (out / "error.log").read_text()
    assert RunDir(out).run()["status"] == "failed"
