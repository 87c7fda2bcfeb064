"""The machine meter: the run's wall-clock time, paid into the ledger before it is used.

A background thread keeps the ledger a lookahead ahead of the clock, in slices of `slice_s`.
Each slice is labelled with what the machine is doing (baselines, calibration, the running
trials' training or evaluation, overhead) and split between the running trials, so the ledger
says where the money went. Because every second is charged before it passes, a crash or
kill -9 loses no spend: the ledger always covers the time used.

Workers (Ray trial processes) cannot see this thread, so it publishes `meter.json`:
    {"paid_until": <unix time>, "heartbeat": <unix time>, "stop": <bool>, "reason": str, "session": int,
     "interrupted": <bool: the stop is a signal's or a full disk's, not the cap's>, "stage": str,
     "money_ends": <unix time: when, at this rate, the money left above the reserve runs out>}
The payment protocol, as a worker sees it before each step or evaluation (`wait_for_payment`):
  - the meter says stop (the cap is reached)                            -> stop, "by the cap";
  - the meter says stop, interrupted (a signal, a full disk)             -> stop, interrupted;
  - the run was resumed by a newer session                              -> stop;
  - the next piece of work is paid for                                   -> go;
  - not yet paid, but the driver's heartbeat is recent                   -> wait for the payment;
  - not paid, and the heartbeat is older than DEAD_DRIVER_S             -> stop: the driver is dead.
A slow step is therefore never mistaken for a dead driver: the worker announces how long its
next piece of work will take (its phase file), the meter prepays at least that far ahead, and a
worker that finds its next step not yet covered waits for the money instead of quitting. Work
only ever starts on paid time, so the ledger covers every second used, even when the driver is
killed: its workers finish the step they paid for, wait, and stop within DEAD_DRIVER_S.

When the next slice would eat into the reserve kept for the report and shutdown, the meter
stops buying time and raises the stop flag; the scheduler's Stopper ends all trials. The driver
raises the same flag, marked interrupted, when the run must stop for another reason (a signal,
a full disk: `interrupt`), so that trials stop the same way and are recorded as interrupted.

On a cluster (`nodes`: budgetft.money.node_meters) each slice is bought on every node the run
holds, at each node's price, split between the trials on that node; the head's meter is the
run's clock. Workers on other machines cannot read meter.json: the state is also handed to
`on_publish`, which sends it to the run's actor (budgetft.tune.home), and `wait_for_payment`
reads it from there (`read`). The protocol is the same.

The one-minute billing minimum is charged once per machine start (budgetft.money.machine_start):
a session settles it at close() only for the seconds its machine start has not yet paid.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Callable

from budgetft.disk import is_disk_full
from budgetft.files import read_json, write_json
from budgetft.money.ledger import BudgetExceeded, Ledger
from budgetft.money.meter import Meter
from budgetft.money.node_meters import NodeMeters

METER_FILE = "meter.json"  # in the run directory: the meter's state, which workers read to know what is paid

# How long the driver's heartbeat may go unrenewed before its workers call it dead, seconds.
# The meter thread renews it every 0.5 s. On a 2-core machine with a second process busy, a
# thread of a loaded Python process was seen to lag by a few seconds at worst, and the longest
# step seen was ~30 s (a 6 s LoRA step slowed 5x); a minute is far beyond both, while a killed
# driver's workers still stop within a minute plus the step they had paid for.
DEAD_DRIVER_S = 60.0
# The meter prepays this multiple of the longest piece of work a worker has announced, so that a
# worker about to start it rarely has to wait for the money.
NEED_MARGIN = 1.25


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
        clock: Callable[[], float] = time.time,  # wall-clock seconds (unix time); tests inject one
        start_paid_s: float = 0.0,
        nodes: NodeMeters | None = None,  # a cluster: every node it holds, each at its price (usd_per_hour unused)
    ):
        # Slices are billed per second; the one-minute minimum is settled at close(), so the
        # first minute's charges say what the time was spent on (baselines, calibration). It is
        # billed per machine start, not per session: `start_paid_s` is what this session's
        # machine start has already paid for (earlier sessions of the run on the same boot, or
        # a cloud launcher's VM start), seconds (budgetft.money.machine_start).
        self.start_paid_s = float(start_paid_s)
        self.clock = clock
        # On a cluster the run's clock is its head node's meter; a slice is bought on every node.
        self.nodes = nodes
        self.meter = nodes.head_meter if nodes is not None else Meter(ledger, usd_per_hour, minimum_seconds=0, clock=clock)
        self.minimum_seconds = minimum_seconds
        self.ledger = ledger
        self.run_dir = Path(run_dir)
        self.reserve_usd = reserve_usd
        self.slice_s = slice_s
        self.lookahead_s = lookahead_s
        self.session = session  # a resumed run is a new session: its slices get new keys
        self.stage = "overhead"
        self.running: Callable[[], dict[str, str]] = lambda: {}  # trial id -> phase
        self.placement: Callable[[], dict[str, str]] = lambda: {}  # on a cluster: trial id -> the node id it runs on
        # The longest next piece of work (a step, an evaluation) that a running worker has
        # announced, seconds: the lookahead covers it, so the worker need not wait for payment.
        self.needs: Callable[[], float] = lambda: 0.0
        self.stopped = threading.Event()  # budget exhausted: stop buying training time
        self.reason = ""
        # Why the driver stopped the run otherwise (a signal, a full disk): "" until it does.
        # Set by a plain assignment, so a signal handler may set it (no lock); published by
        # the meter's thread within half a second.
        self.interrupted = ""
        self.disk_full: OSError | None = None  # the full disk that stopped the meter's payments
        self._slice = 0
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_wall = clock()
        self._lookahead = lookahead_s  # the last top-up's lookahead, seconds
        # Called with each published state: how a cluster's workers, which cannot read the
        # driver's disk, hear it (budgetft.tune.home). None on a single machine.
        self.on_publish: Callable[[dict], None] | None = None

    def unused_usd(self) -> Decimal:
        """Prepaid time not yet used (the lookahead, or the rest of the first minute's
        minimum): money already in the ledger that still buys machine time."""
        with self._lock:
            if self.nodes is not None:
                return self.nodes.unused_usd()
            unused = max(0.0, float(self.meter.paid_seconds) - float(self.meter.elapsed()))
            rate = self.meter.usd_per_hour
        # Rounded down, so that the planner never counts on more than is really prepaid.
        return (rate * Decimal(str(unused)) / 3600).quantize(Decimal("0.000001"), rounding="ROUND_FLOOR")

    # -- the clock

    def start(self, thread: bool = True) -> "MachineMeter":
        """Pay the first lookahead and keep paying from a background thread (or, with
        thread=False, only when top_up() is called: a test's injected clock drives it)."""
        self._started_wall = self.clock()
        self.top_up()
        if not thread:
            return self
        self._thread = threading.Thread(target=self._loop, name="budgetft-meter", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._halt.wait(0.5):
            try:
                self.top_up()
            except Exception as exc:  # noqa: BLE001 - the heartbeat must outlive a bad read
                # A ledger that cannot be written cannot pay: stop the run rather than let
                # workers compute on unpaid time; publishing is retried. A full disk is no cap:
                # the run is interrupted, and its driver says so (self.disk_full).
                if is_disk_full(exc):
                    self.disk_full = self.disk_full or exc
                    self.interrupt(str(exc))
                else:
                    self._stop(f"the meter could not pay: {type(exc).__name__}: {exc}")
                try:
                    self._publish()
                except Exception:  # noqa: BLE001
                    pass

    def close(self) -> None:
        self._halt.set()
        if self._thread:
            self._thread.join(timeout=5)
        self.top_up()  # the time up to now is paid for, whatever happened
        short = self.minimum_seconds - self.start_paid_s - float(self.meter.paid_seconds)
        if short > 0:  # a machine start shorter than the billing minimum still pays for the minute
            try:
                self.meter.charge_for(short, "minimum", f"one-minute billing minimum of this machine start ({short:.0f} s unused)", key=f"s{self.session}:minimum")
            except BudgetExceeded as exc:
                self._stop(str(exc))
            self._publish()
        if self.nodes is not None:  # each worker node's own minute too: each is a machine start
            for node, seconds in self.nodes.worker_minimums():
                try:
                    self.nodes.meters[node.node_id].charge_for(seconds, "minimum", f"one-minute billing minimum of {node.name} ({seconds:.0f} s unused)",
                                                               key=f"s{self.session}:minimum:{node.short}", node=node.short)
                except BudgetExceeded as exc:
                    self._stop(str(exc))

    def interrupt(self, reason: str) -> None:
        """Stop every trial as the cap would, recorded as interrupted (a signal, a full disk):
        workers stop at their next payment and Tune's stopper ends the trials. Safe in a signal
        handler: one assignment; the meter's thread publishes it."""
        if not self.interrupted:
            self.interrupted = reason

    def set_stage(self, stage: str) -> None:
        self.stage = stage
        self.top_up()

    def top_up(self) -> None:
        """Buy slices until the paid time runs `lookahead_s` ahead of the clock."""
        with self._lock:
            try:
                need = float(self.needs() or 0.0)
            except Exception:  # noqa: BLE001 - a half-written phase file: use the base lookahead
                need = 0.0
            lookahead = max(self.lookahead_s, NEED_MARGIN * need)
            self._lookahead = lookahead
            while float(self.meter.paid_seconds) < float(self.meter.elapsed()) + lookahead:
                if not self._buy_slice():
                    break
            self._publish()

    def _buy_slice(self) -> bool:
        finishing = self.stage in ("report", "teardown")
        if self.nodes is not None:
            return self._buy_cluster_slice(finishing)
        quote = self.meter.quote(self.slice_s)
        # Until the end, keep the reserve back: the report and shutdown must stay payable.
        if not finishing and self.ledger.spent + quote + self.reserve_usd > self.ledger.cap:
            self._stop(f"the next {self.slice_s:.0f} s would eat into the ${self.reserve_usd} reserve for the report")
            return False
        running = self.running() if self.stage == "tuning" else {}
        self._slice += 1
        try:
            if running:
                # Split the slice between the trials that share the machine, in equal dollars.
                share = self.slice_s / len(running)
                self.meter.charge_shared(self.slice_s, [
                    {
                        "category": {"evaluating": "evaluation", "training": "training"}.get(phase, "overhead"),
                        "description": f"{share:.2f} s of {trial_id}", "trial": trial_id, "key": f"s{self.session}:{self._slice}:{trial_id}",
                    }
                    for trial_id, phase in sorted(running.items())
                ])
            else:
                category = "overhead" if self.stage == "tuning" else self.stage
                self.meter.charge_for(self.slice_s, category, f"{self.slice_s:.0f} s of {self.stage}", key=f"s{self.session}:{self._slice}")
        except BudgetExceeded as exc:
            self._stop(str(exc))
            return False
        return True

    def _buy_cluster_slice(self, finishing: bool) -> bool:
        """A slice on every node the run holds (budgetft.money.node_meters), the reserve kept."""
        self.nodes.refresh()
        quote = self.nodes.quote(self.slice_s)
        if not finishing and self.ledger.spent + quote + self.reserve_usd > self.ledger.cap:
            self._stop(f"the next {self.slice_s:.0f} s on {len(self.nodes.live)} nodes would eat into the ${self.reserve_usd} reserve for the report")
            return False
        tuning = self.stage == "tuning"
        self._slice += 1
        try:
            self.nodes.buy(self.slice_s, self._slice, self.session, self.stage, self.running() if tuning else {}, self.placement() if tuning else {})
        except BudgetExceeded as exc:
            self._stop(str(exc))
            return False
        return True

    def _stop(self, reason: str) -> None:
        if not self.stopped.is_set():
            self.reason = reason
            self.stopped.set()

    def money_ends(self, paid_until: float) -> float | None:
        """The wall-clock time (unix seconds) at which the meter will raise its stop flag, the
        money above the reserve spent: what a trial's schedule must end before. It keeps buying
        slices until the paid time no longer runs `lookahead` ahead of the clock, so the stop
        comes a lookahead before the last slice bought runs out. Slices are priced as they are
        bought (rounded up) plus a micro-dollar, and counted whole."""
        if self.stopped.is_set() or self.interrupted:
            return self.clock()
        left = self.ledger.cap - self.ledger.spent - self.reserve_usd
        if left <= 0:
            return max(self.clock(), paid_until - self._lookahead)
        per_slice = self.nodes.quote(self.slice_s) if self.nodes is not None else self.meter.quote(self.slice_s)
        if per_slice <= 0:
            return None  # free time: no end
        slices = int(left // (per_slice + Decimal("0.000001")))
        return max(self.clock(), paid_until + slices * self.slice_s - self._lookahead)

    def _publish(self) -> None:
        paid_until = self._started_wall + float(self.meter.paid_seconds)
        capped = self.stopped.is_set()
        state = {"paid_until": paid_until, "heartbeat": self.clock(), "stop": capped or bool(self.interrupted),
                 "reason": self.reason if capped else self.interrupted, "interrupted": bool(self.interrupted) and not capped,
                 "session": self.session, "money_ends": self.money_ends(paid_until), "stage": self.stage}
        write_json(self.run_dir / METER_FILE, state)
        if self.on_publish is not None:  # a cluster's workers read it through Ray (budgetft.tune.home)
            try:
                self.on_publish(state)
            except Exception:  # noqa: BLE001 - workers wait for the next beat; DEAD_DRIVER_S is far away
                pass


@dataclass(frozen=True)
class Payment:
    """A worker's answer from the meter: go (`ok`), wait, or stop and why."""

    ok: bool
    wait: bool = False
    reason: str = ""
    by_cap: bool = False  # stopped because the meter says the money is spent


def payment_for(state: dict | None, next_seconds: float, session: int | None, now: float, dead_after: float = DEAD_DRIVER_S) -> Payment:
    """Whether `next_seconds` of work starting `now` may start, from the meter's published
    state (see the module's protocol). Pure: the caller supplies the clock."""
    if state is None:
        return Payment(False, wait=True, reason="no meter yet: the run's driver is not running")
    if session is not None and state.get("session") != session:
        return Payment(False, reason=f"session {session} of this run was replaced by session {state.get('session')}")
    if state.get("stop"):
        return Payment(False, reason=state.get("reason") or "the run is stopping", by_cap=stopped_by_cap(state))
    if now + next_seconds <= float(state["paid_until"]):
        return Payment(True)
    # Older meters published no heartbeat: their last payment time stands in for it.
    beat = float(state.get("heartbeat") or state["paid_until"])
    if now - beat > dead_after:
        return Payment(False, reason=f"the run's driver stopped paying {now - beat:.0f} s ago (it was stopped or died)")
    return Payment(False, wait=True, reason="waiting for the driver to pay for the next step")


def stopped_by_cap(state: dict | None) -> bool:
    """Whether the meter's published state says the cap stopped the run (not a signal or a full
    disk: those stop trials the same way, but they are interrupted, not stopped by the cap)."""
    return bool(state and state.get("stop") and not state.get("interrupted"))


def wait_for_payment(
    run_dir: Path,
    next_seconds: float = 0.0,
    session: int | None = None,
    *,
    dead_after: float = DEAD_DRIVER_S,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    poll_s: float = 0.25,
    read: Callable[[], dict | None] | None = None,
) -> Payment:
    """Block until `next_seconds` of work is paid for (ok) or the worker must stop (not ok):
    a slow step waits for its payment; only the cap, a newer session or a driver silent for
    `dead_after` seconds stop it. A missing meter file counts as a silent driver from the
    moment the wait began. `read` replaces the meter file where the worker cannot see the
    driver's disk (a cluster: budgetft.tune.home)."""
    path = Path(run_dir) / METER_FILE
    began = clock()
    while True:
        now = clock()
        state = read() if read is not None else read_json(path, None)
        verdict = payment_for(state, next_seconds, session, now, dead_after)
        if not verdict.wait:
            return verdict
        if state is None and now - began > dead_after:
            return Payment(False, reason="no meter: the run's driver is not running")
        sleep(poll_s)


def worker_may_continue(run_dir: Path, next_seconds: float = 0.0, session: int | None = None) -> tuple[bool, str, bool]:
    """The meter's answer right now, without waiting: (paid, why not, whether the cap stopped
    it). Not paid but not stopped either means "wait" (see wait_for_payment)."""
    verdict = payment_for(read_json(Path(run_dir) / METER_FILE, None), next_seconds, session, time.time())
    return verdict.ok, verdict.reason, verdict.by_cap
