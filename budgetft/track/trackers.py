"""The trackers of one command: each backend behind its own Outbox, every event sent to each.

A slow MLflow server therefore holds up neither TensorBoard nor W&B, and none of them the run.
Calls only queue (budgetft.track.outbox); `close` waits for them a bounded time, and what
could not be sent is in `notes()`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from budgetft.track.backend import Backend
from budgetft.track.choice import TrackChoice, mlflow_uri, prepare_mlflow
from budgetft.track.facts import Point, RunFacts, TrialFacts
from budgetft.track.outbox import Outbox

# Seconds a call that moves files (report files, the winner's export) may take, against
# CALL_TIMEOUT_S for a batch of numbers: an adapter and tokenizer are megabytes, a whole model
# hundreds of them.
FILES_TIMEOUT_S = 120.0
# Seconds opening a record may take: W&B starts its service process and MLflow its client on the
# first call (imports, a child process), several times CALL_TIMEOUT_S on a busy machine. Calls
# run on the outbox's thread, never in a paid step.
OPEN_TIMEOUT_S = 60.0


class Trackers:
    def __init__(self, backends: list[Backend]):
        self.backends = backends
        self.outboxes = [Outbox(b.name) for b in backends]

    def __bool__(self) -> bool:
        return bool(self.backends)

    @property
    def want_files(self) -> bool:
        return any(b.wants_files for b in self.backends)

    def _each(self, method: str, *args, what: str, timeout_s: float | None = None, merge: tuple | None = None, files: bool = False) -> None:
        for backend, outbox in zip(self.backends, self.outboxes):
            if files and not backend.wants_files:
                continue
            outbox.put(getattr(backend, method), *args, what=what, timeout_s=timeout_s, merge=merge)

    def start(self, run: RunFacts) -> None:
        self._each("start", run, what="opening the run's record", timeout_s=OPEN_TIMEOUT_S)

    def trial_started(self, trial: TrialFacts) -> None:
        self._each("trial_started", trial, what=f"opening {trial.trial_id}'s record", timeout_s=OPEN_TIMEOUT_S)

    def log(self, points: list[Point], trial_id: str | None = None) -> None:
        if points:
            self._each("log", points, trial_id, what=f"metrics of {trial_id or 'the run'}", merge=("log", trial_id))

    def trial_ended(self, trial_id: str, status: str, final: dict[str, float], tags: dict[str, str]) -> None:
        self._each("trial_ended", trial_id, status, final, tags, what=f"closing {trial_id}'s record")

    def summary(self, scalars: dict[str, float], texts: dict[str, str]) -> None:
        self._each("summary", scalars, texts, what="the run's summary")

    def files(self, paths: list[Path], under: str) -> None:
        if paths:
            self._each("files", paths, under, what=f"{under} files", timeout_s=FILES_TIMEOUT_S, files=True)

    def folder(self, path: Path, under: str) -> None:
        self._each("folder", path, under, what=f"the {under} folder", timeout_s=FILES_TIMEOUT_S, files=True)

    def finish(self, status: str) -> None:
        self._each("finish", status, what="closing the run's record")

    def wait_idle(self, seconds: float) -> bool:
        deadline = time.monotonic() + max(0.0, seconds)
        return all(o.wait_idle(deadline - time.monotonic()) for o in self.outboxes)

    def close(self, seconds: float) -> bool:
        """Wait up to `seconds` for the queued calls, every backend at once (a stalled one takes
        no time from the others); drop (and note) what is left."""
        deadline = time.monotonic() + max(0.0, seconds)
        while not all(o.idle() for o in self.outboxes) and time.monotonic() < deadline:
            time.sleep(0.05)
        return all([o.close(0.0) for o in self.outboxes])

    def notes(self) -> dict[str, dict]:
        return {o.name: o.notes_json() for o in self.outboxes}

    def lost(self) -> list[str]:
        """One phrase per backend that dropped something: "mlflow: 2 failed, 14 dropped"."""
        return [f"{o.name}: {o.notes.in_words()}" for o in self.outboxes if o.notes.any()]

    def state(self) -> dict[str, dict]:
        return {b.name: b.state() for b in self.backends}


def remote_backends(choices: list[TrackChoice], job: str, directory: Path, state: dict | None = None) -> list[Backend]:
    """The MLflow and W&B backends the choices name (TensorBoard is the caller's: its files go
    where the command keeps them). `directory`: where W&B writes its files (offline runs);
    `state`: what a resumed run recorded of them (tracking.json)."""
    state = state or {}
    out: list[Backend] = []
    for choice in choices:
        if choice.kind == "mlflow":
            from budgetft.track.mlflow_backend import MlflowBackend

            uri = mlflow_uri(choice)
            prepare_mlflow(uri)
            previous = state.get("mlflow") or {}
            experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or job
            out.append(MlflowBackend(uri, experiment, previous if previous.get("uri") == uri else None))
        elif choice.kind == "wandb":
            from budgetft.track.wandb_backend import WandbBackend

            entity, project = choice.wandb_entity_project
            previous = state.get("wandb") or {}
            same = previous.get("project") == project and previous.get("entity") == entity
            out.append(WandbBackend(project, entity, directory, previous if same else None))
    return out
