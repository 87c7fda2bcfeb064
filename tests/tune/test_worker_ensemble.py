"""An ensemble's evaluations (PET: each row scored once per member) are announced to the meter,
and kept time for by Worker.horizon, at the time per member times the members that will score:
an evaluation late in a PET trial scores more members than the one before it."""

import time
from types import SimpleNamespace

from budgetft.scoring import ensemble
from budgetft.files import write_json
from budgetft.rundir import RunDir, TrialRecord
from budgetft.tune import worker as W


def make_worker(tmp_path, method="pet", eval_s=30.0, passes=3):
    run = RunDir(tmp_path)
    spec = {"trial_id": f"t001-{method}", "method": method, "config": {}, "max_steps": 1000, "grace": 100, "eval_steps": [1000], "eval_s": eval_s}
    if passes > 1:
        spec["eval_passes"] = passes
    w = W.Worker(spec, {"run_dir": str(tmp_path)}, run, TrialRecord(trial_id=spec["trial_id"], method=method, max_steps=1000))
    w.folder.mkdir(parents=True, exist_ok=True)
    write_json(run.meter_json, {"paid_until": time.time() + 1e6, "heartbeat": time.time()})
    return w, run


def with_members(w, n):
    model = SimpleNamespace()
    model.__dict__[ensemble.MEMBERS] = [(f"pattern{k}", k) for k in range(n)]
    w.model = model


def announced(w) -> float:
    return W.read_phase(w.folder)[1]


def fake_clock(monkeypatch):
    now = {"t": 1000.0}
    monkeypatch.setattr(W.time, "perf_counter", lambda: now["t"])
    return now


def test_an_evaluation_is_announced_for_the_members_that_will_score_it(tmp_path, monkeypatch):
    w, _ = make_worker(tmp_path, eval_s=30.0, passes=3)
    with_members(w, 1)
    assert w.may_continue("evaluation") and announced(w) == 10.0  # the plan's 30 s is for three members
    now = fake_clock(monkeypatch)
    w.on_phase("evaluating")
    now["t"] += 4.0  # one member scored the selection rows in 4 s
    w.on_phase("training")
    assert w.eval_s == 4.0 and w.eval_member_s == 4.0
    with_members(w, 3)
    assert w.may_continue("evaluation") and announced(w) == 12.0  # three members: three times as long
    w.on_phase("evaluating")
    assert announced(w) == 12.0
    now["t"] += 15.0
    w.on_phase("training")
    assert w.eval_member_s == 5.0


def test_labelling_is_announced_as_an_evaluation_and_not_timed_as_one(tmp_path, monkeypatch):
    w, _ = make_worker(tmp_path, eval_s=30.0, passes=3)
    with_members(w, 3)
    now = fake_clock(monkeypatch)
    assert w.may_continue("evaluation") and announced(w) == 30.0
    w.on_phase("labelling")
    assert W.read_phase(w.folder) == ("evaluating", 30.0)  # paid as an evaluation
    now["t"] += 50.0
    w.on_phase("training")
    assert w.eval_member_s == 0.0 and w.eval_s == 0.0


def test_the_horizon_keeps_time_for_an_evaluation_by_every_member_of_the_last_phase(tmp_path):
    w, run = make_worker(tmp_path, eval_s=30.0, passes=3)
    with_members(w, 1)
    w.eval_s, w.eval_member_s = 10.0, 10.0  # the last evaluation: one member, 10 s
    write_json(run.meter_json, {"paid_until": time.time(), "money_ends": time.time() + 200.5})
    # 194.5 s less 1.25 x 30 s (three members score the evaluation at the new end): 157 s, 142 steps
    assert w.horizon(300, 1.0, 1000) == 300 + int(0.97 * 142)


def test_a_method_that_is_no_ensemble_is_announced_as_before(tmp_path, monkeypatch):
    w, _ = make_worker(tmp_path, method="lora", eval_s=30.0, passes=1)
    assert "eval_passes" not in w.spec
    assert w.may_continue("evaluation") and announced(w) == 30.0
    now = fake_clock(monkeypatch)
    w.on_phase("evaluating")
    assert announced(w) == 0.0  # no evaluation measured yet, as before
    now["t"] += 7.0
    w.on_phase("training")
    assert w.may_continue("evaluation") and announced(w) == 7.0
    assert w.final_members() == 1
