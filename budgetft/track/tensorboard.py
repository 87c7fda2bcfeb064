"""TensorBoard event files: every trial's curves, and the run's summary, in the run directory.

    RUN/tensorboard/<trial_id>/events.out.tfevents.*   written by the trial's worker (TrialCurves)
    RUN/tensorboard/summary/events.out.tfevents.*      written by the driver (TensorBoardBackend):
                                                       the spend over the run, the held-out test,
                                                       the baselines, the spend by category, and
                                                       report.md as text

`tensorboard --logdir RUN` shows them (and `--logdir runs/` puts runs side by side). The writer is
tensorboardX, which Ray Tune already installs (ray[tune] depends on it), so the core install writes
event files; reading them needs the `tensorboard` package (the [track] extra) or any reader.
Writes go through an Outbox: a step only queues its numbers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from budgetft.files import write_json
from budgetft.track.backend import Backend
from budgetft.track.facts import RUN_SPEND, Point, RunFacts, eval_points, step_points
from budgetft.track.outbox import Outbox
from budgetft.track.spend import spent_so_far

# Imported inside functions: tensorboardX (it imports torch): importing this module stays cheap.

TB_DIR = "tensorboard"
SUMMARY_DIR = "summary"
CURVES_NOTES = "curves.json"  # in a trial's folder: how its curves were written, and that they were closed
FLUSH_S = 5  # the writer flushes this often: the driver forwards a trial's curves within ~this
SPEND_EVERY_S = 5.0  # the run's spend is read from the ledger at most this often per trial
CLOSE_WAIT_S = 5.0  # a trial's last points may wait this long at its end (its worker is exiting)
# Opening a trial's event file first imports tensorboardX and protobuf in its worker: ~1 s idle,
# past the outbox's 10 s call timeout on a machine busy with other runs (seen at a load of 13).
# It runs on the outbox's thread, never in a paid step, so it may take this long.
OPEN_TIMEOUT_S = 60.0


def trial_events_dir(run_root: Path, trial_id: str) -> Path:
    return Path(run_root) / TB_DIR / trial_id


def summary_events_dir(run_root: Path) -> Path:
    return Path(run_root) / TB_DIR / SUMMARY_DIR


class TrialCurves:
    """One trial's curves as event files, from its worker's callbacks, written off the paid
    path. At close it writes trials/<id>/curves.json ({"closed": true, what was dropped}):
    the driver then knows the trial's event files are complete."""

    def __init__(self, folder: Path, ledger: Path | None, notes_file: Path, config: dict | None = None):
        self.folder, self.ledger, self.notes_file = Path(folder), ledger, Path(notes_file)
        self.writer = None
        self._spend_read = 0.0
        self.outbox = Outbox("tensorboard")
        self.outbox.put(self._open, config or {}, what="opening the trial's event file", timeout_s=OPEN_TIMEOUT_S)

    @classmethod
    def for_trial(cls, run_root: Path, trial_id: str, trial_folder: Path, ledger: Path, config: dict) -> "TrialCurves":
        return cls(trial_events_dir(run_root, trial_id), ledger, Path(trial_folder) / CURVES_NOTES, config)

    # -- the worker's callbacks: each only queues

    def step(self, log) -> None:
        points = step_points(log.step, {"loss": log.loss, "lr": log.lr, "examples_per_s": log.examples_per_s})
        self.outbox.put(self._write, points, what=f"step {log.step}", merge=("points",))

    def evaluated(self, step: int, metrics: dict) -> None:
        self.outbox.put(self._write, eval_points(step, metrics), what=f"the evaluation at step {step}", merge=("points",))

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """Flush and close the event file, waiting at most `wait_s`; then write the notes."""
        self.outbox.put(self._close, what="closing the event file")
        closed = self.outbox.close(wait_s)
        try:
            write_json(self.notes_file, {"closed": closed, "events": str(self.folder), "tensorboard": self.outbox.notes_json()})
        except OSError:
            pass  # the trial's own record is what matters; the driver reads on without the notes

    # -- on the outbox's thread

    def _open(self, config: dict) -> None:
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(logdir=str(self.folder), flush_secs=FLUSH_S)
        if config:
            self.writer.add_text("trial", params_table(config), 0)

    def _write(self, points: list[Point]) -> None:
        if self.writer is None:
            return
        for p in points:
            self.writer.add_scalar(p.name, p.value, p.step, walltime=p.wall)
        now = time.monotonic()
        if self.ledger is not None and points and now - self._spend_read >= SPEND_EVERY_S:
            self._spend_read = now
            spent = spent_so_far(self.ledger)
            if spent is not None:
                last = points[-1]
                self.writer.add_scalar(RUN_SPEND, spent, last.step, walltime=last.wall)

    def _close(self) -> None:
        if self.writer is None:
            return
        writer, self.writer = self.writer, None
        try:
            writer.close()
        except ValueError as exc:
            # A trial that Tune stops ends its worker process as this runs, and tensorboardX's own
            # exit hook may close the file first; it flushes before it closes, so nothing is lost.
            if "closed file" not in str(exc):
                raise


class TensorBoardBackend(Backend):
    """The driver's event file: the run's own curves (trial_id None) and its summary. Trials'
    curves are their workers' (TrialCurves), so trial calls are ignored here."""

    name = "tensorboard"

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.writer = None

    def start(self, run: RunFacts) -> None:
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(logdir=str(self.folder), flush_secs=FLUSH_S)
        self.writer.add_text("run", params_table({**run.params, **{f"tag.{k}": v for k, v in run.tags.items()}}), 0)

    def log(self, points: list[Point], trial_id: str | None) -> None:
        if self.writer is None or trial_id is not None:
            return
        for p in points:
            self.writer.add_scalar(p.name, p.value, p.step, walltime=p.wall)

    def summary(self, scalars: dict[str, float], texts: dict[str, str]) -> None:
        if self.writer is None:
            return
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, 0)
        for name, text in texts.items():
            self.writer.add_text(name, text, 0)
        self.writer.flush()

    def finish(self, status: str) -> None:
        if self.writer is not None:
            self.writer.add_text("status", status, 0)
            self.writer.close()
            self.writer = None


def params_table(params: dict) -> str:
    """Parameters as a Markdown table (TensorBoard renders text summaries as Markdown)."""
    rows = [f"| {key} | {value if isinstance(value, str) else json.dumps(value, default=str)} |" for key, value in params.items()]
    return "\n".join(["| parameter | value |", "|---|---|", *rows])
