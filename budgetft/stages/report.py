"""Stage 5, report: settle every trial's status, record how the run ended, write the reports.

Paid from the reserve the meter kept back for it. A report that cannot be written never loses
the run's records: the error is shown and the run directory stays as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from budgetft.report import write_reports
from budgetft.rundir import RunDir, RunInfo, utc_now


def finish(run: RunDir, info: RunInfo, status: str, *, budget_stopped: bool, stop_reason: str | None = None,
           warn: Callable[[str], None] = lambda line: None) -> list[Path]:
    """Give trials still "running" their final status, write run.json and the reports; returns
    the report files written."""
    for trial in run.trials():
        if trial.status == "running":
            run.finalize_trial(trial.trial_id, budget_stopped=budget_stopped and status == "finished", interrupted=status != "finished")
    info.status, info.finished, info.stop_reason = status, utc_now(), stop_reason or None
    run.write_run(info)

    try:
        return write_reports(run.root)
    except Exception as exc:  # noqa: BLE001 - a broken report must not lose the run's records
        warn(f"[red]report failed: {exc}[/]")
        return []
