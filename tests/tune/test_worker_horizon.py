"""Worker.horizon: when the money ends before a trial's planned last step, the trial is told
the last step it can pay for, with time kept for the evaluation there; a round's only trial on
a machine faster than calibrated is told to go further; each move is recorded."""

import time

from budgetft.files import write_json
from budgetft.rundir import RunDir, TrialRecord
from budgetft.tune import worker as W


def make_worker(tmp_path, eval_s=10.0):
    run = RunDir(tmp_path)
    spec = {"trial_id": "t001-full", "method": "full", "config": {}, "max_steps": 1000, "grace": 100, "eval_steps": [1000], "eval_s": eval_s}
    record = TrialRecord(trial_id="t001-full", method="full", max_steps=1000)
    w = W.Worker(spec, {"run_dir": str(tmp_path)}, run, record)
    w.folder.mkdir(parents=True, exist_ok=True)
    return w, run


def test_the_money_moves_the_end_nearer_and_keeps_time_for_the_evaluation(tmp_path):
    w, run = make_worker(tmp_path, eval_s=10.0)
    write_json(run.meter_json, {"paid_until": time.time(), "money_ends": time.time() + 200.5})
    end = w.horizon(300, 1.0, 1000)
    # 200.5 s left, less 6 s slack and 1.25 x 10 s for the evaluation: 182 s at 1.1 s a step
    # buys 165 steps; 97% of them, so that noise does not cut again at the next step
    assert end == 300 + int(0.97 * 165)
    assert w.record.end_moved == {"planned": 1000, "to": end, "at": 300, "step_s": 1.0}
    assert TrialRecord.model_validate_json((w.folder / "trial.json").read_text()).end_moved["to"] == end


def test_a_trial_the_money_covers_is_left_alone(tmp_path):
    w, run = make_worker(tmp_path)
    write_json(run.meter_json, {"paid_until": time.time(), "money_ends": time.time() + 10_000.0})
    assert w.horizon(300, 1.0, 1000) == 1000 and w.record.end_moved is None
    write_json(run.meter_json, {"paid_until": time.time(), "money_ends": None})  # free time
    assert w.horizon(300, 1.0, 1000) == 1000


def test_no_time_left_ends_at_this_step(tmp_path):
    w, run = make_worker(tmp_path)
    write_json(run.meter_json, {"paid_until": time.time(), "money_ends": time.time() + 1.0})
    assert w.horizon(300, 1.0, 1000) == 300


def test_a_shortened_trial_that_reached_and_evaluated_its_new_end_is_finished(tmp_path):
    cut = {"planned": 1000, "to": 800, "at": 300, "step_s": 1.0}
    record = TrialRecord(trial_id="t", max_steps=1000, steps=800, end_moved=cut, evals=[{"step": 800, "accuracy": 0.7}])
    record.settle(budget_stopped=True)  # Tune's stop-all after its last report
    assert record.status == "finished"
    early = TrialRecord(trial_id="u", max_steps=1000, steps=500, end_moved=cut)
    early.settle(budget_stopped=True)
    assert early.status == "stopped_by_cap"
    # At its new end, but the evaluation there was refused (the cap came first): not finished.
    refused = TrialRecord(trial_id="v", max_steps=1000, steps=800, end_moved=cut, stop_reason="the cap", stopped_by_meter=True)
    refused.settle(budget_stopped=True)
    assert refused.status == "stopped_by_cap"


def test_once_the_meter_says_stop_nothing_is_cut(tmp_path):
    w, run = make_worker(tmp_path)
    write_json(run.meter_json, {"paid_until": time.time(), "money_ends": time.time(), "stop": True})
    assert w.horizon(300, 1.0, 1000) == 1000 and w.record.end_moved is None


def test_rung_evaluations_before_the_new_end_are_paid_for(tmp_path):
    w, run = make_worker(tmp_path, eval_s=10.0)
    w.spec["eval_steps"] = [100, 350, 400, 1000]  # two rungs after step 300 and before its end
    write_json(run.meter_json, {"paid_until": time.time(), "money_ends": time.time() + 200.5})
    # 194.5 s less three evaluations of 12.5 s (350, 400 and the new end's): 157 s, 142 steps
    assert w.horizon(300, 1.0, 1000) == 300 + int(0.97 * 142)


def test_a_missing_meter_leaves_the_plan(tmp_path):
    w, _ = make_worker(tmp_path)
    assert w.horizon(300, 1.0, 1000) == 1000


def test_a_rounds_only_trial_grows_to_what_the_money_buys_up_to_the_jobs_steps(tmp_path):
    w, run = make_worker(tmp_path, eval_s=10.0)
    write_json(run.meter_json, {"paid_until": time.time(), "money_ends": time.time() + 1000.5})
    assert w.horizon(300, 1.0, 1000) == 1000  # no extend_to: a trial that shares the money stays
    w.spec["extend_to"] = 2000
    # 994.5 s less two evaluations of 12.5 s (the new end's, and the planned end's, counted
    # though it moves: the cautious side): 969.5 s at 1.1 s a step buys 881 steps; 97% of them
    assert w.horizon(300, 1.0, 1000) == 300 + int(0.97 * 881)
    assert w.record.end_moved["to"] == 300 + int(0.97 * 881)
    w.spec["extend_to"] = 1060
    assert w.horizon(300, 1.0, 1000) == 1060  # never past the job's max_steps


def test_a_few_percent_more_is_not_worth_moving_for(tmp_path):
    w, run = make_worker(tmp_path, eval_s=0.0)
    w.spec["extend_to"] = 2000
    write_json(run.meter_json, {"paid_until": time.time(), "money_ends": time.time() + 6.5 + 1.1 * 740})
    # 740 steps bought, 97% of them: an end at 1,017, 17 steps more than 1,000, under 5% of
    # the 700 steps left
    assert w.horizon(300, 1.0, 1000) == 1000 and w.record.end_moved is None


def test_near_the_end_a_few_dozen_more_steps_are_worth_moving_for(tmp_path):
    """The margin to grow by shrinks with the steps left: money that buys 30 steps more than
    the end, 150 steps before it, grows it (a fixed 5% of the trial would leave it unspent)."""
    w, run = make_worker(tmp_path, eval_s=0.0)
    w.spec["extend_to"] = 2000
    write_json(run.meter_json, {"paid_until": time.time(), "money_ends": time.time() + 6.5 + 1.1 * 185})
    assert w.horizon(850, 1.0, 1000) == 850 + int(0.97 * 185)  # 1,029
    # 9 steps before that end: 15 steps' money is 5 more, not worth a move; 30 steps' is 20 more
    write_json(run.meter_json, {"paid_until": time.time(), "money_ends": time.time() + 6.5 + 1.1 * 15})
    assert w.horizon(1020, 1.0, 1029) == 1029
    write_json(run.meter_json, {"paid_until": time.time(), "money_ends": time.time() + 6.5 + 1.1 * 30})
    assert w.horizon(1020, 1.0, 1029) == 1020 + int(0.97 * 30)  # 1,049


def test_after_a_cut_the_end_grows_back_only_on_a_clearly_faster_pace(tmp_path):
    """A pace judged early runs slow: a cut is undone when the money buys clearly more again,
    never by the next step's noise."""
    w, run = make_worker(tmp_path, eval_s=10.0)
    w.spec["extend_to"] = 2000
    write_json(run.meter_json, {"paid_until": time.time(), "money_ends": time.time() + 200.5})
    cut = w.horizon(300, 1.0, 1000)
    assert cut < 1000
    assert w.horizon(301, 1.0, cut) == cut  # the same money, one step on: no move
    assert w.horizon(302, 0.98, cut) == cut  # 2% faster: still no move (by 10 steps and 5% of those left at least)
    grown = w.horizon(303, 0.5, cut)  # twice as fast: the money buys twice the steps
    assert grown >= 1.05 * cut and w.record.end_moved["to"] == grown


def test_growing_keeps_the_same_margins_as_cutting(tmp_path):
    w, run = make_worker(tmp_path, eval_s=0.0)
    w.spec["extend_to"] = 5000
    write_json(run.meter_json, {"paid_until": time.time(), "money_ends": time.time() + 6.5 + 1.1 * 2000})
    assert w.horizon(300, 1.0, 1000) == 300 + int(0.97 * 2000)


def test_when_the_money_ends_now_the_weights_are_kept_before_the_last_evaluation(tmp_path, monkeypatch):
    w, run = make_worker(tmp_path, eval_s=10.0)
    saved = []
    monkeypatch.setattr(W, "save_weights", lambda model, spec, path: saved.append(path))
    write_json(run.meter_json, {"paid_until": time.time(), "money_ends": time.time() + 10.0})
    assert w.horizon(684, 2.0, 1277) == 684
    assert saved == [run.weights_dir("t001-full")] and w.record.best_step == 684


def test_a_short_trial_is_evaluated_before_the_money_ends(tmp_path):
    """Issue 27: a 13-step trial, its one evaluation at step 13, and money for ~10 steps on a
    machine slower than planned: the horizon needs 30 steps of pace and never spoke, the cap
    stopped it at step 10 and it was never evaluated. Now the last step the money pays for
    together with an evaluation is evaluated, and the trial stops there."""
    w, run = make_worker(tmp_path, eval_s=2.0)
    w.spec.update(max_steps=13, eval_steps=[13], step_s=1.0)
    w.eval_steps = [13]
    now = time.time()
    # Beyond the 6 s slack and the evaluation's 1.25 x 2 s, 3.2 s are left: not the five steps to
    # the evaluation at 13 (1.1 s each), but two more steps still fit: nothing changes yet.
    write_json(run.meter_json, {"paid_until": now, "money_ends": now + 6 + 2.5 + 2.2 + 1.0})
    w.record.steps = 8
    w.evaluate_before_money_ends(9)
    assert w.eval_steps == [13] and w.last_evaluation is None
    # 1.7 s left: this step and the evaluation fit, two steps would not: step 9 is evaluated, then it stops.
    write_json(run.meter_json, {"paid_until": time.time(), "money_ends": time.time() + 6 + 2.5 + 2.2 - 0.5})
    w.evaluate_before_money_ends(9)
    assert w.eval_steps == [13, 9] and w.last_evaluation == 9
    w.record.steps = 9
    assert w.may_continue("step") is False
    assert "evaluated at step 9 and stopped there" in w.record.stop_reason and w.record.stopped_by_meter


def test_money_that_reaches_the_next_evaluation_changes_nothing(tmp_path):
    w, run = make_worker(tmp_path, eval_s=2.0)
    w.spec.update(max_steps=13, eval_steps=[13], step_s=1.0)
    w.eval_steps = [13]
    write_json(run.meter_json, {"paid_until": time.time(), "money_ends": time.time() + 6 + 2.5 + 1.1 * 5 + 1.0})
    w.evaluate_before_money_ends(9)  # steps 9..13 and the evaluation at 13 are paid for
    assert w.eval_steps == [13] and w.last_evaluation is None
    write_json(run.meter_json, {"paid_until": time.time(), "money_ends": time.time(), "stop": True})
    w.evaluate_before_money_ends(9)  # the cap has spoken: may_continue stops the trial
    assert w.eval_steps == [13]
