"""A trial's files as its worker keeps them: the phase file the meter reads, its cost from the
ledger, its error in words, and the record of a trial that goes on from its checkpoint
(budgetft.tune.worker)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from budgetft.files import atomic_dir, read_json, write_json
from budgetft.money.ledger import read_charges
from budgetft.rundir import PHASE_FILE, RunDir, TrialRecord, utc_now
from budgetft.train.persist import save_trained

# Imported inside functions: torch: importing this module must stay cheap (start-up time).


def trial_cost(run: RunDir, trial_id: str) -> str:
    """Dollars the ledger has charged to one trial so far."""
    if not run.ledger.exists():
        return "0"
    return str(sum((c.amount for c in read_charges(run.ledger) if c.trial == trial_id), start=Decimal(0)))


def write_phase(folder: Path, phase: str, next_s: float = 0.0) -> None:
    """What the worker is doing and how long its next piece of work will take (seconds): the
    meter charges the slice to that phase and prepays at least `next_s` ahead."""
    write_json(folder / PHASE_FILE, {"phase": phase, "next_s": round(float(next_s), 3)})


def read_node(folder: Path) -> str | None:
    """The Ray node a cluster's trial runs on, as its home wrote it with its phase (None on one machine)."""
    try:
        return (read_json(folder / PHASE_FILE, None) or {}).get("node")
    except ValueError:
        return None


def read_phase(folder: Path) -> tuple[str, float] | None:
    """(phase, next_s), or None when the worker has not started (or has ended)."""
    try:
        data = read_json(folder / PHASE_FILE, None)
    except ValueError:  # written atomically, so only a foreign file can be unreadable
        return "training", 0.0
    if data is None:
        return None
    return str(data.get("phase") or "training"), float(data.get("next_s") or 0.0)


def error_in_words(exc: BaseException) -> str:
    """One line a user understands for a trial's exception."""
    import torch

    if isinstance(exc, MemoryError) or isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        where = "GPU" if "cuda" in str(exc).lower() or "gpu" in str(exc).lower() else "the machine's"
        return f"ran out of {where} memory ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no details'})"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else "no message"
    return f"{type(exc).__name__}: {text}"


def continued_record(run: RunDir, spec: dict, fresh: TrialRecord) -> TrialRecord:
    """The record of an interrupted trial that goes on from its checkpoint in this worker:
    running again, its evaluations, kept weights and cost so far kept, and from which step and
    session it went on said in `continued`."""
    old = run.trial(spec["trial_id"])
    if old is None:
        return fresh
    step = int((old.checkpoint or {}).get("step") or 0)
    continued = [*(old.continued or []), {"from_step": step, "at": utc_now(), "steps_lost": max(0, old.steps - step)}]
    return old.model_copy(update={"status": "running", "stop_reason": None, "stopped_by_meter": None, "ended": None, "error": None,
                                  "pid": fresh.pid, "steps": step, "continued": continued})


def save_weights(model, spec: dict, path: Path) -> None:
    """The trial's best weights: the adapter (peft) or the trainable tensors (ours), written
    whole or not at all (a full disk keeps the previous ones and raises DiskFull)."""
    if model is None:
        return
    atomic_dir(path, lambda folder: save_trained(model, spec["method"], spec["config"], folder), "the trial's weights")
