"""The machine meter: time is paid before it is used, a kill -9 loses no spend, a resumed
session continues from the true total and never passes the cap."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from decimal import Decimal

import pytest

from budgetft.money.ledger import Ledger, read_charges
from budgetft.money.machine_meter import MachineMeter, payment_for, wait_for_payment, worker_may_continue

PRICE = Decimal("36")  # $0.01 per second: easy arithmetic


class FakeClock:
    """Wall-clock seconds that move only when the test says: no test here waits on real time."""

    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float, meter: MachineMeter, step: float = 0.5) -> None:
        """Move time on, paying as the meter's thread would (every `step` seconds)."""
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            meter.top_up()


def test_time_is_prepaid_and_published(tmp_path):
    clock = FakeClock()
    ledger = Ledger(tmp_path, "1.00")
    meter = MachineMeter(ledger, PRICE, tmp_path, reserve_usd=Decimal("0.05"), slice_s=1.0, lookahead_s=2.0, clock=clock).start(thread=False)
    meter.set_stage("baselines")
    clock.advance(1.5, meter)
    state = json.loads((tmp_path / "meter.json").read_text())
    assert state["paid_until"] >= clock.now + 2.0 and state["heartbeat"] == clock.now
    assert payment_for(state, 0.5, None, clock.now).ok
    meter.close()
    ledger.refresh()
    assert ledger.spent == Decimal("0.60")  # the one-minute minimum, at $0.01/s: 4 s used, 60 s billed
    assert {c.category for c in ledger.records} >= {"baselines", "overhead"}


def test_stops_before_eating_the_reserve(tmp_path):
    clock = FakeClock()
    ledger = Ledger(tmp_path, "0.10")
    meter = MachineMeter(ledger, PRICE, tmp_path, reserve_usd=Decimal("0.05"), slice_s=1.0, lookahead_s=1.0, minimum_seconds=0, clock=clock).start(thread=False)
    meter.set_stage("tuning")
    clock.advance(10, meter)
    assert meter.stopped.is_set() and "reserve" in meter.reason
    ok, why, by_meter = worker_may_continue(tmp_path)
    assert not ok and "reserve" in why and by_meter
    ledger.refresh()
    assert ledger.spent + Decimal("0.05") <= ledger.cap
    assert ledger.spent == Decimal("0.05")  # 5 s bought, the sixth would have eaten the reserve
    meter.set_stage("report")  # the report may use the reserve
    clock.advance(3, meter)
    meter.close()
    ledger.refresh()
    assert Decimal("0.05") < ledger.spent <= ledger.cap


def test_running_trials_share_each_slice(tmp_path):
    clock = FakeClock()
    ledger = Ledger(tmp_path, "5.00")
    meter = MachineMeter(ledger, PRICE, tmp_path, reserve_usd=Decimal("0.05"), slice_s=1.0, lookahead_s=1.0, minimum_seconds=0, clock=clock)
    meter.running = lambda: {"t001-lora": "training", "t002-ia3": "evaluating"}
    meter.start(thread=False)
    meter.set_stage("tuning")
    clock.advance(2.5, meter)
    meter.close()
    ledger.refresh()
    per_trial = ledger.by_trial()
    assert set(per_trial) == {"t001-lora", "t002-ia3"}
    assert per_trial["t001-lora"] == per_trial["t002-ia3"]  # each slice split in half
    cats = {c.category for c in ledger.records if c.trial}
    assert cats == {"training", "evaluation"}


def test_a_worker_announcing_a_long_step_gets_it_prepaid(tmp_path):
    clock = FakeClock()
    ledger = Ledger(tmp_path, "5.00")
    meter = MachineMeter(ledger, PRICE, tmp_path, reserve_usd=Decimal("0.05"), slice_s=1.0, lookahead_s=2.0, minimum_seconds=0, clock=clock)
    meter.needs = lambda: 12.0  # a worker's next step: 12 s, six times the base window
    meter.start(thread=False)
    state = json.loads((tmp_path / "meter.json").read_text())
    assert state["paid_until"] >= clock.now + 12.0
    assert payment_for(state, 12.0, None, clock.now).ok


DRIVER = textwrap.dedent(
    """
    import sys, time
    from decimal import Decimal
    from budgetft.money.ledger import Ledger
    from budgetft.money.machine_meter import MachineMeter
    run_dir, session = sys.argv[1], int(sys.argv[2])
    ledger = Ledger(run_dir, "0.20")
    meter = MachineMeter(ledger, Decimal("36"), run_dir, Decimal("0.05"), slice_s=0.5, lookahead_s=1.0, session=session, minimum_seconds=0).start()
    meter.set_stage("tuning")
    print("started", flush=True)
    while not meter.stopped.is_set():
        time.sleep(0.1)
    meter.set_stage("report")
    meter.close()
    print("done", flush=True)
    """
)


def test_kill_minus_9_then_resume_stays_under_the_cap(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    first = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path), "1"], stdout=subprocess.PIPE, env=env, text=True)
    assert first.stdout.readline().strip() == "started"
    time.sleep(1.0)
    kill_time = time.time()
    first.send_signal(signal.SIGKILL)
    first.wait()
    charges = read_charges(tmp_path / "ledger.jsonl")
    spent_at_kill = charges[-1].total
    assert spent_at_kill == sum(c.amount for c in charges)  # every complete line, exactly
    # Prepaid: the ~1 s used before the kill is covered, at $0.01/s.
    assert spent_at_kill >= Decimal("0.01")
    assert json.loads((tmp_path / "meter.json").read_text())["paid_until"] <= kill_time + 2.0
    time.sleep(1.5)
    assert not worker_may_continue(tmp_path)[0]  # nobody pays any more: no new work starts
    # A worker waits for the payment, and gives up once the heartbeat is stale by the margin
    # (a minute in a run; two seconds here): a killed driver stops its workers.
    t0 = time.time()
    verdict = wait_for_payment(tmp_path, 0.5, session=1, dead_after=2.0)
    assert not verdict.ok and not verdict.by_cap and "stopped paying" in verdict.reason
    assert time.time() - t0 < 5

    second = subprocess.run([sys.executable, "-c", DRIVER, str(tmp_path), "2"], capture_output=True, env=env, text=True, timeout=120)
    assert second.returncode == 0 and "done" in second.stdout
    # A worker of the killed session must not take the new session's payments as its own.
    assert not worker_may_continue(tmp_path, session=1)[0]
    final = read_charges(tmp_path / "ledger.jsonl")
    total = sum(c.amount for c in final)
    assert total == final[-1].total and total <= Decimal("0.20")
    keys = [c.key for c in final if c.key]
    assert len(keys) == len(set(keys))  # nothing charged twice
    assert final[len(charges)].total > spent_at_kill  # the resumed session started from the true spend


def test_the_meter_publishes_when_the_money_ends(tmp_path):
    """money_ends is when the meter will raise its stop flag (the reserve kept, a lookahead
    before the last slice bought runs out): what a trial whose machine runs slower than
    calibrated shortens its schedule to (Worker.horizon). Never later than the real stop."""
    clock = FakeClock()
    ledger = Ledger(tmp_path, "0.10")
    meter = MachineMeter(ledger, PRICE, tmp_path, reserve_usd=Decimal("0.05"), slice_s=1.0, lookahead_s=1.0, minimum_seconds=0, clock=clock).start(thread=False)
    meter.set_stage("tuning")
    clock.advance(1.0, meter)
    forecast = json.loads((tmp_path / "meter.json").read_text())["money_ends"]
    # $0.05 above the reserve at $0.01 a second buys 5 slices of 1 s; the flag goes up when the
    # sixth cannot be bought with 1 s still paid ahead, at 4.5 s on this clock's half-second
    # ticks. The forecast counts slices at a micro-dollar over their price: one fewer, at most.
    while not meter.stopped.is_set():
        clock.advance(0.5, meter)
    assert 1_000_000.0 + 3.0 <= forecast <= clock.now
    state = json.loads((tmp_path / "meter.json").read_text())
    assert state["stop"] and state["money_ends"] == clock.now
    meter.close()


def test_free_time_has_no_end(tmp_path):
    clock = FakeClock()
    meter = MachineMeter(Ledger(tmp_path, "0.10"), Decimal("0"), tmp_path, reserve_usd=Decimal("0.05"), slice_s=1.0, clock=clock).start(thread=False)
    assert json.loads((tmp_path / "meter.json").read_text())["money_ends"] is None
    meter.close()
