"""The machine meter: the run's wall-clock time, paid into the ledger before it is used.

A background thread keeps the ledger `lookahead_s` ahead of the clock, in slices of `slice_s`.
Each slice is labelled with what the machine is doing (baselines, calibration, the running
trials' training or evaluation, overhead) and split between the running trials, so the ledger
says where the money went. Because every second is charged before it passes, a crash or
kill -9 loses no spend: the ledger always covers the time used.

Workers (Ray trial processes) cannot see this thread, so it publishes `meter.json`:
    {"paid_until": <unix time>, "stop": <bool>}
A worker checks it before each step and stops when the paid time runs out or the run is
stopping: work never outlives its payment, even if the driver dies.

When the next slice would eat into the reserve kept for the report and shutdown, the meter
stops buying time and raises the stop flag; the scheduler's Stopper ends all trials.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Callable

from budgetft.money.ledger import BudgetExceeded, Ledger
from budgetft.money.meter import Meter
from budgetft.rundir import read_json, write_json

METER_FILE = "meter.json"


class MachineMeter:
    def __init__(
        self,
        ledger: Ledger,
        usd_per_hour: Decimal,
        run_dir: Path,
        reserve_usd: Decimal,
        slice_s: float = 5.0,
        lookahead_s: float = 10.0,
        session: int = 1,
        minimum_seconds: int = 60,  # billed as a VM: one minute at least, then per second
    ):
        # Slices are billed per second; the one-minute minimum is settled at close(), so the
        # first minute's charges say what the time was spent on (baselines, calibration).
        self.meter = Meter(ledger, usd_per_hour, minimum_seconds=0)
        self.minimum_seconds = minimum_seconds
        self.ledger = ledger
        self.run_dir = Path(run_dir)
        self.reserve_usd = reserve_usd
        self.slice_s = slice_s
        self.lookahead_s = lookahead_s
        self.session = session  # a resumed run is a new session: its slices get new keys
        self.stage = "overhead"
        self.running: Callable[[], dict[str, str]] = lambda: {}  # trial id -> phase
        self.stopped = threading.Event()  # budget exhausted: stop buying training time
        self.reason = ""
        self._slice = 0
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_wall = time.time()

    def unused_usd(self) -> Decimal:
        """Prepaid time not yet used (the lookahead, or the rest of the first minute's
        minimum): money already in the ledger that still buys machine time."""
        with self._lock:
            unused = max(0.0, float(self.meter.paid_seconds) - float(self.meter.elapsed()))
            rate = self.meter.usd_per_hour
        # Rounded down, so that the planner never counts on more than is really prepaid.
        return (rate * Decimal(str(unused)) / 3600).quantize(Decimal("0.000001"), rounding="ROUND_FLOOR")

    # -- the clock

    def start(self) -> "MachineMeter":
        self._started_wall = time.time()
        self.top_up()
        self._thread = threading.Thread(target=self._loop, name="budgetft-meter", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._halt.wait(0.5):
            self.top_up()

    def close(self) -> None:
        self._halt.set()
        if self._thread:
            self._thread.join(timeout=5)
        self.top_up()  # the time up to now is paid for, whatever happened
        short = self.minimum_seconds - float(self.meter.paid_seconds)
        if short > 0:  # a session shorter than the billing minimum still pays for the minute
            try:
                self.meter.charge_for(short, "overhead", f"one-minute billing minimum ({short:.0f} s unused)", key=f"s{self.session}:minimum")
            except BudgetExceeded as exc:
                self._stop(str(exc))
            self._publish()

    def set_stage(self, stage: str) -> None:
        self.stage = stage
        self.top_up()

    def top_up(self) -> None:
        """Buy slices until the paid time runs `lookahead_s` ahead of the clock."""
        with self._lock:
            while float(self.meter.paid_seconds) < float(self.meter.elapsed()) + self.lookahead_s:
                if not self._buy_slice():
                    break
            self._publish()

    def _buy_slice(self) -> bool:
        finishing = self.stage in ("report", "teardown")
        quote = self.meter.quote(self.slice_s)
        # Until the end, keep the reserve back: the report and shutdown must stay payable.
        if not finishing and self.ledger.spent + quote + self.reserve_usd > self.ledger.cap:
            self._stop(f"the next {self.slice_s:.0f} s would eat into the ${self.reserve_usd} reserve for the report")
            return False
        running = self.running() if self.stage == "tuning" else {}
        self._slice += 1
        try:
            if running:
                # Split the slice between the trials that share the machine.
                share = self.slice_s / len(running)
                for trial_id, phase in sorted(running.items()):
                    category = {"evaluating": "evaluation", "training": "training"}.get(phase, "overhead")
                    self.meter.charge_for(share, category, f"{share:.2f} s of {trial_id}", trial=trial_id, key=f"s{self.session}:{self._slice}:{trial_id}")
            else:
                category = "overhead" if self.stage == "tuning" else self.stage
                self.meter.charge_for(self.slice_s, category, f"{self.slice_s:.0f} s of {self.stage}", key=f"s{self.session}:{self._slice}")
        except BudgetExceeded as exc:
            self._stop(str(exc))
            return False
        return True

    def _stop(self, reason: str) -> None:
        if not self.stopped.is_set():
            self.reason = reason
            self.stopped.set()

    def _publish(self) -> None:
        paid_until = self._started_wall + float(self.meter.paid_seconds)
        write_json(self.run_dir / METER_FILE, {"paid_until": paid_until, "stop": self.stopped.is_set(), "reason": self.reason, "session": self.session})


def worker_may_continue(run_dir: Path, next_seconds: float = 0.0, session: int | None = None) -> tuple[bool, str, bool]:
    """For trial processes: is the next `next_seconds` of work paid for, and is the run going
    on? A worker of an earlier session (its driver died; the run was resumed) must stop: the
    new session pays for its own trials only. Returns (ok, why not, whether the meter said stop)."""
    state = read_json(Path(run_dir) / METER_FILE, None)
    if state is None:
        return False, "no meter: the run's driver is not running", False
    if session is not None and state.get("session") != session:
        return False, f"session {session} of this run was replaced by session {state.get('session')}", False
    if state.get("stop"):
        return False, state.get("reason") or "the run is stopping", True
    if time.time() + next_seconds > state["paid_until"]:
        return False, "the time is not paid for (the driver stopped paying: it stopped or died)", False
    return True, "", False
