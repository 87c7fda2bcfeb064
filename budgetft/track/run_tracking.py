"""A run's tracking, as the driver sees it: started with the session, finished with the report.

    start()   TensorBoard's summary writer (always) and the --track backends open the run's
              record; the follower thread (budgetft.track.follow) starts passing on the trials
    finish()  a last pass over the trials, then the summary (test, baselines, spend by
              category), the report files and the winner's export, and the records closed,
              all within the seconds the driver can still pay for; what did not make it is
              dropped and written down

Everything is recorded in RUN/tracking.json: the trackers, the ids a resumed run goes on with,
how far each trial's events were passed on, and what each tracker dropped (and why).
"""

from __future__ import annotations

import atexit
import importlib.util
import shutil
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Callable

from budgetft.files import read_json, write_json
from budgetft.rundir import RunDir, RunInfo
from budgetft.track.choice import TrackChoice
from budgetft.track.facts import RunFacts, flat
from budgetft.track.follow import POLL_S, TrialFollower
from budgetft.track.summary import report_files, summary_of
from budgetft.track.tensorboard import CURVES_NOTES, TB_DIR, TensorBoardBackend, summary_events_dir
from budgetft.track.trackers import Trackers, remote_backends

TRACKING_FILE = "tracking.json"
# The longest the report stage waits for the trackers, seconds (less when the money left buys
# less): the summary and report files take seconds; an export of a whole model to a remote
# server may not fit, and is then dropped and noted.
FINISH_MAX_S = 120.0
EXPORT_SHARE = 0.6  # of the wait, the most the winner's export may take before the uploads


class RunTracking:
    def __init__(self, run: RunDir, choices: list[TrackChoice], facts: RunFacts):
        self.run, self.choices, self.facts = run, choices, facts
        self.path = run.root / TRACKING_FILE
        self.previous = read_json(self.path, {}) or {}
        backends = [TensorBoardBackend(summary_events_dir(run.root))] if _importable("tensorboardX") else []
        backends += remote_backends(choices, facts.job, run.root, self.previous.get("backends"))
        self.trackers = Trackers(backends)
        self.follower = TrialFollower(run, self.trackers, self.previous.get("follower"), tags=facts.tags, started=_started(run))
        self.notes: list[str] = [] if backends and backends[0].name == "tensorboard" else ["tensorboardX is not installed: no TensorBoard event files"]
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one pass over the trials at a time (the thread's, or the last one)
        self._thread: threading.Thread | None = None

    def start(self) -> "RunTracking":
        self.trackers.start(self.facts)
        self._save()
        self._thread = threading.Thread(target=self._follow, name="budgetft-track-follow", daemon=True)
        self._thread.start()
        return self

    def _follow(self) -> None:
        while not self._stop.wait(POLL_S):
            self._poll()

    def _poll(self, final: bool = False) -> None:
        try:
            with self._lock:
                self.follower.poll(final)
                self._save()
        except Exception as exc:  # noqa: BLE001 - tracking must never fail the run
            if len(self.notes) < 20:
                self.notes.append(f"reading the trials for the trackers failed: {type(exc).__name__}: {exc}")

    def finish(self, status: str, seconds: float) -> str:
        """Send the run's results and close every record, waiting at most `seconds` (and
        FINISH_MAX_S); returns a line for the terminal when something was lost, else ""."""
        deadline = time.monotonic() + max(0.0, min(seconds, FINISH_MAX_S))
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(0.0, min(POLL_S, deadline - time.monotonic())))
        self._poll(final=True)
        scalars, texts = summary_of(self.run)
        self.trackers.summary(scalars, texts)
        export_dir = None
        if self.trackers.want_files:
            self.trackers.files(report_files(self.run.root), "report")
            export_dir = self._export(EXPORT_SHARE * (deadline - time.monotonic()))
            if export_dir is not None:
                self.trackers.folder(export_dir, "export")
        self.trackers.finish(status)
        complete = self.trackers.close(deadline - time.monotonic())
        if export_dir is not None:
            if complete:
                shutil.rmtree(export_dir.parent, ignore_errors=True)
            else:  # a call may still be reading it; the process's exit removes it
                atexit.register(shutil.rmtree, export_dir.parent, True)
        self._save(final=True)
        lost = self.trackers.lost() + _worker_losses(self.run)
        if not lost and not self.notes:
            return ""
        return "; ".join(lost + self.notes[:3]) + f" (details in {self.path})"

    def _export(self, seconds: float) -> Path | None:
        """The winner as `budgetft export` writes it, in a temporary folder; None (and a note)
        when there is no winner, it cannot be exported, or it takes longer than `seconds`."""
        if self.run.winner() is None:
            return None
        from budgetft.use.export import ExportRequest, export

        target = Path(tempfile.mkdtemp(prefix="budgetft-export-")) / "winner"
        outcome: dict[str, str] = {}

        def work() -> None:
            try:
                export(ExportRequest(self.run.root, target))
            except Exception as exc:  # noqa: BLE001 - UseError (not exportable) or worse: noted, never raised
                outcome["why"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"

        worker = threading.Thread(target=work, name="budgetft-track-export", daemon=True)
        worker.start()
        worker.join(timeout=max(0.0, seconds))
        if worker.is_alive():
            self.notes.append(f"the winner's export took more than {seconds:.0f} s: not sent to the trackers")
            atexit.register(shutil.rmtree, target.parent, True)
            return None
        if "why" in outcome:
            self.notes.append(f"the winner could not be exported for the trackers ({outcome['why']})")
            shutil.rmtree(target.parent, ignore_errors=True)
            return None
        return target

    def _save(self, final: bool = False) -> None:
        record = {
            "trackers": ["tensorboard", *(str(c) for c in self.choices if c.kind != "tensorboard")],
            "tensorboard": TB_DIR,
            "backends": self.trackers.state(),
            "follower": self.follower.state(),
            "notes": self.trackers.notes(),
            "messages": list(self.notes),
        }
        if final:
            record["finished"] = True
        try:
            write_json(self.path, record)
        except OSError:
            pass  # the run's own records come first; the next save tries again


def run_facts(run: RunDir, info: RunInfo, job: dict) -> RunFacts:
    """The run as every tracker records it: the job's main settings as params, and the cap,
    price and hardware as tags."""
    params = flat({
        "job": job.get("name"), "model": (job.get("model") or {}).get("name"), "models": [m.get("name") for m in job.get("models") or []],
        "data": (job.get("data") or {}).get("name"), "label_field": (job.get("data") or {}).get("label_field"),
        "methods": list(job.get("methods") or {}), "seed": job.get("seed"),
        "train": {k: (job.get("train") or {}).get(k) for k in ("batch_size", "max_steps", "eval_every")},
        "eval": {k: (job.get("eval") or {}).get(k) for k in ("limit", "test_rows")},
        "budget_usd": info.budget_usd, "price_per_hour_usd": info.price_per_hour,
    })
    hardware = info.hardware or {}
    tags = {
        "budgetft.cap_usd": str(info.cap_usd), "budgetft.price_per_hour_usd": str(info.price_per_hour), "budgetft.price_source": info.price_source or "",
        "budgetft.hardware": f"{info.device}; {hardware.get('cpus')} CPUs; {hardware.get('platform')}", "budgetft.device": info.device or "",
        "budgetft.version": info.budgetft_version, "budgetft.code": info.code or "", "budgetft.run_dir": str(run.root.resolve()),
    }
    return RunFacts(run_id=info.run_id or run.root.name, job=info.job or str(job.get("name")), kind="run", params=params, tags=tags)


def start_run_tracking(run: RunDir, info: RunInfo, job: dict, choices: list[TrackChoice], warn: Callable[[str], None] = lambda line: None) -> RunTracking | None:
    """The run's tracking started, or None (with a warning) if it cannot be: tracking never
    stops a run that the checks before spending let through."""
    try:
        return RunTracking(run, choices, run_facts(run, info, job)).start()
    except Exception as exc:  # noqa: BLE001
        warn(f"tracking could not start ({type(exc).__name__}: {exc}); the run goes on without it")
        return None


def _worker_losses(run: RunDir) -> list[str]:
    """What trials' workers dropped while writing their event files."""
    lost = []
    for folder in sorted(run.trials_dir.glob("*")) if run.trials_dir.is_dir() else []:
        notes = ((read_json(folder / CURVES_NOTES, None) or {}).get("tensorboard") or {})
        if notes.get("failed") or notes.get("timed_out") or notes.get("dropped"):
            lost.append(f"{folder.name}'s event file: {notes.get('failed', 0)} failed, {notes.get('timed_out', 0)} timed out, {notes.get('dropped', 0)} dropped")
    return lost


def _started(run: RunDir) -> float | None:
    """When the run started (run.json, unix seconds), for its spend curve's steps."""
    try:
        return datetime.fromisoformat(str(run.run().started).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
