"""Weights & Biases: the run and each of its trials as W&B runs of one group.

W&B has no nested runs; its way to keep a sweep's runs together is a group. So:
    the run     job_type "run" (or "train"), named after the run directory, group = that name;
                config: the job; tags: "cap $X", "price $Y/h", "hardware ..."; history:
                spend/run_usd over the run; summary: the run's results (budgetft.track.summary);
                artefacts: "<run>-report" (type report) and "<run>-export" (type model)
    each trial  job_type "trial", same group, named after the trial; config: method, model and
                configuration; history over optimiser steps (budgetft.track.facts); summary:
                its final numbers and budgetft status
With WANDB_MODE=offline (or no network, as W&B itself decides) everything goes to files under
the run directory (RUN/wandb/offline-run-*), for `wandb sync` later. W&B's console capture and
system statistics are off: the run's display is budgetft's, and its telemetry budgetft's own.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from budgetft.track.backend import Backend
from budgetft.track.facts import Point, RunFacts, TrialFacts

# Imported inside functions: wandb (the [track] extra).

TAG_MAX = 64  # characters: W&B's limit for a tag


class WandbBackend(Backend):
    name = "wandb"
    wants_files = True

    def __init__(self, project: str, entity: str | None, directory: Path, state: dict | None = None):
        self.project, self.entity, self.directory = project, entity, Path(directory)
        state = state or {}
        self.parent_id: str | None = state.get("parent")
        self.trial_ids: dict[str, str] = dict(state.get("trials") or {})
        self.parent = None
        self.group = ""
        self.runs: dict[str, object] = {}  # trial id -> its open W&B run

    def _init(self, **kwargs):
        os.environ.setdefault("WANDB_SILENT", "true")  # its own lines would break into the run's display
        import wandb

        settings = wandb.Settings(console="off", silent=True, x_disable_stats=True, save_code=False, disable_git=True,
                                  disable_job_creation=True, x_save_requirements=False)
        self.directory.mkdir(parents=True, exist_ok=True)
        return wandb.init(project=self.project, entity=self.entity, dir=str(self.directory), group=self.group, reinit="create_new",
                          settings=settings, **kwargs)

    def start(self, run: RunFacts) -> None:
        self.group = run.run_id
        resume = {"id": self.parent_id, "resume": "allow"} if self.parent_id else {}
        self.parent = self._init(name=run.run_id, job_type=run.kind, config=dict(run.params), tags=_tags(run.tags), **resume)
        self.parent_id = self.parent.id

    def trial_started(self, trial: TrialFacts) -> None:
        if self.parent is None or trial.trial_id in self.runs:
            return
        known = self.trial_ids.get(trial.trial_id)
        resume = {"id": known, "resume": "allow"} if known else {}
        run = self._init(name=trial.trial_id, job_type="trial", config=dict(trial.params), tags=_tags(trial.tags), **resume)
        self.runs[trial.trial_id] = run
        self.trial_ids[trial.trial_id] = run.id

    def _trial_run(self, trial_id: str):
        """The trial's open W&B run; one a previous session opened (a resumed run) is resumed."""
        if trial_id not in self.runs and trial_id in self.trial_ids and self.parent is not None:
            self.runs[trial_id] = self._init(name=trial_id, job_type="trial", id=self.trial_ids[trial_id], resume="allow")
        return self.runs.get(trial_id)

    def log(self, points: list[Point], trial_id: str | None) -> None:
        run = self.parent if trial_id is None else self._trial_run(trial_id)
        if run is None:
            return
        by_step: dict[int, dict[str, float]] = {}
        for p in points:
            by_step.setdefault(p.step, {})[p.name] = p.value
        for step in sorted(by_step):
            run.log(by_step[step], step=step)

    def trial_ended(self, trial_id: str, status: str, final: dict[str, float], tags: dict[str, str]) -> None:
        self._trial_run(trial_id)
        run = self.runs.pop(trial_id, None)
        if run is None:
            return
        run.summary.update({**final, "budgetft/status": status, **{k.replace("budgetft.", "budgetft/"): v for k, v in tags.items()}})
        run.finish(exit_code=1 if status == "failed" else 0)

    def summary(self, scalars: dict[str, float], texts: dict[str, str]) -> None:
        if self.parent is None:
            return
        self.parent.summary.update(scalars)
        self.parent.summary.update({f"text/{name}": text for name, text in texts.items() if len(text) <= 4000})

    def files(self, paths: list[Path], under: str) -> None:
        self._artifact(under, "report", paths=paths)

    def folder(self, path: Path, under: str) -> None:
        self._artifact(under, "model" if under == "export" else under, folder=path)

    def _artifact(self, under: str, kind: str, paths: list[Path] = (), folder: Path | None = None) -> None:
        import wandb

        if self.parent is None:
            return
        artifact = wandb.Artifact(_artifact_name(f"{self.group}-{under}"), type=kind)
        for path in paths:
            artifact.add_file(str(path))
        if folder is not None:
            artifact.add_dir(str(folder))
        self.parent.log_artifact(artifact)

    def finish(self, status: str) -> None:
        for trial_id in list(self.runs):  # trials never seen to end (the run was interrupted)
            self.trial_ended(trial_id, "interrupted", {}, {})
        if self.parent is not None:
            self.parent.summary.update({"budgetft/status": status})
            self.parent.finish(exit_code=0 if status == "finished" else 1)
            self.parent = None

    def state(self) -> dict:
        return {"project": self.project, "entity": self.entity, "parent": self.parent_id, "trials": dict(self.trial_ids)}


def _tags(tags: dict[str, str]) -> list[str]:
    """budgetft's tags as W&B tags ("cap_usd 1.00"), each within W&B's length limit."""
    out = []
    for key, value in tags.items():
        text = f"{key.removeprefix('budgetft.')} {value}".strip()
        out.append(text[:TAG_MAX])
    return out


def _artifact_name(text: str) -> str:
    """W&B artefact names: letters, digits, dashes, underscores and dots."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:128]
