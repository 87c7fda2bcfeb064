"""How a trial's final status is settled, by its worker when Ray Tune stops it, or by the
driver's tracker when the worker could not: both apply one rule, so the last writer cannot
undo the first (a worker stopped at its last report once overwrote "finished" with
"running")."""

import json

import pytest

from budgetft.rundir import RunDir, write_json
from budgetft.runner.tracking import finalize_trial
from budgetft.runner.trainable import settle_status


def record(steps, max_steps=39, status="running"):
    return {"trial_id": "t001-lora", "status": status, "steps": steps, "max_steps": max_steps, "ended": None}


@pytest.mark.parametrize(
    "steps, kwargs, expected",
    [
        (39, {"budget_stopped": False}, "finished"),  # ASHA's stop at the last report (rung_time = max_t)
        (39, {"budget_stopped": True}, "finished"),  # every planned step was done and paid for
        (13, {"budget_stopped": False}, "stopped_early"),  # cut at a rung
        (20, {"budget_stopped": True}, "stopped_by_cap"),
        (20, {"budget_stopped": False, "interrupted": True}, "interrupted"),
        (20, {"budget_stopped": False, "error": "boom"}, "failed"),
    ],
)
def test_settle_status(steps, kwargs, expected):
    r = record(steps)
    settle_status(r, **kwargs)
    assert r["status"] == expected and r["ended"]


def test_a_settled_status_is_never_changed():
    r = record(13, status="finished")
    settle_status(r, budget_stopped=True)
    assert r["status"] == "finished" and r["ended"] is None


def test_tracker_and_worker_agree_whoever_writes_last(tmp_path):
    run = RunDir(tmp_path)
    folder = run.trial_dir("t001-lora")
    folder.mkdir(parents=True)
    write_json(folder / "trial.json", record(39))
    assert finalize_trial(run, "t001-lora", budget_stopped=False)["status"] == "finished"
    # The worker's own write after the tracker's: it settles the same record the same way.
    late = record(39)
    settle_status(late, budget_stopped=False)
    write_json(folder / "trial.json", late)
    assert json.loads((folder / "trial.json").read_text())["status"] == "finished"
