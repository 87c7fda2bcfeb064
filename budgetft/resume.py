"""Where a run goes: a new run directory, or an interrupted run resumed. One home for both
decisions, shared by local runs and cloud launches.

A resumed run keeps its cap (it never changes on resume), its job and its spend so far (the
ledger's total); a finished run is not resumed; a directory that already holds a run is never
taken for a new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from budgetft.money.ledger import read_charges
from budgetft.money.usd import round_up, usd
from budgetft.rundir import RunDir, RunInfo


class ResumeError(ValueError):
    """A run directory that cannot be started or resumed; the message names the fix."""


@dataclass(frozen=True)
class ResumePoint:
    run: RunDir
    info: RunInfo
    cap: Decimal  # the cap the run started with
    spent: Decimal  # the ledger's total so far


def resume_point(run_dir: Path, budget: Decimal | None = None) -> ResumePoint:
    """The state an interrupted run continues from; `budget`, if given, must be its cap."""
    run = RunDir(run_dir)
    if not (run.job_yaml.is_file() or run.run_json.is_file()):
        raise ResumeError(f"{run_dir} is not a run directory (no run.json or job.yaml); give the directory a run was writing to")
    info = run.run()
    if info.status == "finished":
        raise ResumeError(f"{run_dir} finished already; start a new run instead (its report: `budgetft report {run_dir}`)")
    charges = read_charges(run.ledger) if run.ledger.exists() else []
    stored = info.cap_usd or (str(charges[-1].cap) if charges else None)
    if stored is None and budget is None:
        raise ResumeError(f"{run_dir} records no cap; pass --budget")
    cap = round_up(usd(stored if stored is not None else budget))
    if budget is not None and round_up(usd(budget)) != cap:
        raise ResumeError(
            f"{run_dir} was started with a cap of ${cap.normalize():f}, and a run's cap never changes on resume; "
            f"drop --budget to continue it, or start a new run with --budget {budget}"
        )
    return ResumePoint(run, info, cap, charges[-1].total if charges else Decimal(0))


def check_new_run_dir(out: Path) -> None:
    """--out for a new run: a directory that holds no run yet (or does not exist yet)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ResumeError(f"--out {out} is a file, not a directory; give a new directory for the run's files")
    run = RunDir(out)
    if run.exists() or run.ledger.exists():
        if run.run().status == "finished":
            raise ResumeError(f"{out} already holds a finished run; choose another --out (its report: `budgetft report {out}`)")
        raise ResumeError(f"{out} already holds a run that did not finish; continue it with --resume {out}, or choose another --out")


def new_run_dir(job_name: str, out: Path | None) -> Path:
    """The directory for a new run: --out (checked), else runs/<job>-<time>."""
    if out is not None:
        check_new_run_dir(out)
        return Path(out)
    return Path("runs") / f"{job_name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
