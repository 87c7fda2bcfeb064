"""Signals that stop a run: SIGINT (Ctrl-C), SIGTERM (`kill`, systemd, Kubernetes, a cloud VM
shutting down, a Spot preemption) and SIGHUP (the terminal closed). Each stops the run the same
way, in every stage: trials stop and keep what they learned, the report is written, and the
process exits with the shell's code for the signal (128 + its number: 130, 143, 129) and the
line that resumes the run.

How, and why not by raising everywhere: a Python signal handler runs in the main thread between
two bytecodes, wherever the main thread is. While Ray Tune runs the trials (tune.fit), that is
inside Ray's Cython code (CoreWorker.wait): an exception raised there comes out as Ray's
SystemExit(1), the driver recorded the run as failed, and it aborted (exit 134, no report) while
it shut the half-stopped core worker down. ray.init also installs its own SIGTERM handler
(`sys.exit`) over ours, and its C++ core worker a crash handler that prints "*** SIGTERM
received" (issue 27). So:

  - while Ray runs (`deferred()`), the handler only asks the machine meter to stop every trial
    (`on_stop`: workers stop at their next payment, Tune's stopper ends them) and returns; Tune
    returns normally and the driver raises the stop afterwards, in its own code
    (`raise_if_stopped`). budgetft.tune.ray_session puts our handlers back after ray.init.
  - in our own code (baselines, calibration, the held-out test: plain PyTorch loops), it raises
    Stopped at once, as Ctrl-C always did;
  - while the report is written (`deferred()` again), the stop waits for the report.

A second signal while the first is being honoured changes nothing: the run is already stopping.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

# signal -> (how the user reads it, the shell's exit code for it)
STOP_SIGNALS = {
    signal.SIGINT: ("Ctrl-C", 130),
    signal.SIGTERM: ("SIGTERM", 143),
    signal.SIGHUP: ("SIGHUP", 129),
}


class Stopped(KeyboardInterrupt):
    """The run was stopped by a signal: stop like Ctrl-C, keep everything, report."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return STOP_SIGNALS.get(self.signum, (f"signal {self.signum}", 0))[0]

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)


class StopSignals:
    """The run's handlers for SIGINT, SIGTERM and SIGHUP, from install() to restore()."""

    def __init__(self, on_stop: Callable[[str], None] = lambda reason: None):
        self.on_stop = on_stop  # asks the meter to stop every trial; must be signal-safe
        self.received: int | None = None
        self._deferred = 0
        self._previous: dict[int, object] = {}

    @property
    def stopping(self) -> bool:
        return self.received is not None

    def install(self) -> "StopSignals":
        if threading.current_thread() is not threading.main_thread():
            return self  # a test runner's worker thread: signals stay where they are
        for signum in STOP_SIGNALS:
            if signal.getsignal(signum) is signal.SIG_IGN:
                continue  # ignored on purpose (`nohup` ignores SIGHUP; `cmd &` in a script, SIGINT): it stays so
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        first = self.received is None
        if first:
            self.received = signum
            self.on_stop(f"the run was stopped by {STOP_SIGNALS[signum][0]}")
        if self._deferred or not first:
            return  # Ray's code, the report, or a stop already under way: never raise here
        raise Stopped(signum)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Inside: a signal only asks for the stop; raise_if_stopped() raises it afterwards."""
        self._deferred += 1
        try:
            yield
        finally:
            self._deferred -= 1

    def raise_if_stopped(self) -> None:
        if self.received is not None:
            raise Stopped(self.received)
