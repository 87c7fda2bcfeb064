"""`budgetft train --track ...`: the one trial as one tracker run, fed from its callbacks.

No run directory and no money here: params are the job's and the method's configuration, the
curves come straight from the loop's callbacks (each only queues), and the summary holds the
final evaluation beside both baselines. `--track tensorboard[=DIR]` writes event files to DIR
(default runs/<job>-train-<time>).
"""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from pathlib import Path

from budgetft import __version__
from budgetft.track.choice import TrackChoice
from budgetft.track.facts import RUN_STATUS_FOR, RunFacts, eval_points, flat, step_points
from budgetft.track.tensorboard import TensorBoardBackend
from budgetft.track.trackers import Trackers, remote_backends

FINISH_WAIT_S = 60.0  # the most `train` waits at its end for the trackers, seconds


def train_run_name(job: str) -> str:
    return f"{job}-train-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}"


class TrainTracking:
    def __init__(self, choices: list[TrackChoice], job: str, method: str, config: dict, device: str, runs_root: Path = Path("runs")):
        self.name = train_run_name(job)
        self.events_dir: Path | None = None
        backends = []
        for choice in choices:
            if choice.kind == "tensorboard":
                self.events_dir = Path(choice.target) if choice.target else runs_root / self.name
                backends.append(TensorBoardBackend(self.events_dir))
        backends += remote_backends(choices, job, Path.cwd())
        self.trackers = Trackers(backends)
        self.facts = RunFacts(
            run_id=self.name, job=job, kind="train",
            params=flat({"job": job, "method": method, "config": config}),
            tags={"budgetft.method": method, "budgetft.device": device, "budgetft.hardware": f"{device}; {os.cpu_count()} CPUs; {platform.platform()}",
                  "budgetft.version": __version__},
        )

    def start(self) -> "TrainTracking":
        self.trackers.start(self.facts)
        return self

    def step(self, log) -> None:
        self.trackers.log(step_points(log.step, {"loss": log.loss, "lr": log.lr, "examples_per_s": log.examples_per_s}))

    def evaluated(self, step: int, metrics: dict) -> None:
        self.trackers.log(eval_points(step, metrics))

    def finish(self, record: dict | None, status: str = "finished", wait_s: float = FINISH_WAIT_S) -> str:
        """The final numbers and both baselines, then the record closed; returns what was lost
        in words, or ""."""
        if record is not None:
            scalars: dict[str, float] = {}
            for key in ("accuracy", "balanced_accuracy", "macro_f1", "eval_loss"):
                _put(scalars, f"final/{key}", (record.get("final") or {}).get(key))
            for name in ("majority", "zero_shot"):
                _put(scalars, f"baseline/{name}_accuracy", ((record.get("baselines") or {}).get(name) or {}).get("accuracy"))
            for key in ("steps", "examples", "trainable_params", "examples_per_s", "train_seconds", "wall_seconds"):
                _put(scalars, key, record.get(key))
            self.trackers.summary(scalars, {})
        self.trackers.finish(status if status in RUN_STATUS_FOR else "finished")
        self.trackers.close(wait_s)
        return "; ".join(self.trackers.lost())


def _put(out: dict[str, float], name: str, value) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        out[name] = float(value)
