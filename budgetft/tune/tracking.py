"""Driver-side bookkeeping for trials under Ray Tune: who is running, how each one ended,
and the stop-everything switch that the machine meter flips when the money runs out."""

from __future__ import annotations

import threading
from pathlib import Path

from ray import tune

from budgetft.files import read_json
from budgetft.money.machine_meter import stopped_by_cap
from budgetft.rundir import RunDir
from budgetft.tune.trial_files import read_node, read_phase


def meter_stopped(run_dir: Path) -> bool:
    """The meter says stop: the cap, or the driver interrupting the run (a signal, a full disk)."""
    state = read_json(RunDir(run_dir).meter_json, {}) or {}
    return bool(state.get("stop"))


def cap_stopped(run_dir: Path) -> bool:
    """The meter says stop because the money is spent (not an interruption)."""
    return stopped_by_cap(read_json(RunDir(run_dir).meter_json, {}) or {})


class CapStopper(tune.Stopper):
    """Stops every trial once the meter can no longer pay for training time. It reads the
    meter's published state (meter.json), so it holds nothing that cannot be pickled."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def __call__(self, trial_id: str, result: dict) -> bool:
        return meter_stopped(self.run_dir)

    def stop_all(self) -> bool:
        return meter_stopped(self.run_dir)


class TrialTracker(tune.Callback):
    def __init__(self, run: RunDir, on_change=None, on_start=None):
        self.run = run
        self.on_change = on_change or (lambda event=None: None)  # hears a one-line event
        self.on_start = on_start  # called as each trial starts (records Ray's processes)
        self.ids: dict[str, str] = {}  # Ray's trial id -> ours
        self.running: set[str] = set()
        self.best: tuple[float, str] | None = None
        self.finished: list[dict] = []
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks with the experiment state; the live hooks stay behind.
        state = {k: v for k, v in self.__dict__.items() if k not in ("on_change", "on_start", "_lock")}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.on_change = lambda event=None: None
        self.on_start = None
        self._lock = threading.Lock()

    def phases(self) -> dict[str, str]:
        """Our running trial ids -> "training" | "evaluating" | "starting", for the meter's charges."""
        return {trial_id: phase for trial_id, (phase, _) in self._phase_files().items()}

    def needs(self) -> float:
        """The longest next piece of work a running worker has announced, seconds: the meter
        prepays at least that far ahead, so a slow step waits for no one."""
        return max((next_s for _, next_s in self._phase_files().values()), default=0.0)

    def placement(self) -> dict[str, str]:
        """On a cluster: our running trial ids -> the Ray node id each runs on, as its worker said
        (budgetft.tune.home), for the meter's per-node charges. Empty on one machine."""
        with self._lock:
            running = list(self.running)
        return {trial_id: node for trial_id in running if (node := read_node(self.run.trial_dir(trial_id)))}

    def _phase_files(self) -> dict[str, tuple[str, float]]:
        with self._lock:
            running = list(self.running)
        return {trial_id: read_phase(self.run.trial_dir(trial_id)) or ("starting", 0.0) for trial_id in running}

    def on_trial_start(self, iteration, trials, trial, **info):
        ours = trial.config["trial"]["trial_id"]
        with self._lock:
            self.ids[trial.trial_id] = ours
            self.running.add(ours)
        if self.on_start is not None:
            try:
                self.on_start()
            except Exception:  # noqa: BLE001 - bookkeeping for clean-up must not stop a trial
                pass
        self.on_change(f"{ours}: started")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        acc = result.get("accuracy")
        if acc is not None and (self.best is None or acc > self.best[0]):
            self.best = (acc, self.ids.get(trial.trial_id, "?"))
        ours = self.ids.get(trial.trial_id, "?")
        self.on_change(f"{ours}: step {result.get('step')}, accuracy {100 * acc:.1f}%" if acc is not None else None)

    def _end(self, trial, error: str | None) -> None:
        ours = self.ids.get(trial.trial_id, trial.config["trial"]["trial_id"])
        with self._lock:
            self.running.discard(ours)
        interrupted = meter_stopped(self.run.root) and not cap_stopped(self.run.root)
        record = self.run.finalize_trial(ours, budget_stopped=cap_stopped(self.run.root), interrupted=interrupted, error=error)
        if record:
            self.finished.append(record)
        status = (record or {}).get("status", "ended")
        self.on_change(f"{ours}: {status.replace('_', ' ')} after {(record or {}).get('steps', '?')} steps")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._end(trial, None)

    def on_trial_error(self, iteration, trials, trial, **info):
        ours = self.ids.get(trial.trial_id, trial.config["trial"]["trial_id"])
        record = self.run.trial(ours)
        lost = self.node_lost(record.node) if record is not None and record.node else None
        self._end(trial, lost or ray_error_in_words(_error_text(trial)))

    def node_lost(self, node_id: str) -> str | None:
        """Words for a trial whose node is gone (killed, preempted), or None while it is alive.
        Ray's own error says only that the worker died; the node's state says why."""
        try:
            import ray

            state = next((n for n in ray.nodes() if n.get("NodeID") == node_id), None)
        except Exception:  # noqa: BLE001 - Ray cannot say: the worker's own words stand
            return None
        if state is not None and state.get("Alive"):
            return None
        return (f"its node {node_id[:8]} was lost (killed, preempted or cut off) mid-trial; what it paid for "
                "is in the ledger and the run went on with the other nodes")


def _error_text(trial) -> str:
    """Ray's text for a failed trial: its error file, written just before this callback."""
    try:
        path = trial.error_file
        if path and Path(path).is_file():
            return Path(path).read_text(errors="replace")
        return str(trial.get_error() or "")
    except Exception:  # noqa: BLE001 - the error file may be gone with a killed worker
        return ""


def ray_error_in_words(text: str) -> str:
    """What Ray says about a trial that failed, in one line a user understands. A worker that
    raised has already written its own error (which this does not replace); these are the
    cases where the process itself went away."""
    if "OutOfMemoryError" in text or "low on memory" in text:
        return "killed for lack of memory: the machine ran low on memory and Ray ended the trial's process"
    if any(k in text for k in ("ActorDiedError", "RayActorError", "died unexpectedly", "WorkerCrashedError", "SIGKILL", "exit code")):
        return ("its worker process died without a word (killed by a signal, e.g. the OS's out-of-memory "
                "killer or a kill -9, or crashed); the run went on with the other trials")
    first = next((line.strip() for line in text.splitlines() if line.strip() and not line.startswith("Failure #")), "")
    return f"the trial's process failed: {first[:200]}" if first else "the trial's process failed (no error was recorded)"
