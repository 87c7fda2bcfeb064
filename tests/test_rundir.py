"""The run directory's records: a trial's final status is settled by one rule, by its worker when
Ray Tune stops it or by the driver's tracker when the worker could not, so the last writer cannot
undo the first (a worker stopped at its last report once overwrote "finished" with "running");
records keep fields they do not know, and read as mappings."""

import pytest

from budgetft.money.ledger import Ledger
from budgetft.rundir import RunDir, RunInfo, TrialRecord


def record(steps, max_steps=39, status="running", **extra):
    return TrialRecord(trial_id="t001-lora", status=status, steps=steps, max_steps=max_steps, **extra)


@pytest.mark.parametrize(
    "steps, kwargs, extra, expected",
    [
        (39, {"budget_stopped": False}, {}, "finished"),  # ASHA's stop at the last report (rung_time = max_t)
        (39, {"budget_stopped": True}, {}, "finished"),  # every planned step was done and paid for
        (13, {"budget_stopped": False}, {}, "stopped_early"),  # cut at a rung
        (20, {"budget_stopped": True}, {}, "stopped_by_cap"),
        (20, {"budget_stopped": False, "interrupted": True}, {}, "interrupted"),
        (20, {"budget_stopped": False, "error": "boom"}, {}, "failed"),
        # The worker stopped itself: the meter said stop (the cap), or nobody paid (the driver died).
        (4, {"budget_stopped": False}, {"stop_reason": "cap reached", "stopped_by_meter": True}, "stopped_by_cap"),
        (4, {"budget_stopped": False}, {"stop_reason": "the driver stopped paying", "stopped_by_meter": False}, "interrupted"),
    ],
)
def test_settle(steps, kwargs, extra, expected):
    r = record(steps, **extra)
    r.settle(**kwargs)
    assert r.status == expected and r.ended
    if expected == "failed":
        assert r.error == "boom"


def test_a_settled_status_is_never_changed():
    r = record(13, status="finished")
    r.settle(budget_stopped=True, error="late")
    assert r.status == "finished" and r.ended is None and r.error is None


def test_tracker_and_worker_agree_whoever_writes_last(tmp_path):
    run = RunDir(tmp_path)
    run.write_trial(record(39))
    assert run.finalize_trial("t001-lora", budget_stopped=False).status == "finished"
    # The worker's own write after the tracker's: it settles the same record the same way.
    late = record(39)
    late.settle(budget_stopped=False)
    run.write_trial(late)
    assert run.trial("t001-lora").status == "finished"


def test_finalize_takes_the_trials_cost_from_the_ledger(tmp_path):
    run = RunDir(tmp_path)
    run.write_trial(record(5))
    with Ledger(tmp_path, "1") as ledger:
        ledger.charge("0.25", "training", "5 s", trial="t001-lora")
        ledger.charge("0.10", "training", "2 s", trial="t002-ia3")
    settled = run.finalize_trial("t001-lora", budget_stopped=True)
    assert settled.status == "stopped_by_cap" and settled.cost_usd == "0.250000"
    assert run.finalize_trial("t404-none", budget_stopped=False) is None


def test_records_keep_unknown_fields_and_read_as_mappings(tmp_path):
    run = RunDir(tmp_path)
    run.write_run(RunInfo(schema=1, status="running", cap_usd="1.000000", future_field={"a": 1}))
    info = run.run()
    assert info["schema"] == 1 and info.get("future_field") == {"a": 1} and info.status == "running"
    assert "cap_usd" in info and info.get("nope", "default") == "default"
    with pytest.raises(KeyError):
        info["nope"]
    trial = record(3, evals=[{"step": 3, "accuracy": 0.5}], startup_s=12.5)
    run.write_trial(trial)
    back = run.trials()[0]
    assert back.evals[0]["accuracy"] == 0.5 and back["startup_s"] == 12.5 and back.to_json()["steps"] == 3
