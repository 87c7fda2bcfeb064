"""The payment protocol between the driver's meter and its workers: a worker stops for money only
when the meter says the cap is reached, and for a dead driver only when the driver's heartbeat is
stale far beyond any step; a step longer than the prepaid window waits for its payment."""

import json
import threading
import time
from decimal import Decimal

from budgetft.money.ledger import Ledger
from budgetft.files import write_json
from budgetft.rundir import RunDir, TrialRecord
from budgetft.money.machine_meter import (
    DEAD_DRIVER_S,
    METER_FILE,
    MachineMeter,
    payment_for,
    wait_for_payment,
)

PRICE = Decimal("36")  # $0.01 per second


def state(paid_until, heartbeat, stop=False, session=1):
    return {"paid_until": paid_until, "heartbeat": heartbeat, "stop": stop, "reason": "cap" if stop else "", "session": session}


def test_a_step_longer_than_the_window_waits_while_the_driver_is_alive():
    now = 1000.0
    # 3 s prepaid, a 6.4 s step (the busy machine of issue 11), heartbeat a second ago.
    verdict = payment_for(state(now + 3, now - 1), 6.4, 1, now)
    assert not verdict.ok and verdict.wait and not verdict.by_cap
    # Even a meter thread that ran late by half a minute is not a dead driver.
    assert payment_for(state(now - 20, now - 30), 6.4, 1, now).wait


def test_only_a_heartbeat_stale_beyond_the_margin_means_a_dead_driver():
    assert DEAD_DRIVER_S >= 60  # "far beyond any step"
    now = 1000.0
    verdict = payment_for(state(now - 50, now - DEAD_DRIVER_S - 1), 1.0, 1, now)
    assert not verdict.ok and not verdict.wait and not verdict.by_cap
    assert "stopped paying" in verdict.reason


def test_the_cap_and_a_newer_session_stop_at_once():
    now = 1000.0
    capped = payment_for(state(now + 100, now, stop=True), 1.0, 1, now)
    assert not capped.ok and not capped.wait and capped.by_cap
    replaced = payment_for(state(now + 100, now, session=2), 1.0, 1, now)
    assert not replaced.ok and not replaced.wait and "replaced by session 2" in replaced.reason


def test_paid_work_goes():
    now = 1000.0
    assert payment_for(state(now + 10, now), 6.4, 1, now).ok


def test_wait_for_payment_uses_an_injected_clock(tmp_path):
    write_json(tmp_path / METER_FILE, state(100.0, 100.0))
    clock = [100.0]

    def sleep(seconds):
        clock[0] += seconds

    verdict = wait_for_payment(tmp_path, 5.0, 1, clock=lambda: clock[0], sleep=sleep, dead_after=60.0)
    assert not verdict.ok and "stopped paying" in verdict.reason
    assert 160.0 <= clock[0] <= 161.0  # it waited out the margin, not less


def test_a_slow_step_is_paid_for_and_goes_on(tmp_path):
    """A live meter with a 2 s window and a worker about to start a 12 s step: the worker
    announces the step, the meter prepays that far, and the worker goes on (before issue 11 it
    quit: "the driver stopped paying: it stopped or died")."""
    from budgetft.tune.worker import Worker

    ledger = Ledger(tmp_path, "5.00")
    meter = MachineMeter(ledger, PRICE, tmp_path, reserve_usd=Decimal("0.05"), slice_s=1.0, lookahead_s=2.0, minimum_seconds=0)
    run = RunDir(tmp_path)
    folder = run.trial_dir("t001-lora")
    folder.mkdir(parents=True)
    from budgetft.tune.trial_files import read_phase

    meter.needs = lambda: (read_phase(folder) or ("", 0.0))[1]
    meter.start()
    try:
        meter.set_stage("tuning")
        record = TrialRecord(trial_id="t001-lora", steps=3)
        worker = Worker({"trial_id": "t001-lora", "grace": 1}, {"session": 1}, run, record)
        worker.step_s = 12.0  # its last step took 12 s; the window is 2 s
        t0 = time.time()
        assert worker.may_continue("step"), record.stop_reason
        assert time.time() - t0 < 10  # waited for the payment, not for the step
        paid_until = json.loads((tmp_path / METER_FILE).read_text())["paid_until"]
        assert paid_until >= time.time() + 11  # the whole step is paid before it starts
    finally:
        meter.set_stage("report")
        meter.close()


def test_a_dead_meter_thread_would_stop_the_worker_but_a_busy_one_does_not(tmp_path):
    """The meter renews its heartbeat from its own thread even while the driver's main thread
    is busy; a worker asking meanwhile is paid."""
    ledger = Ledger(tmp_path, "5.00")
    meter = MachineMeter(ledger, PRICE, tmp_path, reserve_usd=Decimal("0.05"), slice_s=1.0, lookahead_s=2.0, minimum_seconds=0).start()
    try:
        busy = threading.Thread(target=lambda: sum(i * i for i in range(3_000_000)))
        busy.start()
        first = json.loads((tmp_path / METER_FILE).read_text())["heartbeat"]
        time.sleep(1.5)
        assert json.loads((tmp_path / METER_FILE).read_text())["heartbeat"] > first
        assert wait_for_payment(tmp_path, 1.0, 1, dead_after=5.0).ok
        busy.join()
    finally:
        meter.close()


def test_the_tracker_reports_each_workers_announced_need(tmp_path):
    from budgetft.tune.tracking import TrialTracker
    from budgetft.tune.worker import write_phase

    run = RunDir(tmp_path)
    tracker = TrialTracker(run)
    tracker.running = {"t001-lora", "t002-ia3"}
    write_phase(run.trial_dir("t001-lora"), "training", 6.4)
    write_phase(run.trial_dir("t002-ia3"), "evaluating", 21.0)
    assert tracker.phases() == {"t001-lora": "training", "t002-ia3": "evaluating"}
    assert tracker.needs() == 21.0
