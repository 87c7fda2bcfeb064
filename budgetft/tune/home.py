"""Where a trial's worker sends what the run keeps, and hears the meter from.

On one machine the worker and the driver share the run directory: the worker reads the meter's
`meter.json` and writes its trial record, phase file, weights and checkpoints there itself, as
it always has (FileHome: nothing extra, not one call more).

On a cluster a worker on another machine cannot see the driver's disk. Each trial then works in
a scratch copy of the run's layout on its own node, and everything the run keeps travels through
Ray to `RunHome`, an actor pinned to the driver's node (ActorHome):
  - the meter's state, which the driver's meter thread publishes to it every half second and
    workers read before each step (the payment protocol: budgetft.money.machine_meter);
  - the phase (what the worker does, how long its next piece of work takes, on which node), which
    the meter charges to that node and prepays;
  - the trial record, after every change; its cost so far, from the ledger;
  - the kept weights and the checkpoint, as one archive each time they are written, unpacked
    into the run directory whole (budgetft.files.atomic_dir), and a checkpoint to go on from,
    fetched back;
  - the trial's TensorBoard curves, as it ends.
A lost node therefore loses only its scratch: what it paid for, recorded and kept is home.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import threading
from pathlib import Path

from budgetft.files import atomic_dir, read_json, write_json
from budgetft.rundir import PHASE_FILE, RunDir, TrialRecord
from budgetft.tune.trial_files import trial_cost

# Imported inside functions: ray: importing this module must stay cheap (start-up time).

# The actor's name within the run's namespace: one per driver session.
HOME_ACTOR = "budgetft-home"
# Seconds a worker waits for the home to answer before treating the answer as missing (a
# meter state: "no news", which the dead-driver rule turns into a stop after DEAD_DRIVER_S).
CALL_TIMEOUT_S = 20.0


def pack(folder: Path) -> bytes:
    """A folder as one uncompressed tar (weights do not compress; time matters more)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(str(folder), arcname=".")
    return buffer.getvalue()


def unpack(blob: bytes, into: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r") as tar:
        tar.extractall(into, filter="data")  # "data": no links out, no absolute paths


class RunHomeState:
    """The home's work, on the driver's node (the body of the RunHome actor; tested alone)."""

    def __init__(self, run_dir: str):
        self.run = RunDir(run_dir)
        self.state: dict | None = None
        self._lock = threading.Lock()

    def publish(self, state: dict) -> None:
        with self._lock:
            self.state = state

    def meter_state(self) -> dict | None:
        with self._lock:
            return self.state

    def phase(self, trial_id: str, phase: str | None, next_s: float, node: str | None) -> None:
        """Kept where the driver's tracker reads it (budgetft.tune.tracking): the phase file."""
        path = self.run.trial_dir(trial_id) / PHASE_FILE
        if phase is None:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"phase": phase, "next_s": round(float(next_s), 3), "node": node})

    def record(self, data: dict) -> None:
        self.run.write_trial(TrialRecord.model_validate(data))

    def trial(self, trial_id: str) -> dict | None:
        record = self.run.trial(trial_id)
        return record.model_dump(mode="json") if record is not None else None

    def cost(self, trial_id: str) -> str:
        return trial_cost(self.run, trial_id)

    def put_tree(self, relative: str, blob: bytes, what: str) -> None:
        """A folder of the run (weights, a checkpoint, curves) replaced whole by `blob`."""
        atomic_dir(self._inside(relative), lambda folder: unpack(blob, folder), what)

    def get_tree(self, relative: str) -> bytes | None:
        path = self._inside(relative)
        return pack(path) if path.is_dir() else None

    def _inside(self, relative: str) -> Path:
        path = (self.run.root / relative).resolve()
        if self.run.root.resolve() not in path.parents:
            raise ValueError(f"{relative!r} is not inside the run directory")
        return path


def start_home(run_dir: Path):
    """The RunHome actor for this session, on the driver's node (its disk is the run's), with no
    CPU of its own so that it never takes a trial's place. Returns its handle."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    actor = ray.remote(num_cpus=0, max_concurrency=16, max_restarts=0)(RunHomeState)
    here = ray.get_runtime_context().get_node_id()
    return actor.options(scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote(str(Path(run_dir).resolve()))


def stop_home(handle) -> None:
    import ray

    try:
        ray.kill(handle)
    except Exception:  # noqa: BLE001 - already gone with its node or with Ray
        pass


class FileHome:
    """One machine: the worker's run directory is the run's; nothing to send."""

    cluster = False

    def __init__(self, run: RunDir):
        self.run = run

    def meter_state(self) -> dict | None:
        return read_json(self.run.meter_json, None)

    def phase(self, trial_id: str, phase: str | None, next_s: float = 0.0) -> None:
        pass  # written by the worker into the shared run directory

    def record(self, record: TrialRecord) -> None:
        pass

    def trial(self, trial_id: str) -> TrialRecord | None:
        return self.run.trial(trial_id)

    def cost(self, trial_id: str) -> str:
        return trial_cost(self.run, trial_id)

    def sent(self, folder: Path, what: str) -> None:
        pass

    def fetch(self, relative: str) -> Path | None:
        path = self.run.root / relative
        return path if path.is_dir() else None


class ActorHome:
    """A cluster: the worker's run directory is a scratch copy on its node; the run's is reached
    through the RunHome actor. `run` is the scratch (budgetft.tune.worker works in it)."""

    cluster = True

    def __init__(self, handle, run_id: str):
        import ray

        self.handle = handle
        self.node = ray.get_runtime_context().get_node_id()
        scratch = Path(tempfile.gettempdir()) / "budgetft-scratch" / f"{run_id}-{os.getpid()}"
        scratch.mkdir(parents=True, exist_ok=True)
        self.run = RunDir(scratch)
        self._send_lock = threading.Lock()

    def _get(self, ref, default=None):
        import ray

        try:
            return ray.get(ref, timeout=CALL_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - the home (the driver's node) is unreachable: no news
            return default

    def meter_state(self) -> dict | None:
        return self._get(self.handle.meter_state.remote())

    def phase(self, trial_id: str, phase: str | None, next_s: float = 0.0) -> None:
        # Waited for: the meter must know the next piece of work before the worker waits on its payment.
        self._get(self.handle.phase.remote(trial_id, phase, next_s, self.node))

    def record(self, record: TrialRecord) -> None:
        self._get(self.handle.record.remote(record.model_dump(mode="json")))

    def trial(self, trial_id: str) -> TrialRecord | None:
        data = self._get(self.handle.trial.remote(trial_id))
        return TrialRecord.model_validate(data) if data else None

    def cost(self, trial_id: str) -> str:
        return self._get(self.handle.cost.remote(trial_id), "0")

    def sent(self, folder: Path, what: str) -> None:
        """A folder of the scratch run sent home whole (weights, a checkpoint, curves)."""
        folder = Path(folder)
        if not folder.is_dir():
            return
        relative = str(folder.resolve().relative_to(self.run.root.resolve()))
        import ray

        with self._send_lock:  # one archive at a time: the newest weights win, in order
            ray.get(self.handle.put_tree.remote(relative, pack(folder), what))

    def fetch(self, relative: str) -> Path | None:
        """A folder of the run's (a checkpoint to go on from), copied into the scratch."""
        blob = self._get(self.handle.get_tree.remote(relative))
        if blob is None:
            return None
        target = self.run.root / relative
        atomic_dir(target, lambda folder: unpack(blob, folder), "a checkpoint fetched from the run")
        return target


def home_for(ctx: dict, run: RunDir):
    """The worker's home: the run's actor on a cluster (ctx["home"]), else the run directory."""
    handle = ctx.get("home")
    if handle is None:
        return FileHome(run)
    return ActorHome(handle, Path(ctx["run_dir"]).name)
