"""Calls to one tracking backend, made by a background thread so that no caller ever waits.

A trial's step and the meter's payment must never wait for TensorBoard's disk, an MLflow server
or W&B. So a caller only appends the call to a queue (`Outbox.put`, a few microseconds under a
lock) and goes on; one thread per backend makes the calls in order. What can go wrong is dropped
and written down (`Notes`), never retried:
- a call that raises: noted, and the next call goes ahead;
- a call that takes longer than its timeout: noted, and from then on, until it returns, every
  call queued or put is dropped and counted (a server that hangs holds up nothing but itself);
- a queue that is full (a backend far slower than the trials' steps): the new call is dropped;
- calls still queued when the run closes the outbox after its last wait: dropped.
Consecutive metric calls for the same run are merged into one (`merge`), so a backend sends a
batch per pass instead of a request per step.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from budgetft.clock import utc_now

# Seconds a call may take before it is given up on. Metric calls are small (a batch of points);
# the MLflow client is also told to give up on an HTTP request after this long
# (budgetft.track.mlflow_backend), so a dead server fails the call instead of hanging it.
CALL_TIMEOUT_S = 10.0
# Queued calls per backend: ~3 h of one call a step at 1 step/s. Beyond it, new calls are dropped.
CAPACITY = 10_000
MERGE_MAX = 1_000  # points in one merged metric call (MLflow's log_batch takes at most 1,000)
KEPT_MESSAGES = 20  # what went wrong, word for word: the first ones (the counts say the rest)


@dataclass
class Notes:
    """What a backend dropped, and why: counts and the first messages, for the run's records."""

    failed: int = 0
    timed_out: int = 0
    dropped: int = 0  # calls never made: queue full, a stalled call, or the run ended first
    messages: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.messages) < KEPT_MESSAGES:
            self.messages.append(f"{utc_now()} {text}")

    def any(self) -> bool:
        return bool(self.failed or self.timed_out or self.dropped)

    def to_json(self) -> dict:
        return {"failed": self.failed, "timed_out": self.timed_out, "dropped": self.dropped, "messages": list(self.messages)}

    def in_words(self) -> str:
        parts = [f"{n} {what}" for n, what in ((self.failed, "failed"), (self.timed_out, "timed out"), (self.dropped, "dropped")) if n]
        return ", ".join(parts) or "nothing lost"


@dataclass
class _Call:
    fn: Callable[..., Any]
    args: tuple
    what: str
    timeout_s: float
    merge: tuple | None = None  # calls with the same key whose first argument lists concatenate


class Outbox:
    """A queue of calls to one backend and the thread that makes them (see the module's notes)."""

    def __init__(self, name: str, capacity: int = CAPACITY, timeout_s: float = CALL_TIMEOUT_S):
        self.name = name
        self.capacity = capacity
        self.timeout_s = timeout_s
        self.notes = Notes()
        self._items: deque[_Call] = deque()
        self._cv = threading.Condition()
        self._closing = False
        self._stalled = False  # a call ran past its timeout and has not returned yet
        self._busy = False
        self._thread = threading.Thread(target=self._drain, name=f"budgetft-track-{name}", daemon=True)
        self._thread.start()

    def put(self, fn: Callable[..., Any], *args: Any, what: str, timeout_s: float | None = None, merge: tuple | None = None) -> bool:
        """Queue `fn(*args)`; never blocks. False (and noted) when the call is dropped instead."""
        with self._cv:
            why = ("the run had closed tracking" if self._closing else
                   f"an earlier call has run past its {self.timeout_s:.0f} s timeout" if self._stalled else
                   f"{self.capacity:,} calls were already waiting" if len(self._items) >= self.capacity else "")
            if why:
                self._drop(1, what, why)
                return False
            self._items.append(_Call(fn, args, what, timeout_s or self.timeout_s, merge))
            self._cv.notify()
            return True

    def idle(self) -> bool:
        """Nothing queued and no call in flight."""
        with self._cv:
            return not self._items and not self._busy

    def wait_idle(self, seconds: float) -> bool:
        """Wait up to `seconds` until every call queued so far has been made; True if they were."""
        deadline = time.monotonic() + max(0.0, seconds)
        with self._cv:
            while self._items or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.1))
            return True

    def close(self, wait_s: float) -> bool:
        """Let the queued calls be made for up to `wait_s` seconds, then give up on the rest
        (noted as dropped). True when every call was made."""
        done = self.wait_idle(wait_s)
        with self._cv:
            self._closing = True
            left = [c.what for c in self._items]
            self._items.clear()
            self._cv.notify_all()
        if left:
            shown = ", ".join(left[:3]) + (f" and {len(left) - 3} more" if len(left) > 3 else "")
            self._drop(len(left), f"{len(left)} queued call{'s' if len(left) > 1 else ''} ({shown})", "the run stopped waiting for tracking")
        return done and not left

    # -- the thread

    def _drain(self) -> None:
        while True:
            with self._cv:
                while not self._items and not self._closing:
                    self._cv.wait()
                if not self._items:
                    return
                call = self._items.popleft()
                if call.merge is not None:
                    call = self._merged(call)
                self._busy = True
            try:
                self._make(call)
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def _merged(self, call: _Call) -> _Call:
        """`call` with the queued calls right behind it that carry the same merge key (their
        first argument, a list of points, appended to its own)."""
        first, *rest = call.args
        points = list(first)
        while self._items and self._items[0].merge == call.merge and len(points) < MERGE_MAX:
            points.extend(self._items.popleft().args[0])
        return _Call(call.fn, (points, *rest), call.what, call.timeout_s, call.merge)

    def _make(self, call: _Call) -> None:
        """Make one call in a helper thread and wait at most its timeout for it."""
        outcome: dict[str, BaseException] = {}
        done = threading.Event()

        def run() -> None:
            try:
                call.fn(*call.args)
            except BaseException as exc:  # noqa: BLE001 - anything a backend raises is noted, never raised into the run
                outcome["error"] = exc
            finally:
                done.set()

        threading.Thread(target=run, name=f"budgetft-track-{self.name}-call", daemon=True).start()
        if done.wait(call.timeout_s):
            if "error" in outcome:
                exc = outcome["error"]
                first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else "no message"
                with self._cv:
                    self.notes.failed += 1
                    self.notes.note(f"{self.name}: {call.what} failed: {type(exc).__name__}: {first}")
            return
        # Too slow: give up on it, and drop what waits behind it until it returns, so that a
        # hanging server costs the run nothing but this backend's records.
        with self._cv:
            self.notes.timed_out += 1
            self.notes.note(f"{self.name}: {call.what} took more than {call.timeout_s:.0f} s: given up on")
            self._stalled = True
            behind = len(self._items)
            self._items.clear()
        if behind:
            self._drop(behind, f"{behind} queued calls", f"{call.what} had stalled")
        done.wait()  # the call returns (or the process ends); puts are dropped meanwhile
        with self._cv:
            self._stalled = False

    def _drop(self, count: int, what: str, why: str) -> None:
        with self._cv:  # reentrant: put() holds it already
            self.notes.dropped += count
            self.notes.note(f"{self.name}: {what} dropped: {why}")

    def notes_json(self) -> dict:
        with self._cv:
            return self.notes.to_json()
