"""Which trial of a run `predict` and `export` use: the run's winner, or one named with --trial.

The run's winner is the one its held-out test scored (test.json), chosen by RunDir.winner's rule:
the most accurate trial on the selection rows among those that kept weights.

Every check here reads JSON files only: a bad run directory or trial id is refused before any
model is loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from budgetft.report.load import NotARunDir, load_run
from budgetft.rundir import RunDir
from budgetft.spec import load_job
from budgetft.use import UseError

WEIGHTS_DIR = "adapter"  # trials/<id>/adapter: the trial's kept weights (runner/trainable.py)
MANIFEST = "budgetft_method.json"  # written beside the weights by methods/persist.py


@dataclass(frozen=True)
class ChosenTrial:
    run_dir: Path
    report: Any  # budgetft.report.load.RunReport
    row: Any  # the trial's budgetft.report.rows.Row: accuracy, CI, test against the majority, cost
    method: str
    config: dict
    weights: Path  # the folder with the kept weights and their manifest
    manifest: dict  # budgetft_method.json: method, config, layout (peft | tensors), class_bias
    named: bool  # True: chosen with --trial; False: the run's winner
    model: str | None = None  # the job's model it trained (None: the job's own)

    def job(self):
        """The job as this trial trained: its model's variant of the run's job."""
        job = load_job(self.job_yaml)
        return job.variant(self.model) if self.model else job

    @property
    def trial_id(self) -> str:
        return self.row.id

    @property
    def class_bias(self) -> list[float] | None:
        return self.manifest.get("class_bias")

    @property
    def job_yaml(self) -> Path:
        return self.run_dir / "job.yaml"


def weights_of(run_dir: Path, trial_id: str) -> Path:
    return Path(run_dir) / "trials" / trial_id / WEIGHTS_DIR


def has_weights(run_dir: Path, trial_id: str) -> bool:
    return (weights_of(run_dir, trial_id) / MANIFEST).is_file()


def winner_of(report: Any, run_dir: Path) -> Any | None:
    """The trial a run hands over (its held-out test's winner when it ran one, else the same rule:
    budgetft.rundir.RunDir.winner), as the report's row; None when no trial kept weights."""
    run = RunDir(run_dir)
    test = run.test() or {}
    winner_id = test.get("winner") or getattr(run.winner(), "trial_id", None)
    row = next((t for t in report.trials if t.id == winner_id), None)
    if row is not None and row.accuracy is None:
        return None  # never evaluated (a test.json written before that rule): nothing measured it
    return row


def choose_trial(run_dir: Path | str, trial_id: str | None = None) -> ChosenTrial:
    """The run's winner, or the trial named `trial_id` (its full id, or a prefix naming one
    trial, e.g. t002). Raises UseError naming the fix."""
    run_dir = Path(run_dir)
    try:
        report = load_run(run_dir)
    except NotARunDir as exc:
        raise UseError(f"{exc}; give the directory of a `budgetft run` (it holds run.json and trials/)") from None
    if not (run_dir / "job.yaml").is_file():
        raise UseError(f"{run_dir} has no job.yaml, so the prompt and label words its trials were trained with are unknown; "
                       "give a complete run directory (a cloud run's is complete once `budgetft run --cloud` has brought it home)")
    kept = [t.id for t in report.trials if has_weights(run_dir, t.id)]
    if trial_id is not None:
        row = _named(report, trial_id)
        if not has_weights(run_dir, row.id):
            raise UseError(
                f"trial {row.id} kept no weights ({weights_of(run_dir, row.id) / MANIFEST} is missing; "
                f"status: {row.ended}, {row.evaluations} evaluations); "
                + (f"trials with weights: {', '.join(kept)}" if kept else "no trial of this run kept weights")
            )
        named = True
    else:
        row = winner_of(report, run_dir)
        if row is None:
            why = RunDir(run_dir).no_winner_reason() or "no evaluated trial kept weights"
            raise UseError(
                f"{run_dir} has no winner to use: {why}; run longer (a larger --budget), look at `budgetft report` "
                "for why trials stopped, or name a trial with --trial"
            )
        named = False
    weights = weights_of(run_dir, row.id)
    manifest = _manifest(weights)

    record = RunDir(run_dir).trial(row.id)
    model = record.model if record is not None else None
    return ChosenTrial(run_dir, report, row, manifest["method"], dict(manifest.get("config") or {}), weights, manifest, named, model)


def _named(report: Any, wanted: str) -> Any:
    ids = [t.id for t in report.trials]
    if wanted in ids:
        return report.trials[ids.index(wanted)]
    matches = [t for t in report.trials if t.id.startswith(wanted)]
    if len(matches) == 1:
        return matches[0]
    listed = ", ".join(ids) or "none"
    if matches:
        raise UseError(f"--trial {wanted!r} names several trials ({', '.join(t.id for t in matches)}); give a full id")
    raise UseError(f"no trial {wanted!r} in {report.root}; its trials: {listed}")


def _manifest(weights: Path) -> dict:
    path = weights / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UseError(f"{path} cannot be read ({exc}); the trial's weights are damaged: choose another trial with --trial") from None
    if not isinstance(data, dict) or "method" not in data or data.get("layout") not in ("peft", "tensors"):
        raise UseError(f"{path} is not a budgetft weights manifest (method and layout); choose another trial with --trial")
    return data
