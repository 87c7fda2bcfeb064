"""MLflow: one MLflow run per budgetft run, one nested run per trial.

    experiment   $MLFLOW_EXPERIMENT_NAME, else the job's name
    parent run   named after the run directory; params: the job (model, data, methods, seed,
                 budget, price); tags: budgetft.cap_usd, budgetft.price_per_hour_usd,
                 budgetft.hardware, budgetft.device, ...; metrics: spend/run_usd over the run
                 (step: seconds since it started), then the summary (budgetft.track.summary);
                 artefacts: report/ (report.md, report.json, results.csv, plots, test.json, ...)
                 and export/ (the winner as `budgetft export` writes it)
    child runs   one per trial, tagged mlflow.parentRunId (MLflow shows them nested): params =
                 method, model and configuration; metrics over optimiser steps (budgetft.track.
                 facts); status FINISHED, KILLED (interrupted) or FAILED, with budgetft.status
                 and the stop reason or error as tags
`budgetft train` writes one run, with no children. Requests are short and never retried
(budgetft.track.choice.MLFLOW_ENV).
"""

from __future__ import annotations

import time
from pathlib import Path

from budgetft.track.backend import Backend
from budgetft.track.facts import RUN_STATUS_FOR, TRIAL_STATUS_FOR, Point, RunFacts, TrialFacts

# Imported inside functions: mlflow (the [track] extra).

BATCH = 1000  # metrics per log_batch request: MLflow's limit
PARENT_TAG = "mlflow.parentRunId"


class MlflowBackend(Backend):
    name = "mlflow"
    wants_files = True

    def __init__(self, uri: str, experiment: str, state: dict | None = None):
        self.uri, self.experiment = uri, experiment
        state = state or {}
        self.experiment_id: str | None = state.get("experiment_id")
        self.parent: str | None = state.get("parent")
        self.trials: dict[str, str] = dict(state.get("trials") or {})
        self.client = None

    def _client(self):
        if self.client is None:
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(self.uri)
        return self.client

    def start(self, run: RunFacts) -> None:
        from mlflow.entities import Param, RunTag

        client = self._client()
        if self.experiment_id is None:
            found = client.get_experiment_by_name(self.experiment)
            self.experiment_id = found.experiment_id if found is not None else client.create_experiment(self.experiment)
        tags = {"budgetft.kind": run.kind, "budgetft.job": run.job, **run.tags}
        if self.parent is not None:  # a resumed run goes on in the MLflow run it opened
            client.update_run(self.parent, status="RUNNING")
            client.log_batch(self.parent, tags=[RunTag(k, v) for k, v in tags.items()])
            return
        self.parent = client.create_run(self.experiment_id, run_name=run.run_id, tags=tags).info.run_id
        client.log_batch(self.parent, params=[Param(k, v) for k, v in run.params.items()])

    def trial_started(self, trial: TrialFacts) -> None:
        from mlflow.entities import Param

        if self.parent is None or trial.trial_id in self.trials:
            return
        client = self._client()
        tags = {PARENT_TAG: self.parent, "budgetft.trial_id": trial.trial_id, **trial.tags}
        child = client.create_run(self.experiment_id, run_name=trial.trial_id, tags=tags).info.run_id
        self.trials[trial.trial_id] = child
        client.log_batch(child, params=[Param(k, v) for k, v in trial.params.items()])

    def log(self, points: list[Point], trial_id: str | None) -> None:
        from mlflow.entities import Metric

        run_id = self.parent if trial_id is None else self.trials.get(trial_id)
        if run_id is None:
            return
        metrics = [Metric(p.name, p.value, int(p.wall * 1000), p.step) for p in points]
        for i in range(0, len(metrics), BATCH):
            self._client().log_batch(run_id, metrics=metrics[i : i + BATCH])

    def trial_ended(self, trial_id: str, status: str, final: dict[str, float], tags: dict[str, str]) -> None:
        from mlflow.entities import Metric, RunTag

        run_id = self.trials.get(trial_id)
        if run_id is None:
            return
        client = self._client()
        client.log_batch(run_id, metrics=[Metric(k, v, _now_ms(), 0) for k, v in final.items()],
                         tags=[RunTag(k, v) for k, v in {"budgetft.status": status, **tags}.items()])
        client.set_terminated(run_id, TRIAL_STATUS_FOR.get(status, "FINISHED"))

    def summary(self, scalars: dict[str, float], texts: dict[str, str]) -> None:
        from mlflow.entities import Metric

        if self.parent is None:
            return
        client = self._client()
        metrics = [Metric(k, v, _now_ms(), 0) for k, v in scalars.items()]
        for i in range(0, len(metrics), BATCH):
            client.log_batch(self.parent, metrics=metrics[i : i + BATCH])
        for name, text in texts.items():
            client.log_text(self.parent, text, f"summary/{name}.md")

    def files(self, paths: list[Path], under: str) -> None:
        if self.parent is None:
            return
        for path in paths:
            self._client().log_artifact(self.parent, str(path), artifact_path=under)

    def folder(self, path: Path, under: str) -> None:
        if self.parent is not None:
            self._client().log_artifacts(self.parent, str(path), artifact_path=under)

    def finish(self, status: str) -> None:
        if self.parent is not None:
            self._client().set_terminated(self.parent, RUN_STATUS_FOR.get(status, "FINISHED"))

    def state(self) -> dict:
        return {"uri": self.uri, "experiment": self.experiment, "experiment_id": self.experiment_id, "parent": self.parent, "trials": dict(self.trials)}


def _now_ms() -> int:
    return int(time.time() * 1000)
