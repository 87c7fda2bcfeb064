"""Read a run directory (finished, interrupted or still running) into a `RunReport`.

Every file may be missing or partial while a run goes on: what cannot be read becomes a
warning in the report, never an exception. Only a directory without run.json is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from budgetft.clock import utc_now
from budgetft.files import read_json
from budgetft.money.ledger import Charge, LedgerError, read_charges
from budgetft.money.usd import usd
from budgetft.report import rows as R, stats
from budgetft.report.energy import energy_summary
from budgetft.rundir import RunDir

# Imported inside functions: yaml: importing this module must stay cheap (start-up time).

# Categories every spend breakdown lists, even at $0; the others appear when something was
# charged to them (boot and upload are cloud-only).
CORE_CATEGORIES = ("baselines", "calibration", "training", "evaluation", "overhead")


class NotARunDir(ValueError):
    """The path is not a budgetft run directory."""


@dataclass
class RunReport:
    root: Path
    run: dict[str, Any]  # run.json as recorded
    run_id: str
    job: str
    status: str  # running | finished | interrupted | failed | unknown
    model: str  # the job's own model (its baselines are scored with it)
    machine: str  # e.g. "g2-standard-8 (NVIDIA L4, spot)"
    price_per_hour: Decimal | None
    budget: Decimal | None
    cap: Decimal | None
    majority: R.Row | None
    zero_shot: R.Row | None
    trials: list[R.Row]  # ranked (see rows.rank)
    charges: list[Charge]
    spend_by_category: dict[str, Decimal]
    spent: Decimal
    pareto: list[str]  # trial ids on the accuracy-vs-cost front, cheapest first
    warnings: list[str] = field(default_factory=list)
    generated: str = ""
    test: dict | None = None  # test.json: the winner on the held-out test rows (the headline)
    forecast: dict | None = None  # what the first round's plan forecast (plan.json)
    models: list[str] = field(default_factory=list)  # every model the job let the plan choose, its own first
    no_winner: str | None = None  # why the run hands over no trial (RunDir.no_winner_reason); None when it has a winner
    # Options calibration dropped (out of memory, or predicted to fit no way on the GPU): key -> why.
    dropped: dict[str, str] = field(default_factory=dict)

    @property
    def winner_model(self) -> str | None:
        """The model of the trial the run hands over: the held-out test's winner, else the best
        trial on the selection rows; None before any trial is scored."""
        winner = (self.test or {}).get("winner")
        rows = [t for t in self.trials if t.id == winner] if winner else [t for t in self.trials if t.accuracy is not None][:1]
        return rows[0].model if rows else None

    @property
    def baselines(self) -> list[R.Row]:
        return [b for b in (self.majority, self.zero_shot) if b is not None]

    @property
    def majority_class(self) -> str | None:
        return self.majority.config.get("majority_class") if self.majority else None

    @property
    def eval_rows(self) -> int | None:
        for row in [*self.baselines, *self.trials]:
            if row.n:
                return row.n
        return None

    @property
    def is_cloud(self) -> bool:
        return bool(self.run.get("cloud") or self.run.get("provider")) or any(
            self.spend_by_category.get(c) for c in ("boot", "upload")
        )


def load_run(path: Path | str) -> RunReport:
    rd = RunDir(path)
    if not rd.root.is_dir():
        raise NotARunDir(f"{rd.root}: no such directory")
    if not rd.exists():
        raise NotARunDir(f"{rd.root} is not a budgetft run directory (no run.json)")
    warnings: list[str] = []
    run = _read(rd.run_json, {}, warnings)
    if not isinstance(run, dict):
        warnings.append("run.json is not a JSON object; run details are unknown")
        run = {}
    status = str(run.get("status") or "unknown")
    job_spec = _read_yaml(rd.job_yaml, warnings)
    job = str(run.get("job") or job_spec.get("name") or rd.root.name)
    model = str((job_spec.get("model") or {}).get("name") or run.get("model") or "?")
    models = [model, *(str(m.get("name")) for m in job_spec.get("models") or [] if isinstance(m, dict) and m.get("name"))]

    charges = _read_ledger(rd.ledger, warnings)
    by_category: dict[str, Decimal] = {c: Decimal(0) for c in CORE_CATEGORIES}
    by_trial: dict[str, Decimal] = {}
    for c in charges:
        by_category[c.category] = by_category.get(c.category, Decimal(0)) + c.amount
        if c.trial is not None:
            by_trial[c.trial] = by_trial.get(c.trial, Decimal(0)) + c.amount
    spent = charges[-1].total if charges else Decimal(0)

    majority, zero_shot = _baselines(rd, model, charges, warnings)
    trials = [_trial_row(t, model, by_trial, status, warnings) for t in _read_trials(rd, warnings)]
    _attach_energy(rd, trials, warnings)
    R.derive([*[b for b in (majority, zero_shot) if b], *trials], majority, zero_shot)
    trials = R.rank(trials)
    scored = [t for t in trials if t.accuracy is not None and t.cost is not None]
    front = [scored[i] for i in stats.pareto_front([(float(t.cost), t.accuracy) for t in scored])]
    for t in front:
        t.on_pareto_front = True

    if status == "running":  # first: it qualifies every other line
        warnings.insert(0, "the run is still running: this report is a snapshot")
    elif status == "interrupted":
        warnings.insert(0, "the run was interrupted: trials still 'running' then are shown as interrupted")
    if not trials:
        warnings.append("no trial has recorded anything yet")
    elif all(t.accuracy is None for t in trials) and not rd.test_json.exists():
        warnings.append("no trial has an evaluation yet")  # (a lone trial stopped before its one is scored by the test)

    return RunReport(
        root=rd.root,
        run=run,
        run_id=str(run.get("run_id") or rd.root.name),
        job=job,
        status=status,
        model=model,
        models=models,
        machine=machine_label(run),
        price_per_hour=_usd_or_none(run.get("price_per_hour")),
        budget=_usd_or_none(run.get("budget_usd")),
        cap=_usd_or_none(run.get("cap_usd")) or (charges[-1].cap if charges else None),
        majority=majority,
        zero_shot=zero_shot,
        trials=trials,
        charges=charges,
        spend_by_category=by_category,
        spent=spent,
        pareto=[t.id for t in front],
        warnings=warnings,
        generated=utc_now(),
        test=_read(rd.test_json, None, warnings) if rd.test_json.exists() else None,
        forecast=_first_forecast(_read(rd.plan_json, None, warnings) if rd.plan_json.exists() else None),
        no_winner=_no_winner(rd, warnings),
        dropped=dict((_read(rd.calibration_json, None, warnings) or {}).get("dropped") or {}) if rd.calibration_json.exists() else {},
    )


def _no_winner(rd: RunDir, warnings: list[str]) -> str | None:
    try:
        return rd.no_winner_reason()
    except Exception as exc:  # noqa: BLE001 - a damaged record: the report still renders
        warnings.append(f"whether the run has a winner could not be read: {exc}")
        return None


def _first_forecast(plan: dict | None) -> dict | None:
    """The forecast the run's first plan made (later rounds plan what ASHA freed)."""
    if not isinstance(plan, dict):
        return None
    rounds = plan.get("rounds") or []
    first = rounds[0] if rounds and isinstance(rounds[0], dict) else plan
    return first.get("forecast") if isinstance(first.get("forecast"), dict) else None


def machine_label(run: dict) -> str:
    """What the run ran on, from whatever run.json records: instance, GPU, provisioning."""
    hw = run.get("hardware")
    device = run.get("device")
    parts: list[str] = []
    if isinstance(hw, dict):
        instance = hw.get("instance") or hw.get("machine") or hw.get("label")
        gpu = hw.get("gpu") or hw.get("gpu_name")
        extra = [str(x) for x in (gpu, hw.get("provisioning")) if x]
        if instance:
            parts.append(str(instance) + (f" ({', '.join(extra)})" if extra else ""))
        elif extra:
            parts.append(", ".join(extra))
    elif isinstance(hw, str) and hw:
        parts.append(hw)
    if not parts and device:
        parts.append(str(device) if not isinstance(device, dict) else str(device.get("name") or device))
    return parts[0] if parts else "unknown machine"


def _baselines(rd: RunDir, model: str, charges: list[Charge], warnings: list[str]):
    data = _read(rd.baselines_json, None, warnings)
    if not isinstance(data, dict):
        warnings.append("baselines.json is missing: no lift or significance against the baselines")
        return None, None
    majority = zero_shot = None
    if isinstance(data.get("majority"), dict):
        m = data["majority"]
        cls = m.get("majority_class")
        majority = R.metrics_row("baseline", "majority", "-", "majority", m, "baseline")
        majority.config = {"majority_class": cls} if cls is not None else {}
        majority.cost = Decimal(0)  # no model, no compute
        majority.lift_points = 0.0
    else:
        warnings.append("baselines.json has no majority baseline")
    if isinstance(data.get("zero_shot"), dict):
        zero_shot = R.metrics_row("baseline", "zero_shot", model, "zero-shot", data["zero_shot"], "baseline")
        baseline_charges = [c.amount for c in charges if c.category == "baselines"]
        zero_shot.cost = sum(baseline_charges, Decimal(0)) if baseline_charges else None
    elif not isinstance(data.get("test"), dict):  # with held-out test rows it is scored there
        warnings.append("baselines.json has no zero-shot baseline")
    if majority and zero_shot and majority.n != zero_shot.n:
        warnings.append(f"the baselines were scored on different numbers of rows ({majority.n} vs {zero_shot.n})")
    return majority, zero_shot


def _trial_row(t: dict, model: str, by_trial: dict[str, Decimal], run_status: str, warnings: list[str]) -> R.Row:
    trial_id = str(t.get("trial_id") or "?")
    status = str(t.get("status") or "running")
    if status == "running" and run_status not in ("running", "unknown"):
        status = "interrupted"
    config = t.get("config") if isinstance(t.get("config"), dict) else {}
    row = R.Row(kind="trial", id=trial_id, model=str(t.get("model") or model), method=str(t.get("method") or "?"),
                config=config, status=status)
    evals = [e for e in (t.get("evals") or []) if isinstance(e, dict)]
    kept = R.kept_evaluation(evals)
    if kept is not None:
        R.fill_metrics(row, kept)
        row.kept_step = _int(kept.get("step"))
        row.last_step = _int(evals[-1].get("step"))
        row.last_accuracy = R._float(evals[-1].get("accuracy"))
    row.evaluations = len(evals)
    row.trajectory = [(_int(e.get("step")) or 0, float(e["accuracy"]), _usd_or_none(e.get("cost_usd")))
                      for e in evals if e.get("accuracy") is not None]
    row.steps = _int(t.get("steps"))
    row.trainable_params = _int(t.get("trainable_params"))
    row.total_params = _int(t.get("total_params"))
    row.examples_per_s = R._float(t.get("examples_per_s"))
    row.class_bias = t.get("class_bias") or None
    row.error = str(t["error"]) if t.get("error") else None
    row.stop_reason = str(t["stop_reason"]) if t.get("stop_reason") else None
    row.end_moved = t.get("end_moved") or None
    row.memory = t.get("memory") if isinstance(t.get("memory"), dict) else None
    if trial_id in by_trial:
        row.cost = by_trial[trial_id]
    else:
        row.cost = _usd_or_none(t.get("cost_usd"))
        if row.cost is not None and by_trial:
            warnings.append(f"{trial_id}: no ledger charge carries its id; cost taken from trial.json")
    if status == "failed" and not row.error:
        row.error = "no error recorded"
    return row


def _attach_energy(rd: RunDir, trials: list[R.Row], warnings: list[str]) -> None:
    """Each trial's energy and CO2 (report/energy.py), for accuracy per kWh. Never fatal: a
    report without energy figures beats no report."""
    if not rd.telemetry.exists():
        return

    try:
        energy = energy_summary(rd.root)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        warnings.append(f"energy could not be computed: {type(exc).__name__}: {exc}")
        return
    for row in trials:
        figures = energy["trials"].get(row.id) or {}
        row.energy_wh = figures.get("wh")
        row.co2e_g = figures.get("co2e_g")
        row.energy_estimated = bool(energy.get("estimated"))


def _read_trials(rd: RunDir, warnings: list[str]) -> list[dict]:
    """Like RunDir.trials(), but a trial.json that cannot be read is a warning, not a crash."""
    if not rd.trials_dir.is_dir():
        return []
    found = []
    for folder in sorted(rd.trials_dir.iterdir()):
        path = folder / "trial.json"
        if path.is_file():
            data = _read(path, None, warnings)
            if isinstance(data, dict):
                data.setdefault("trial_id", folder.name)
                found.append(data)
    return found


def _read_ledger(path: Path, warnings: list[str]) -> list[Charge]:
    if not path.exists():
        warnings.append("ledger.jsonl is missing: spend is unknown (shown as $0)")
        return []
    try:
        charges = read_charges(path)
    except (LedgerError, OSError) as exc:
        warnings.append(f"the ledger cannot be read ({exc}); costs come from trial.json")
        return []
    if not charges:
        warnings.append("the ledger is empty: nothing has been charged yet")
    return charges


def _read(path: Path, default: Any, warnings: list[str]) -> Any:
    try:
        return read_json(path, default)
    except (ValueError, OSError) as exc:
        warnings.append(f"{path.parent.name}/{path.name} cannot be read: {exc}")
        return default


def _read_yaml(path: Path, warnings: list[str]) -> dict:
    if not path.is_file():
        return {}
    try:
        import yaml

        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except Exception as exc:  # a broken job.yaml only costs us the model name
        warnings.append(f"job.yaml cannot be read: {exc}")
        return {}
    return data if isinstance(data, dict) else {}


def _usd_or_none(x: Any) -> Decimal | None:
    if x is None or x == "":
        return None
    try:
        return usd(x)
    except (ValueError, TypeError):
        return None


def _int(x: Any) -> int | None:
    try:
        return None if x is None else int(x)
    except (TypeError, ValueError):
        return None


def parse_ts(ts: str) -> datetime | None:
    """ISO 8601 timestamps as the ledger and run.json write them ('Z' or an offset)."""
    try:
        parsed = datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
