"""The run directory: everything a run records, in one place, readable while the run goes on.

Layout (all JSON is UTF-8; "metrics" objects are budgetft.metrics.classification_metrics
output plus eval_loss, including the per-row `correct` vector for significance tests):

  run.json           {schema, run_id, job, started, finished|null, status, budget_usd, cap_usd,
                      price_per_hour, price_source, device, hardware, region|null}
                     status: running | finished | interrupted | failed
                     region: the grid region a local run was given with --region, for the
                     report's CO2 (cloud runs' region is in cloud/launch-<n>.json)
  job.yaml           the resolved job spec
  plan.json          the latest round's plan (trials per method, max steps, rungs, reserve, ...),
                     with "round", "rounds" (every round's plan and its trial ids: money that
                     ASHA freed is planned again) and "trials" (every trial planned so far)
  ledger.jsonl       every charge, append-only, fsynced (budgetft.money.ledger)
  baselines.json     {"majority": metrics + majority_class, "zero_shot": metrics + seconds}
  calibration.json   per method: seconds_per_step, examples_per_s, peak_memory_mb, ...; and on a
                     GPU "packing": trials per GPU and the measured figures behind it
  telemetry.jsonl    hardware samples, about one per second: utilization, memory, GPU power (W)
                     and, where readable, RAPL CPU energy counters (see telemetry/sampler.py);
                     the report integrates them into each trial's energy (Wh) and CO2
  trials/<trial_id>/trial.json
                     {trial_id, method, config, status, steps, examples, trainable_params,
                      total_params, examples_per_s, padded_share, cost_usd, started, ended,
                      error|null, evals: [metrics + {step, train_loss, cost_usd, elapsed_s}]}
                     status: running | finished | stopped_early | stopped_by_cap | interrupted | failed
                     (interrupted: the run was stopped by Ctrl-C, SIGTERM or a crash mid-trial)
                     stop_reason: why it stopped before its plan, in words; error: why it failed
  trials/<trial_id>/adapter/   the trial's best weights (peft adapter or trainable tensors)
  cloud/launch-<n>.json   cloud runs: each VM's record (region, machine, price, ...)
  report.md, report.json, results.csv, *.png   written by `budgetft report`
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
TRIAL_STATUSES = ("running", "finished", "stopped_early", "stopped_by_cap", "interrupted", "failed")
RUN_STATUSES = ("running", "finished", "interrupted", "failed")


def write_json(path: Path, data: Any) -> None:
    """Atomic write: readers (reports on a live run, a resumed run) never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


class RunDir:
    def __init__(self, root: Path | str):
        self.root = Path(root)

    # files
    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def job_yaml(self) -> Path:
        return self.root / "job.yaml"

    @property
    def plan_json(self) -> Path:
        return self.root / "plan.json"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.jsonl"

    @property
    def baselines_json(self) -> Path:
        return self.root / "baselines.json"

    @property
    def calibration_json(self) -> Path:
        return self.root / "calibration.json"

    @property
    def telemetry(self) -> Path:
        return self.root / "telemetry.jsonl"

    @property
    def trials_dir(self) -> Path:
        return self.root / "trials"

    def trial_dir(self, trial_id: str) -> Path:
        return self.trials_dir / trial_id

    # reading
    def run(self) -> dict:
        return read_json(self.run_json, {})

    def baselines(self) -> dict:
        return read_json(self.baselines_json, {})

    def plan(self) -> dict:
        return read_json(self.plan_json, {})

    def trials(self) -> list[dict]:
        if not self.trials_dir.is_dir():
            return []
        found = [read_json(p / "trial.json") for p in sorted(self.trials_dir.iterdir()) if (p / "trial.json").is_file()]
        return [t for t in found if t]

    def exists(self) -> bool:
        return self.run_json.is_file()
