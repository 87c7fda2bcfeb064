"""What a tracker (TensorBoard, MLflow, W&B) is asked to do, in the order a run asks it.

Every method runs on the backend's own background thread (budgetft.track.outbox), one call at a
time, in order; none is ever called from a paid step. A method may raise: the outbox notes it
and goes on. `trial_id` None means the run itself (for `budgetft train`, the one trial).
"""

from __future__ import annotations

from pathlib import Path

from budgetft.track.facts import Point, RunFacts, TrialFacts


class Backend:
    name = "backend"
    wants_files = False  # whether report files and the winner's export are worth sending it

    def start(self, run: RunFacts) -> None:
        """Open the run's record (or, for a resumed run, find the one opened before)."""

    def trial_started(self, trial: TrialFacts) -> None:
        """Open a record for a trial, nested under the run's."""

    def log(self, points: list[Point], trial_id: str | None) -> None:
        """Points on a trial's curves (or the run's, trial_id None), in step order."""

    def trial_ended(self, trial_id: str, status: str, final: dict[str, float], tags: dict[str, str]) -> None:
        """Close a trial's record: its budgetft status (rundir.TRIAL_STATUSES) and final numbers."""

    def summary(self, scalars: dict[str, float], texts: dict[str, str]) -> None:
        """The run's results: numbers, and documents (Markdown) by name."""

    def files(self, paths: list[Path], under: str) -> None:
        """Files to keep with the run's record, under the folder name `under`."""

    def folder(self, path: Path, under: str) -> None:
        """A folder's whole content to keep with the run's record, under `under`."""

    def finish(self, status: str) -> None:
        """Close the run's record: "finished", "interrupted" or "failed"."""

    def state(self) -> dict:
        """What a resumed run needs to go on with the same records (ids), as JSON."""
        return {}
