"""A CPU run's report shows each trial's energy (measured from RAPL, or estimated from the CPU's
rated power and labelled so), the run's total with its CO2, and accuracy per kWh beside accuracy
per dollar: the tiny model trains for real under the real telemetry sampler, and the real report
code writes report.md, report.json and results.csv. The slow test does the same through
`budgetft run` itself."""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from budgetft.report import write_reports
from budgetft.files import write_json
from budgetft.rundir import RunDir
from budgetft.telemetry.sampler import TelemetrySampler

runner = CliRunner()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _check_report(root: Path, region: str, grid: float) -> dict:
    """What every CPU run's report must say about energy; returns report.json's energy section."""
    doc = json.loads((root / "report.json").read_text())
    energy = doc["hardware"]["energy"]
    assert energy["total_wh"] > 0 and energy["basis"] in ("rapl", "estimate")
    estimated = energy["basis"] == "estimate"
    assert energy["estimated"] is estimated
    assert (energy["region"], energy["grid_gco2e_per_kwh"]) == (region, grid)
    assert energy["co2e_g"] == pytest.approx(energy["total_wh"] * grid / 1000, rel=1e-3, abs=1e-4)
    md = (root / "report.md").read_text()
    hardware = md[md.index("## Hardware"):]
    assert ("Wh estimated" if estimated else "Wh measured") in hardware
    assert ("ESTIMATED from the processor's rated power" in hardware) is estimated
    assert "g CO2e" in hardware and region in hardware
    trained = [t for t in doc["trials"] if t["accuracy"] is not None]
    assert trained
    for t in trained:
        assert t["energy_wh"] > 0 and t["energy_estimated"] is estimated
        assert t["accuracy_per_kwh"] == pytest.approx(100 * t["accuracy"] / (t["energy_wh"] / 1000), rel=1e-3)
        assert t["energy_wh"] <= energy["total_wh"] + 1e-9
    # accuracy per kWh sits beside accuracy per dollar in the Markdown details and results.csv.
    assert "| acc/$ | acc/kWh | Wh |" in md
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO((root / "results.csv").read_text()))}
    header = list(next(iter(rows.values())))
    assert header[header.index("accuracy_per_usd") + 1] == "accuracy_per_kwh"
    for t in trained:
        assert float(rows[t["id"]]["accuracy_per_kwh"]) == pytest.approx(t["accuracy_per_kwh"], rel=1e-3)
        assert float(rows[t["id"]]["energy_wh"]) == pytest.approx(t["energy_wh"], rel=1e-3)
    return energy


def test_cpu_trial_report_shows_energy_and_accuracy_per_kwh(tiny_job_data, tmp_path, one_thread):
    from budgetft.methods import get
    from budgetft.models.loading import load_model
    from budgetft.spec import validate_job
    from budgetft.task import prepare_task
    from budgetft.train.trial import TrialSettings, run_trial
    from budgetft.scoring.rows import evaluate
    from budgetft.scoring.baselines import majority_baseline

    task = prepare_task(validate_job(tiny_job_data))
    root = tmp_path / "run"
    run = RunDir(root)
    write_json(run.run_json, {"run_id": "tiny-energy", "job": "tiny", "status": "finished", "budget_usd": "1",
                              "cap_usd": "1", "price_per_hour": "1.00", "price_source": "--price-per-hour",
                              "device": "CPU", "hardware": {"cpus": os.cpu_count()}, "region": "europe-west4"})
    settings = TrialSettings.from_job(task, "full", get("full").config({"learning_rate": 3e-3}), steps=120)
    settings.eval_every = 60
    with TelemetrySampler(run.telemetry, interval_s=0.05):
        write_json(run.baselines_json, {"majority": majority_baseline(task), "zero_shot": evaluate(load_model(task.model), task)})
        started = _now()
        result, _ = run_trial(task, settings)
        ended = _now()
    evals = [dict(e, cost_usd="0.001") for e in result.evals]
    write_json(run.trial_dir("full-000") / "trial.json", {
        "trial_id": "full-000", "method": "full", "config": result.config, "status": "finished", "steps": result.steps,
        "examples_per_s": result.examples_per_s, "cost_usd": "0.002", "started": started, "ended": ended, "evals": evals,
    })
    write_reports(root)
    energy = _check_report(root, "europe-west4", 194.35)
    assert energy["region_source"] == "--region"
    # The trial's share is most of a run that was mostly training, never more than all of it.
    assert 0 < energy["trials"]["full-000"]["wh"] <= energy["total_wh"]


@pytest.mark.slow
def test_budgetft_run_on_a_cpu_reports_energy_and_co2(tiny_job_data, tmp_path, monkeypatch):
    """About two minutes: Ray's start and the trial worker dominate."""
    from budgetft.cli import app
    from budgetft.telemetry.carbon import REGION_ENV

    monkeypatch.delenv(REGION_ENV, raising=False)
    tiny_job_data["methods"] = {"full": {"learning_rate": [3e-3]}}
    tiny_job_data["train"]["max_steps"] = 20
    tiny_job_data["eval"]["limit"] = 40
    job = tmp_path / "energy.yaml"
    job.write_text(yaml.safe_dump(tiny_job_data))
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", str(job), "--budget", "6", "--price-per-hour", "36", "--out", str(out), "--region", "us-west1"])
    monkeypatch.delenv(REGION_ENV, raising=False)  # set by --region for the run; not for later tests
    assert result.exit_code == 0, result.output
    assert RunDir(out).run()["region"] == "us-west1"
    energy = _check_report(out, "us-west1", 97.85)
    assert energy["region_source"] == "--region"
