"""Defects a new user met (issue 11, point 6): each refusal names the problem and the fix, before
anything is spent, and nothing is a traceback."""

import json
import os
import signal
import subprocess
import sys
from decimal import Decimal

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from budgetft.cli import app
from budgetft.rundir import RunDir
from tests.conftest import make_rows, write_jsonl

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


def test_credentials_hint_is_never_cut_mid_word():
    from budgetft.cloud.errors import NoCredentials, first_line

    text = ("Your default credentials were not found. To set up Application Default Credentials, see "
            "https://cloud.google.com/docs/authentication/external/set-up-adc for more information.")
    assert "for more information." in str(NoCredentials(first_line(text)))
    short = first_line("word " * 100, 42)
    assert short.endswith(" …") and all(w == "word" for w in short[:-2].split())


def test_a_huge_budget_plans_quickly_and_prints_plain_dollars(tiny_job_file):
    """$1e9 once planned 6,119 trials and never printed; the cap printed as $1E+9."""
    proc = subprocess.run(
        [sys.executable, "-m", "budgetft", "plan", str(tiny_job_file), "--budget", "1e9", "--price-per-hour", "1", "--no-calibrate"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "E+" not in proc.stdout + proc.stderr and "$1000000000" in proc.stdout


def test_plans_are_bounded_in_size():
    from budgetft.planner import MAX_TRIALS_PER_METHOD, Costs, MethodRate, plan_budget

    rates = {"lora": MethodRate("lora", 1.0, 8.0), "bitfit": MethodRate("bitfit", 0.5, 16.0)}
    plan = plan_budget(Decimal("1e12"), Decimal(0), Decimal(1), rates, Costs(5.0, 10.0, 10.0), max_steps=300)
    assert all(m.trials <= MAX_TRIALS_PER_METHOD for m in plan.methods)


def test_a_malformed_jsonl_line_is_named_by_its_line(tiny_job_data, tmp_path):
    from budgetft.data import DataError
    from budgetft.spec import validate_job
    from budgetft.task import prepare_task

    lines = [json.dumps(r) for r in make_rows(60)]
    lines[50] = lines[50][:-1]  # line 51 loses its closing brace
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    tiny_job_data["data"]["files"]["train"] = str(bad)
    with pytest.raises(DataError) as err:
        prepare_task(validate_job(tiny_job_data))
    assert "line 51," in str(err.value) and "line 1 " not in str(err.value)


def test_a_directory_given_as_a_data_file(tiny_job_data, tmp_path):
    from budgetft.data import DataError
    from budgetft.spec import validate_job
    from budgetft.task import prepare_task

    folder = tmp_path / "data_dir"
    folder.mkdir()
    tiny_job_data["data"]["files"]["train"] = str(folder)
    with pytest.raises(DataError) as err:
        prepare_task(validate_job(tiny_job_data))
    assert "is a directory" in str(err.value) and "not found" not in str(err.value)


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


def test_class_bias_fit_stays_finite_on_three_classes():
    """A label word far less likely than the others for every row: plain Newton jumped by
    thousands of nats (+4844, -6875, +2031) and every prediction became one class."""
    from budgetft.scoring.class_bias import fit

    rng = np.random.default_rng(0)
    n = 64
    labels = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    scores = np.stack([np.full(n, -2.0), np.full(n, -3.0), np.full(n, -22.0)], axis=1) + rng.normal(0, 0.5, (n, 3))
    b = fit(scores, labels)
    assert np.abs(b).max() < 30
    z = scores + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    # At the optimum the mean predicted probability of each class is its share of the labels.
    assert np.allclose(p.mean(axis=0), np.bincount(labels, minlength=3) / n, atol=0.01)


def test_one_contended_calibration_does_not_poison_the_stored_rates(tiny_job_data, monkeypatch):
    from budgetft.planner.rates import store_rates, stored_rates
    from budgetft.spec import validate_job
    from budgetft.task import prepare_task

    task = prepare_task(validate_job(tiny_job_data))

    def measured(s):
        return {"lora": {"seconds_per_step": s, "examples_per_s": 8 / s, "peak_memory_mb": 100.0, "trainable_params": 10}}

    store_rates(task.job, "cpu", measured(2.9), 10.0)
    store_rates(task.job, "cpu", measured(14.0), 2.0)  # two runs at once on two cores
    rates, eval_rate = stored_rates(task.job, "cpu", ["lora"])
    assert rates["lora"].seconds_per_step == pytest.approx(2.9) and eval_rate == pytest.approx(10.0)
    store_rates(task.job, "cpu", measured(3.1), 9.0)
    assert stored_rates(task.job, "cpu", ["lora"])[0]["lora"].seconds_per_step == pytest.approx(3.1)  # the median


def test_the_check_before_spending_is_the_plans_own_arithmetic_with_a_margin(tiny_job_data, tmp_path, monkeypatch):
    """A budget that the stored rates barely allow is refused before spending, since the plan
    after calibration on a machine a little slower than stored would refuse it (once: 35-73%
    of the cap spent, then exit 0 and "no trials")."""
    from budgetft.planner import BudgetTooSmall, costs
    from budgetft.planner.inputs import budget_check
    from budgetft.planner.rates import store_rates
    from budgetft.spec import validate_job
    from budgetft.task import prepare_task
    from budgetft.telemetry.device import device_name

    task = prepare_task(validate_job(tiny_job_data))
    store_rates(task.job, device_name(), {"lora": {"seconds_per_step": 1.0, "examples_per_s": 8.0, "peak_memory_mb": 1.0, "trainable_params": 1}}, 20.0)
    price = Decimal("36")
    monkeypatch.setattr(costs, "busy_slowdown", lambda margin=costs.PRECHECK_MARGIN: 1.0)
    minimum = None
    try:
        budget_check({task.job.model.name: task}, task.job, Decimal("0.01"), Decimal(0), price)
    except BudgetTooSmall as exc:
        minimum = exc.minimum
    assert minimum is not None
    budget_check({task.job.model.name: task}, task.job, minimum, Decimal(0), price)  # the stored rates alone approve it
    monkeypatch.setattr(costs, "busy_slowdown", lambda margin=costs.PRECHECK_MARGIN: margin)
    with pytest.raises(BudgetTooSmall):
        budget_check({task.job.model.name: task}, task.job, minimum, Decimal(0), price)


def test_ray_errors_in_words():
    from budgetft.tune.tracking import ray_error_in_words

    assert "lack of memory" in ray_error_in_words("ray.exceptions.OutOfMemoryError: Task was killed due to the node running low on memory.")
    assert "worker process died" in ray_error_in_words("ray.exceptions.ActorDiedError: The actor died unexpectedly before finishing this task.")
    assert ray_error_in_words("") == "the trial's process failed (no error was recorded)"
