"""`budgetft run` end to end on the tiny model under Ray Tune: baselines, calibration, plan,
ASHA stopping a weak trial early, the spend staying under the cap, and the run directory.

About two minutes: Ray's start and each trial's fresh worker process dominate.
"""

import json
from decimal import Decimal

import pytest
import yaml
from typer.testing import CliRunner

from budgetft.cli import app
from budgetft.money.ledger import read_charges
from budgetft.rundir import TRIAL_STATUSES, RunDir

runner = CliRunner()


@pytest.fixture
def asha_job(tiny_job_data, tmp_path):
    # One good learning rate and one that learns nothing: the first trial (the space's first
    # choice) runs to the end; ASHA must stop the second at its first rung.
    tiny_job_data["methods"] = {"full": {"learning_rate": [3e-3, 1e-7]}}
    tiny_job_data["train"]["max_steps"] = 45
    tiny_job_data["eval"]["limit"] = 40
    path = tmp_path / "asha.yaml"
    path.write_text(yaml.safe_dump(tiny_job_data))
    return path


@pytest.mark.slow
def test_run_under_the_cap_with_asha(asha_job, tmp_path):
    out = tmp_path / "run"
    # $36/h = 1 cent a second: $6 buys ten minutes, more than the two trials need; the run
    # ends when its trials do.
    result = runner.invoke(app, ["run", str(asha_job), "--budget", "6", "--price-per-hour", "36", "--out", str(out)])
    assert result.exit_code == 0, result.output
    run = RunDir(out)
    info = run.run()
    assert info["status"] == "finished" and info["cap_usd"] == "6.000000"
    charges = read_charges(run.ledger)
    total = sum(c.amount for c in charges)
    assert total == charges[-1].total <= Decimal("6")
    # Labels are as fine as a prepaid slice (seconds): the tiny model's stages can fit inside
    # one, so only the money is checked exactly. Every trial's time is attributed to it.
    assert {c.category for c in charges} <= {"baselines", "calibration", "training", "evaluation", "overhead", "report", "minimum"}
    # The report was written inside paid time (a slice is labelled "report" only when the
    # report outlasts the time already prepaid, so the label alone would be timing-dependent).
    assert json.loads((out / "meter.json").read_text())["paid_until"] >= (out / "report.md").stat().st_mtime
    # Slices are labelled with the trials running when they were bought: a trial that lives
    # only seconds (the tiny model's stopped one) can run entirely in time prepaid under the
    # previous label. Every label names a real trial; the long trial's cost is checked below.
    assert {c.trial for c in charges if c.trial} <= {t["trial_id"] for t in run.trials()}
    assert set(run.baselines()) == {"majority", "zero_shot"}
    assert set(json.loads(run.calibration_json.read_text())["methods"]) == {"full"}
    plan = run.plan()
    assert plan["trials"] and (out / "job.yaml").exists()

    trials = {t["config"]["learning_rate"]: t for t in run.trials()}
    assert all(t["status"] in TRIAL_STATUSES for t in trials.values())
    good, bad = trials[3e-3], trials[1e-7]
    assert good["status"] == "finished" and good["steps"] == good["max_steps"]
    assert bad["status"] == "stopped_early" and bad["steps"] < bad["max_steps"]
    best = max(e["accuracy"] for e in good["evals"])
    assert best > run.baselines()["majority"]["accuracy"]
    assert (run.trial_dir(good["trial_id"]) / "adapter").is_dir()  # the best weights survive
    # Each trial records the class bias it fitted before step 1, the ASHA-stopped one too.
    assert all(len(t["class_bias"]) == 2 and abs(sum(t["class_bias"])) < 1e-5 for t in trials.values())
    assert Decimal(good["cost_usd"]) > 0
    assert "ledger total" in result.output
    # Without a terminal, each trial event is a plain line with the spend so far.
    assert f"{bad['trial_id']}: stopped early after {bad['steps']} steps  [spent $" in result.output
    assert f"{good['trial_id']}: started" in result.output


def test_budget_errors_come_before_any_spending(tiny_job_file, tmp_path):
    for bad, message in (("0", "must be more than $0"), ("-1", "must be more than $0"), ("abc", "is not a number")):
        result = runner.invoke(app, ["run", str(tiny_job_file), f"--budget={bad}", "--price-per-hour", "2.86", "--out", str(tmp_path / "r")])
        assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "r").exists()
    result = runner.invoke(app, ["run", str(tiny_job_file), "--budget", "0.0001", "--price-per-hour", "2.86", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "too small for one useful trial: the minimum is $" in result.output
    assert not (tmp_path / "r").exists()
    result = runner.invoke(app, ["plan", str(tiny_job_file), "--budget", "0.0001", "--price-per-hour", "2.86", "--no-calibrate"])
    assert result.exit_code == 2 and "the minimum is $" in result.output
    # With calibration on, the same budget is refused before any step is measured.
    from budgetft.paths import cache_root

    result = runner.invoke(app, ["plan", str(tiny_job_file), "--budget", "0.0001", "--price-per-hour", "2.86"])
    assert result.exit_code == 2 and "the minimum is $" in result.output
    assert not (cache_root() / "rates.json").exists()  # nothing was calibrated


def test_run_needs_a_price_on_a_cpu_machine(tiny_job_file):
    result = runner.invoke(app, ["run", str(tiny_job_file), "--budget", "1"])
    assert result.exit_code == 2 and "--price-per-hour" in result.output


def test_money_that_asha_frees_buys_another_round(tiny_job_data, tmp_path, monkeypatch):
    """A continuous space: when a round's trials are done, the money left is planned again, with
    new configurations, until no useful trial fits; the spend stays under the cap.

    The rounds' trials are simulated at the plan's own rates, not run: each trains a third of its
    planned steps (ASHA stopped it) and the ledger is charged exactly that time. On a machine
    kept busy by other work, real trials' start-up once ate the second round's money, so the
    test asserted this machine's speed instead of the planner's rounds."""
    from budgetft.money.usd import seconds_to_usd
    from budgetft.rundir import TrialRecord, utc_now
    from budgetft.stages.tune import TuneSession

    price = Decimal(36)

    def simulated_round(self, plan, specs):
        for i, spec in enumerate(specs):
            steps = max(1, spec["max_steps"] // 3)
            seconds = steps * spec["step_s"] + spec["eval_s"]
            self.meter.ledger.charge(seconds_to_usd(seconds, price), "training", f"{spec['trial_id']}: simulated", trial=spec["trial_id"])
            self.run.write_trial(TrialRecord(
                trial_id=spec["trial_id"], model=spec["model"], method=spec["method"], config=spec["config"], max_steps=spec["max_steps"],
                steps=steps, started=utc_now(), ended=utc_now(), status="stopped_early", stop_reason="ASHA stopped it at its first rung",
                evals=[{"step": steps, "accuracy": 0.55 + 0.01 * i, "balanced_accuracy": 0.5, "eval_loss": 0.69, "n": 20}],
            ))

    monkeypatch.setattr(TuneSession, "round", simulated_round)
    tiny_job_data["methods"] = {"bitfit": {"learning_rate": {"loguniform": [1e-3, 1e-1]}}}
    # Trials long enough that the cap buys a few dozen of them, not hundreds: the rounds are
    # what is tested, and each trial costs the report and the planner time.
    tiny_job_data["train"]["max_steps"] = 600
    tiny_job_data["eval"]["limit"] = 20
    job = tmp_path / "rounds.yaml"
    job.write_text(yaml.safe_dump(tiny_job_data))
    out = tmp_path / "run"
    # $36/h = 1 cent a second: 300 s, far more than the fixed costs a busy machine pays.
    result = runner.invoke(app, ["run", str(job), "--budget", "3.00", "--price-per-hour", "36", "--out", str(out)])
    assert result.exit_code == 0, result.output
    run = RunDir(out)
    plan = run.plan()
    assert plan["round"] >= 2 and len(plan["rounds"]) == plan["round"], result.output
    assert "round 2: $" in result.output and "no further round" in result.output
    trials = run.trials()
    assert {t["trial_id"] for t in trials} == {t["trial_id"] for t in plan["trials"]}
    configs = [t["config"]["learning_rate"] for t in trials]
    assert len(set(configs)) == len(configs)  # no configuration is tried twice
    assert sum(c.amount for c in read_charges(run.ledger)) <= Decimal("3.00")


def test_trial_configs_skip_what_was_tried():
    from budgetft.planner.configs import trial_configs

    space = {"learning_rate": {"loguniform": [1e-4, 1e-2]}}
    first = trial_configs(space, "bitfit", 3, seed=0)
    assert first[0]["learning_rate"] == pytest.approx(1e-3)  # the default point leads
    again = trial_configs(space, "bitfit", 3, seed=3, tried=first)
    assert len(again) == 3 and not any(c in first for c in again)
    assert trial_configs({"learning_rate": [1e-3, 1e-2]}, "bitfit", 3, seed=0, tried=[{**first[0], "learning_rate": 1e-3}, {**first[0], "learning_rate": 1e-2}]) == []


def test_ctrl_c_keeps_every_record_and_writes_the_report(tiny_job_file, tmp_path, monkeypatch):
    from budgetft.stages.tune import TuneSession

    def interrupted(self, plan, specs):
        raise KeyboardInterrupt  # what Ctrl-C raises in the driver while trials run

    monkeypatch.setattr(TuneSession, "round", interrupted)
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", str(tiny_job_file), "--budget", "2", "--price-per-hour", "36", "--out", str(out)])
    assert result.exit_code == 130, result.output
    assert "interrupted: stopping trials, keeping every result, writing the report" in result.output
    assert f"budgetft run --resume {out}" in result.output
    run = RunDir(out)
    assert run.run()["status"] == "interrupted" and (out / "report.md").exists()
    assert set(run.baselines()) == {"majority", "zero_shot"} and run.calibration_json.exists()
    charges = read_charges(run.ledger)
    assert charges and charges[-1].total <= Decimal("2")
