"""The run directory: everything a run records, in one place, readable while the run goes on.

Layout (all JSON is UTF-8; "metrics" objects are budgetft.metrics.classification_metrics
output plus eval_loss, including the per-row `correct` vector for significance tests):

  run.json           {schema, run_id, job, started, finished|null, status, budget_usd, cap_usd,
                      price_per_hour, price_source, device, hardware, region|null}
                     status: running | finished | interrupted | failed
                     machine_starts: {start id: [sessions]} (the billing minimum is per start)
                     region: the grid region a local run was given with --region, for the
                     report's CO2 (cloud runs' region is in cloud/launch-<n>.json)
  driver.lock        flock'ed by the live driver for its whole life, with its PID (budgetft.runlock):
                     a second driver on the run is refused, naming it
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
                      error|null, evals: [metrics + {step, train_loss, cost_usd, elapsed_s}],
                      memory: {micro_batch, checkpointing, placement, shrunk, ...}}
                     status: running | finished | stopped_early | stopped_by_cap | interrupted | failed
                     (interrupted: the run was stopped by Ctrl-C, SIGTERM or a crash mid-trial)
                     stop_reason: why it stopped before its plan, in words; error: why it failed
  trials/<trial_id>/adapter/   the trial's best weights (peft adapter or trainable tensors)
  cloud/launch-<n>.json   cloud runs: each VM's record (region, machine, price, ...)
  report.md, report.json, results.csv, *.png   written by `budgetft report`
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel, ConfigDict

from budgetft.clock import utc_now  # noqa: F401 - records' timestamps
from budgetft.files import read_json, write_json
from budgetft.money.ledger import LEDGER_FILENAME, read_charges
from budgetft.money.machine_meter import METER_FILE

SCHEMA_VERSION = 1
TRIAL_STATUSES = ("running", "finished", "stopped_early", "stopped_by_cap", "interrupted", "failed")
RUN_STATUSES = ("running", "finished", "interrupted", "failed")

# File names, once: everything else asks RunDir for a path.
RUN_FILE, JOB_FILE, PLAN_FILE, LEDGER_FILE = "run.json", "job.yaml", "plan.json", LEDGER_FILENAME
BASELINES_FILE, CALIBRATION_FILE, TELEMETRY_FILE = "baselines.json", "calibration.json", "telemetry.jsonl"
TRIAL_FILE, PHASE_FILE, WEIGHTS_DIR, ERROR_LOG = "trial.json", "phase", "adapter", "error.log"
TEST_FILE = "test.json"
# Derived per-row states (budgetft.train.frozen_prefix): never uploaded, collected or kept.
FROZEN_STATES_DIR = "frozen_states"
WEIGHTS_MANIFEST = "budgetft_method.json"  # beside a trial's kept weights (budgetft.train.persist)


class Record(BaseModel):
    """A record the run directory holds: typed fields, unknown ones kept as they are (a newer
    budgetft's field survives an older one's rewrite), and readable as a mapping too
    (`record["status"]`, `record.get("evals")`), as reports and JSON consumers read them."""

    model_config = ConfigDict(extra="allow", validate_assignment=False)

    def __getitem__(self, key: str) -> Any:
        extra = self.__pydantic_extra__ or {}
        if key in extra:  # before attributes: an extra named like a method ("schema") is data
            return extra[key]
        if key in type(self).model_fields:
            return getattr(self, key)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            value = self[key]
        except KeyError:
            return default
        return default if value is None else value

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def keys(self) -> list[str]:
        return [*type(self).model_fields, *(self.__pydantic_extra__ or {})]

    def __iter__(self) -> Iterator[str]:  # type: ignore[override] - a mapping's iteration
        return iter(self.keys())

    def items(self) -> list[tuple[str, Any]]:
        return [(k, self[k]) for k in self.keys()]

    def to_json(self) -> dict:
        return self.model_dump(mode="json")


class RunInfo(Record):
    """run.json: what the run is and how it stands (and "schema": SCHEMA_VERSION)."""

    run_id: str = ""
    job: str = ""
    budgetft_version: str = ""
    code: str | None = None  # the source's git commit when budgetft runs from a checkout (+dirty: edited)
    started: str | None = None
    finished: str | None = None
    status: str = "running"  # RUN_STATUSES
    budget_usd: str | None = None
    cap_usd: str | None = None
    price_per_hour: str | None = None
    price_source: str = ""
    price_reason: str = ""
    device: str = ""
    hardware: dict = {}
    sessions: int = 0
    model: str = ""
    data: str = ""
    stop_reason: str | None = None
    region: str | None = None  # grid region of a local run (--region), for the report's CO2
    # The machine starts the run's sessions ran on (budgetft.money.machine_start): start id ->
    # its sessions; the one-minute billing minimum is charged once per start.
    machine_starts: dict[str, list[int]] = {}


class PlanRecord(Record):
    """plan.json: the latest round's plan (budgetft.planner.Plan.to_json) with the run's history:
    `round`, `rounds` (every round's plan and its trial ids) and `trials` (every trial planned
    so far, each a trial spec), or `no_trials` when, calibration paid, not even one short trial
    fitted (`refused`: the same, as runs before issue 27 wrote it)."""

    round: int = 0
    rounds: list[dict] = []
    trials: list[dict] = []
    refused: str | None = None
    no_trials: str | None = None
    # A resumed run's choice for an interrupted trial with a checkpoint (budgetft.stages.continuation):
    # [{"trial_id", "from_step", "end", "reaches", "new_trial_steps", "chose", "why", "at"}].
    continued: list[dict] = []


class TrialRecord(Record):
    """trials/<id>/trial.json, kept current by the trial's worker."""

    trial_id: str
    model: str | None = None  # the job's model it trained (None: the job's own `model`)
    method: str = ""
    config: dict = {}
    status: str = "running"  # TRIAL_STATUSES
    max_steps: int = 0
    steps: int = 0
    examples: int = 0
    batch_size: int | None = None
    started: str | None = None
    ended: str | None = None
    error: str | None = None
    stop_reason: str | None = None
    stopped_by_meter: bool | None = None
    # The money moved the trial's last step (budgetft.tune.worker.Worker.horizon): nearer, on a
    # machine slower than its calibration, or further, on a faster one where the plan allowed
    # it; its schedule decays to zero at the new end, evaluated there:
    # {"planned": max_steps, "to": the new last step, "at": the step it was decided, "step_s": pace}.
    end_moved: dict | None = None
    evals: list[dict] = []
    best_step: int | None = None
    pid: int | None = None
    node: str | None = None  # on a cluster: the Ray node id it ran on (budgetft.tune.home)
    trainable_params: int | None = None
    total_params: int | None = None
    class_bias: list[float] | None = None
    examples_per_s: float | None = None
    threads: int | None = None  # the cores it computed on: fewer than the machine's when a neighbour held some
    cost_usd: str | None = None
    # Frozen blocks served from stored states: {"first_trained_block", "rows_computed", "rows_reused"}
    # (and "ladder_blocks" for LST: how many blocks' outputs each row's state holds).
    frozen_prefix: dict | None = None
    # How it fitted its device's memory and what out of memory changed: the memory plan's layout
    # (budgetft.planner.memory_plan.Fit.layout: "micro_batch", "checkpointing", "method" it ran as,
    # "converted_from" for a LoRA turned into QLoRA, "predicted_bytes", "memory_bytes"), where its
    # weights lived ("placement"), the micro-batch it ended on, the longest batch it met
    # ("longest_tokens") and "shrunk": [{"what", "at", "from", "to"}], each batch out of memory halved.
    memory: dict | None = None
    # Its last checkpoint (budgetft.train.checkpoint, in trials/<id>/checkpoint/): {"step", "end",
    # "at", "bytes", "seconds"}; an interrupted trial keeps it, and a resumed run may go on from it,
    # each time noted in `continued`: [{"from_step", "at", "steps_lost"}].
    checkpoint: dict | None = None
    continued: list[dict] | None = None

    def _reached_its_cut(self) -> bool:
        """A trial whose end moved, trained to its new end and evaluated there."""
        if not self.end_moved:
            return False
        to = int(self.end_moved["to"])
        return self.steps >= to and any(int(e.get("step") or 0) >= to for e in self.evals)

    def settle(self, *, budget_stopped: bool, interrupted: bool = False, error: str | None = None) -> None:
        """Give a trial that is still "running" its final status, by one rule wherever it is
        applied (its worker when it returns or Tune stops it, the driver's tracker when the
        worker could not, the report for a run that died): whoever writes last writes the same
        answer, and a settled status is never changed."""
        if self.status != "running":
            return
        if error:
            self.status, self.error = "failed", self.error or error
        elif self.steps >= self.max_steps or self._reached_its_cut():
            self.status = "finished"  # every planned step done (or every step the money bought, evaluated), whatever stopped it after
        elif self.stop_reason:  # the worker stopped itself: the meter said stop, or nobody paid
            self.status = "stopped_by_cap" if self.stopped_by_meter else "interrupted"
        elif budget_stopped:
            self.status = "stopped_by_cap"
        elif interrupted:
            self.status = "interrupted"
        else:
            self.status = "stopped_early"  # ASHA cut it at a rung
        self.ended = self.ended or utc_now()

def _before_first_evaluation(trial: TrialRecord, spec: dict | None) -> str:
    """'t001-lora stopped by the cap at step 10, before its first evaluation at step 13'."""
    first = min((int(s) for s in (spec or {}).get("eval_steps") or []), default=None)
    words = {"stopped_by_cap": "was stopped by the cap", "interrupted": "was interrupted", "stopped_early": "was stopped by ASHA",
             "finished": "ended", "running": "was still running"}
    how = f"failed ({trial.error})" if trial.error else words.get(trial.status, trial.status.replace("_", " "))
    at = f" at step {trial.steps}" if trial.steps else " before its first step"
    return f"{trial.trial_id} {how}{at}" + (f", before its first evaluation at step {first}" if first else "")


class RunDir:
    """A run directory: every path in it, and its records read and written as types."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    # files
    @property
    def run_json(self) -> Path:
        return self.root / RUN_FILE

    @property
    def job_yaml(self) -> Path:
        return self.root / JOB_FILE

    @property
    def plan_json(self) -> Path:
        return self.root / PLAN_FILE

    @property
    def ledger(self) -> Path:
        return self.root / LEDGER_FILE

    @property
    def baselines_json(self) -> Path:
        return self.root / BASELINES_FILE

    @property
    def calibration_json(self) -> Path:
        return self.root / CALIBRATION_FILE

    @property
    def telemetry(self) -> Path:
        return self.root / TELEMETRY_FILE

    @property
    def meter_json(self) -> Path:
        return self.root / METER_FILE

    @property
    def error_log(self) -> Path:
        return self.root / ERROR_LOG

    @property
    def test_json(self) -> Path:
        return self.root / TEST_FILE

    @property
    def frozen_states(self) -> Path:
        """Frozen blocks' states shared by the run's trials (budgetft.train.frozen_prefix):
        derived data, removed when the run finishes."""
        return self.root / FROZEN_STATES_DIR

    @property
    def trials_dir(self) -> Path:
        return self.root / "trials"

    def trial_dir(self, trial_id: str) -> Path:
        return self.trials_dir / trial_id

    def trial_json(self, trial_id: str) -> Path:
        return self.trial_dir(trial_id) / TRIAL_FILE

    def weights_dir(self, trial_id: str) -> Path:
        return self.trial_dir(trial_id) / WEIGHTS_DIR

    # reading
    def run(self) -> RunInfo:
        return RunInfo(**(read_json(self.run_json, {}) or {}))

    def baselines(self) -> dict:
        return read_json(self.baselines_json, {})

    def calibration(self) -> dict | None:
        return read_json(self.calibration_json, None)

    def test(self) -> dict | None:
        """The held-out test of the run's winner (budgetft.stages.test), once it has run."""
        return read_json(self.test_json, None)

    def has_weights(self, trial_id: str) -> bool:
        return (self.weights_dir(trial_id) / WEIGHTS_MANIFEST).is_file()

    def winner(self) -> TrialRecord | None:
        """The trial a run hands over, by one rule: among trials that kept weights, the most
        accurate on the selection rows at its kept evaluation (ties: the earlier trial). A trial
        never evaluated there is never the winner, whatever it kept: nothing measured it (the
        report says why there is none: no_winner_reason). None when no such trial exists."""
        evaluated = [t for t in self.trials() if t.evals and self.has_weights(t.trial_id)]
        if not evaluated:
            return None
        return max(evaluated, key=lambda t: max(e.get("accuracy", -1.0) for e in t.evals))

    def no_winner_reason(self) -> str | None:
        """Why the run has no winner, in words (None when it has one)."""
        if self.winner() is not None:
            return None
        trials = self.trials()
        if not trials:
            return "no trial ran"
        if any(t.evals for t in trials):
            return "no evaluated trial kept its weights"
        planned = {spec.get("trial_id"): spec for spec in self.plan().trials}
        stops = "; ".join(_before_first_evaluation(t, planned.get(t.trial_id)) for t in trials[:3])
        more = f"; and {len(trials) - 3} more" if len(trials) > 3 else ""
        return f"no trial was evaluated on the selection rows, so none can be handed over: {stops}{more}"

    def plan(self) -> PlanRecord:
        return PlanRecord(**(read_json(self.plan_json, {}) or {}))

    def trial(self, trial_id: str) -> TrialRecord | None:
        data = read_json(self.trial_json(trial_id), None)
        return TrialRecord(**data) if data else None

    def trials(self) -> list[TrialRecord]:
        if not self.trials_dir.is_dir():
            return []
        found = [self.trial(p.name) for p in sorted(self.trials_dir.iterdir()) if (p / TRIAL_FILE).is_file()]
        return [t for t in found if t]

    def exists(self) -> bool:
        return self.run_json.is_file()

    # writing (atomic: a reader never sees half a record)
    def write_run(self, info: RunInfo) -> None:
        write_json(self.run_json, info)

    def write_plan(self, plan: PlanRecord) -> None:
        write_json(self.plan_json, plan)

    def write_trial(self, record: TrialRecord) -> None:
        write_json(self.trial_json(record.trial_id), record)

    def write_baselines(self, baselines: dict) -> None:
        write_json(self.baselines_json, baselines)

    def write_calibration(self, calibration: dict) -> None:
        write_json(self.calibration_json, calibration)

    def write_test(self, test: dict) -> None:
        write_json(self.test_json, test)

    def trial_costs(self) -> dict[str, Any]:
        """Dollars (Decimal) the ledger has charged to each trial."""
        totals: dict[str, Decimal] = {}
        if self.ledger.exists():
            for charge in read_charges(self.ledger):
                if charge.trial:
                    totals[charge.trial] = totals.get(charge.trial, Decimal(0)) + charge.amount
        return totals

    def finalize_trial(self, trial_id: str, *, budget_stopped: bool, interrupted: bool = False, error: str | None = None) -> TrialRecord | None:
        """Give a trial its final status if its worker could not (ASHA or the stopper ended it,
        its process died, or the run was stopped), with its cost from the ledger."""
        record = self.trial(trial_id)
        if record is None:
            return None
        record.settle(budget_stopped=budget_stopped, interrupted=interrupted, error=error)
        record.cost_usd = str(self.trial_costs().get(trial_id, 0))
        self.write_trial(record)
        (self.trial_dir(trial_id) / PHASE_FILE).unlink(missing_ok=True)
        return record
