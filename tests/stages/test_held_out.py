"""The held-out test (issue 13): the evaluation split is cut into selection rows and test rows
that no decision sees; the winner is chosen on the selection rows, scored once on the test rows
against both baselines there, and that is the report's headline. With a learning curve for the
job, the plan is prior-guided: a small budget buys one trial long enough to learn, which keeps
its last step for the test."""

import json
from decimal import Decimal

import pytest
import yaml
from typer.testing import CliRunner

from budgetft.cli import app
from budgetft.money.ledger import read_charges
from budgetft.rundir import RunDir

runner = CliRunner()
pytestmark = pytest.mark.slow


def job_file(tiny_job_data, tmp_path, methods, test_rows=30, limit=20, max_steps=30):
    tiny_job_data["methods"] = methods
    tiny_job_data["train"].update(max_steps=max_steps, eval_every=10)
    tiny_job_data["eval"] = {"test_rows": test_rows, "limit": limit, "batch_size": 8}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(tiny_job_data))
    return path


def test_the_winner_is_chosen_on_selection_rows_and_reported_on_test_rows(tiny_job_data, tmp_path):
    job = job_file(tiny_job_data, tmp_path, {"full": {"learning_rate": [3e-3, 1e-7]}})
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", str(job), "--budget", "6", "--price-per-hour", "36", "--out", str(out)])
    assert result.exit_code == 0, result.output
    run = RunDir(out)
    test = run.test()
    # The rows: 30 test rows, 20 selection rows, disjoint, the baselines scored on the test rows.
    assert test["rows"] == 30 and run.baselines()["test"]["rows"] == 30 and run.baselines()["majority"]["n"] == 20
    good = next(t for t in run.trials() if t.config["learning_rate"] == 3e-3)
    assert test["winner"] == good.trial_id and test["chosen_by"] == "selection accuracy"
    assert test["metrics"]["n"] == 30 and test["majority"]["n"] == 30 and test["zero_shot"]["n"] == 30
    assert test["vs_majority"]["lift_points"] == pytest.approx(100 * (test["metrics"]["accuracy"] - test["majority"]["accuracy"]), abs=0.01)
    assert test["vs_majority"]["verdict"] in ("better", "not_significant", "worse")
    # The test ran after training, inside the cap (on the tiny model it fits in prepaid time).
    charges = read_charges(run.ledger)
    assert charges[-1].total <= Decimal("6") and test["metrics"]["seconds"] >= 0
    assert test["at"] >= max(t.ended for t in run.trials())
    report = (out / "report.md").read_text()
    assert "**Held-out test:**" in report and f"on 30 held-out test rows" in report and "seen by no decision" in report
    doc = json.loads((out / "report.json").read_text())
    assert doc["test"]["winner"] == good.trial_id and "correct" not in doc["test"]["metrics"]


def test_a_small_budget_with_a_learning_curve_buys_one_long_trial(tiny_job_data, tmp_path):
    from budgetft.planner import curves

    model = tiny_job_data["model"]["name"]
    # Learns after ~12 steps of 8 rows and keeps improving to 400 steps.
    curves.remember(model, "tiny", "full", [(80, 1.0), (800, 8.0), (3200, 14.0)], rows=400)
    job = job_file(tiny_job_data, tmp_path, {"full": {"learning_rate": {"loguniform": [1e-3, 1e-2]}}, "bitfit": {}}, max_steps=400)
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", str(job), "--budget", "0.90", "--price-per-hour", "36", "--out", str(out)])
    assert result.exit_code == 0, result.output
    run = RunDir(out)
    plan = run.plan()
    assert "buys one full trial of" in result.output and "forecast:" in result.output
    assert plan["forecast"]["method"] == "full" and plan["forecast"]["low_points"] <= plan["forecast"]["lift_points"]
    assert "bitfit" in plan["dropped"] and "no learning curve" in plan["dropped"]["bitfit"]
    trials = run.trials()
    # The first trial is the job's default, planned long (to max_steps when the calibrated
    # step allows) and scored once at its end on the selection rows; on a busy machine its
    # slower steps may meet the cap's reserve first, and then it keeps its last step. Money
    # left over buys later rounds of configurations sampled around it, compared on the same rows.
    first = trials[0]
    # (A trial the money stopped before any evaluation keeps no weights: it can never win.)
    assert first.max_steps >= 14 and (run.has_weights(first.trial_id) or not first.evals)
    # the round's only trial may stretch to what the money buys, up to the job's max_steps
    assert plan["trials"][0]["extend_to"] == 400 and first.steps <= 400
    # Scored once: at its end (the planned one, or where the money moved it on a busy machine), or
    # at the last step the money paid for together with an evaluation (where it then stopped: the
    # cap never lands between its last steps and it).
    end = (first.end_moved or {}).get("to") or first.max_steps
    assert all(len(t.evals) <= 1 for t in trials)
    assert [e["step"] for e in first.evals] in ([end], [first.steps], [])
    assert first.evals or first.status == "stopped_by_cap", result.output
    assert set(json.loads(run.calibration_json.read_text())["methods"]) == {"full"}  # only what the plan may use
    test = run.test()
    winner = run.winner()  # never a trial that was not evaluated
    assert test["winner"] == (winner.trial_id if winner else None) and test.get("chosen_by") in (None, "selection accuracy")
    assert "Forecast" in (out / "report.md").read_text() or winner is None  # the forecast is set beside the winner's test
    # The run's selection-row scores join this machine's curve for the next plan (its test rows do
    # not): each trial that ran its schedule to its end adds its last evaluation, at the end it
    # reached (read from its record, not from the plan), and its pace against the plan.
    runs = curves._read_store()[curves.key(model, "tiny", "full")]
    finished = [t for t in run.trials() if t.evals and t.status == "finished"]
    assert len(runs) == min(curves.KEPT_RUNS, 1 + len(finished))
    kept = finished[-(len(runs) - 1):] if len(finished) < curves.KEPT_RUNS else finished[-len(runs):]
    if len(finished) < curves.KEPT_RUNS:
        assert runs[0]["points"][-1][0] == 3200  # the earlier run, still kept
    assert [run_["points"] for run_ in runs[len(runs) - len(kept):]] == [[[t.evals[-1]["step"] * 8, pytest.approx(run_["points"][0][1])]] for t, run_ in zip(kept, runs[len(runs) - len(kept):])]
    assert all(len(run_["pace"]) == 1 for run_ in runs[len(runs) - len(kept):])


def test_trials_of_a_run_share_the_frozen_blocks_states(tiny_job_data, tmp_path):
    """last_k trains the top block of the tiny model's two: each row's frozen states are computed
    once in the run, by whichever trial meets the row first, and the run's folder of states is
    removed when the run finishes."""
    job = job_file(tiny_job_data, tmp_path, {"last_k": {"k": [1], "learning_rate": [3e-3, 1e-3]}})
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", str(job), "--budget", "6", "--price-per-hour", "36", "--out", str(out)])
    assert result.exit_code == 0, result.output
    run = RunDir(out)
    trials = sorted(run.trials(), key=lambda t: t.started)
    assert len(trials) == 2 and all(t.frozen_prefix["first_trained_block"] == 1 for t in trials)
    first, second = (t.frozen_prefix for t in trials)
    assert first["rows_computed"] > 0
    assert second["rows_reused"] > 0
    if trials[1].steps <= trials[0].steps:  # the same rows in the same order, all stored by the first
        assert second["rows_computed"] == 0
    else:  # it went further: only the rows past the first trial's last step are new
        assert second["rows_computed"] <= (trials[1].steps - trials[0].steps) * 8
    assert not run.frozen_states.exists()
    assert run.run().status == "finished"
