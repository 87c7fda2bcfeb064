"""Bad command-line input is refused with the problem and the fix, before anything is spent, and
nothing is a traceback."""

import json

import pytest
from typer.testing import CliRunner

from budgetft.cli import app


runner = CliRunner()


def run_cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_a_job_file_that_is_not_utf8(tmp_path):
    job = tmp_path / "latin1.yaml"
    job.write_bytes("name: caf\xe9\n".encode("latin-1"))
    result = run_cli("plan", job, "--budget", "1", "--price-per-hour", "1", "--no-calibrate")
    assert result.exit_code == 2
    assert "not a UTF-8 text file" in result.output and "save the job as UTF-8" in result.output


def test_out_naming_a_regular_file(tiny_job_file, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    result = run_cli("run", tiny_job_file, "--budget", "1", "--price-per-hour", "36", "--out", target)
    assert result.exit_code == 2 and "is a file, not a directory" in result.output
    assert target.read_text() == "mine"


def test_out_at_a_finished_run_does_not_advise_resume(tiny_job_file, tmp_path):
    out = tmp_path / "done"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"status": "finished", "cap_usd": "1"}))
    result = run_cli("run", tiny_job_file, "--budget", "1", "--price-per-hour", "36", "--out", out)
    assert result.exit_code == 2 and "finished run" in result.output
    assert "--resume" not in result.output and f"budgetft report {out}" in result.output


@pytest.mark.parametrize("flags", [["--gpu", "l4"], ["--zone", "us-central1-a"], ["--bucket", "gs://b"], ["--spot"]])
def test_cloud_options_without_cloud_are_refused(tiny_job_file, tmp_path, flags):
    result = run_cli("run", tiny_job_file, "--budget", "1", "--price-per-hour", "36", "--out", tmp_path / "r", *flags)
    assert result.exit_code == 2 and "only apply to cloud runs" in result.output and "--cloud gcp" in result.output
    assert not (tmp_path / "r").exists()


def test_empty_methods_is_refused(tiny_job_file, tmp_path):
    result = run_cli("plan", tiny_job_file, "--budget", "1", "--price-per-hour", "36", "--no-calibrate", "--methods", "")
    assert result.exit_code == 2 and "name one or more methods" in result.output
