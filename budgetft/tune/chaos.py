"""Faults on purpose, for the chaos benchmark (benchmarks/chaos.py) and the tests.

`BUDGETFT_CHAOS="<fault>:<trial>:<step>[,...]"` in the driver's environment makes the worker of
the trial whose id starts with <trial> (e.g. t002) misbehave when it reaches step <step>:

  slow    the step takes SLOW_STEP_S longer: far past the prepaid window, so the payment
          protocol must wait for the money rather than call the driver dead
  unpaid  the worker finds its step unpaid and stops, as it would with its driver gone: a
          trial that ends without ever reporting to Tune
  raise   the step raises an exception (a bug in a method, a bad batch)
  memory  the step raises MemoryError (what Python raises when an allocation fails)
  kill    the worker process kills itself with SIGKILL (as the OS's out-of-memory killer does)

The faults are a seam around the worker, not a part of it: `inject` wraps the worker's
may_continue and on_step callbacks; with no faults it changes nothing, and the worker's own
payment check never sees a fault.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, replace
from typing import Any

ENV = "BUDGETFT_CHAOS"
FAULTS = ("slow", "unpaid", "raise", "memory", "kill")
SLOW_STEP_S = 20.0  # longer than the meter's 10 s base lookahead, and than any tiny-model step


@dataclass(frozen=True)
class Fault:
    kind: str
    trial: str  # a trial id or its prefix
    step: int

    def hits(self, trial_id: str, step: int) -> bool:
        return trial_id.startswith(self.trial) and step == self.step


def parse(text: str | None) -> tuple[Fault, ...]:
    if not text:
        return ()
    faults = []
    for item in text.split(","):
        try:
            kind, trial, step = item.split(":")
            fault = Fault(kind.strip(), trial.strip(), int(step))
        except ValueError:
            raise ValueError(f"{ENV}={text!r}: write <fault>:<trial>:<step>[,...], e.g. slow:t001:3; faults: {', '.join(FAULTS)}") from None
        if fault.kind not in FAULTS:
            raise ValueError(f"{ENV}={text!r}: unknown fault {fault.kind!r}; faults: {', '.join(FAULTS)}")
        faults.append(fault)
    return tuple(faults)


def due(faults: tuple[Fault, ...], trial_id: str, step: int, kinds: tuple[str, ...] = FAULTS) -> Fault | None:
    """The fault of one of `kinds` planned for this trial and step, if any."""
    return next((f for f in faults if f.kind in kinds and f.hits(trial_id, step)), None)


def strike(fault: Fault | None) -> None:
    """Misbehave now as `fault` says ("unpaid" is the caller's to act on)."""
    if fault is None:
        return
    if fault.kind == "slow":
        time.sleep(SLOW_STEP_S)
    elif fault.kind == "raise":
        raise RuntimeError(f"chaos: a fault injected at step {fault.step}")
    elif fault.kind == "memory":
        raise MemoryError(f"chaos: memory exhaustion simulated at step {fault.step}")
    elif fault.kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)


def inject(worker: Any, faults: tuple[Fault, ...]) -> None:
    """Wrap `worker`'s may_continue and on_step (budgetft.tune.worker.Worker) so that its trial
    meets `faults`: before a step's payment ("unpaid", "raise", "memory", "kill") and after a
    step ("slow": the step then counts as having taken that much longer). No faults: unchanged."""
    if not faults:
        return
    pay, heard = worker.may_continue, worker.on_step

    def may_continue(what: str) -> bool:
        if what == "step":
            fault = due(faults, worker.trial_id, worker.record.steps + 1, ("unpaid", "raise", "memory", "kill"))
            if fault is not None and fault.kind == "unpaid":
                worker.record.stop_reason, worker.record.stopped_by_meter = "chaos: the step was found unpaid", False
                return False
            strike(fault)
        return pay(what)

    def on_step(log: Any) -> None:
        fault = due(faults, worker.trial_id, log.step, ("slow",))
        if fault is None:
            return heard(log)
        t0 = time.perf_counter()
        strike(fault)  # this step takes far longer than the prepaid window
        return heard(replace(log, seconds=log.seconds + time.perf_counter() - t0))

    worker.may_continue, worker.on_step = may_continue, on_step
