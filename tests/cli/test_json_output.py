"""`--json` on plan, prices, status and report: stdout holds one JSON document and nothing else
(messages go to stderr), with the field names of the files a run writes. predict's JSON is
tested with its command in tests/test_predict_export.py."""

from __future__ import annotations

import json
import shutil
from dataclasses import fields
from decimal import Decimal
from pathlib import Path

from tests.cloud.test_cloud_fakes import fake_compute  # noqa: F401  (fixture)
from typer.testing import CliRunner

from budgetft.cli import app
from budgetft.planner import Plan

runner = CliRunner()
RECORDED_RUN = Path(__file__).parents[1] / "report" / "fixtures" / "recorded_run"


def json_out(args: list[str], code: int = 0) -> dict:
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)  # fails on anything but one JSON document


def test_plan_json_has_plan_json_fields(tiny_job_file, one_thread):
    doc = json_out(["plan", str(tiny_job_file), "--budget", "2", "--price-per-hour", "36", "--json"])
    # plan.json is Plan.to_json() plus the run's own bookkeeping (round, packing, trials).
    assert {f.name for f in fields(Plan)} | {"total_trials", "eval_seconds"} <= set(doc)
    # Expected spend fits the cap; the worst case (ASHA stopping nothing) may pass it, since
    # training stops before the cap whatever the schedule (budgetft.planner.budget).
    assert doc["cap_usd"] == "2" and Decimal(doc["expected_usd"]) <= Decimal("2")
    assert Decimal(doc["worst_case_usd"]) >= Decimal(doc["expected_usd"])
    assert doc["methods"][0]["method"] == "lora" and doc["methods"][0]["trials"] == doc["total_trials"] >= 1
    assert doc["rates"]["lora"]["seconds_per_step"] > 0 and doc["rates_source"].startswith("calibrated now")
    assert Decimal(doc["calibration_spent"]["usd"]) > 0  # measured now, at $36/h
    no_calibration = json_out(["plan", str(tiny_job_file), "--budget", "2", "--price-per-hour", "36", "--no-calibrate", "--json"])
    assert no_calibration["calibration_spent"] == {"seconds": 0.0, "usd": None}


def test_plan_json_refusal_leaves_stdout_empty(tiny_job_file):
    result = runner.invoke(app, ["plan", str(tiny_job_file), "--budget", "0.0001", "--price-per-hour", "36", "--no-calibrate", "--json"])
    assert result.exit_code == 2 and result.stdout == "" and "the minimum is $" in result.stderr


def test_prices_json_uses_the_catalogue_field_names():
    from budgetft.money.catalog_store import default_catalog

    doc = json_out(["prices", "--gpu", "v100", "--json"])
    catalog = default_catalog()
    assert doc["catalog"] == {"version": catalog.version, "fetched": catalog.fetched, "source": catalog.meta["source"]}
    assert doc["instances"] and all(i["gpu"] == "nvidia-tesla-v100" and i["region"] == "us-central1" for i in doc["instances"])
    first = doc["instances"][0]
    assert {"machine", "region", "provisioning", "usd_per_hour", "gpu", "gpu_count", "vcpus", "memory_gb", "minutes_per_dollar"} <= set(first)
    # Prices are exact strings, and the same as the catalogue's instance.
    same = catalog.instance(first["machine"], first["gpu"], region=first["region"], spot=first["spot"])
    assert first["usd_per_hour"] == str(same.usd_per_hour)
    prices = [Decimal(i["usd_per_hour"]) for i in doc["instances"]]
    assert prices == sorted(prices)  # cheapest first, as the table
    spot = json_out(["prices", "--spot", "--json"])
    assert spot["instances"] and {i["provisioning"] for i in spot["instances"]} == {"spot"}


def test_status_json_lists_the_vms_fields(fake_compute):
    empty = json_out(["status", "--json"])
    assert empty["vms"] == [] and empty["project"]
    fake_compute.add_instance("us-central1-a", "budgetft-r1-s1", {"budgetft-run": "r1", "budgetft-session": "1"}, age_s=1800)
    fake_compute.add_instance("us-central1-a", "someone-elses-vm", {"team": "x"})
    doc = json_out(["status", "--json"])
    (vm,) = doc["vms"]
    assert vm["name"] == "budgetft-r1-s1" and vm["run_id"] == "r1" and vm["session"] == "1"
    assert {"zone", "status", "machine_type", "gpu", "spot", "disk_gb", "created", "max_run_seconds"} <= set(vm)
    assert 1790 <= vm["age_seconds"] <= 1900 and vm["created"].endswith("Z")
    # Half an hour at the catalogue's $2.8668/h for the fake's n1-standard-8 + V100.
    assert Decimal(vm["usd_per_hour"]) > 2 and Decimal("1.40") < Decimal(vm["cost_so_far_usd"]) < Decimal("1.50")


def test_report_json_is_report_json(tmp_path):
    run = Path(shutil.copytree(RECORDED_RUN, tmp_path / "run"))
    doc = json_out(["report", str(run), "--json"])
    written = json.loads((run / "report.json").read_text())  # the run directory's file, rewritten now
    doc.pop("generated"), written.pop("generated")
    assert doc == written and doc["schema"] == "budgetft.report"
    both = json_out(["report", str(run), str(run), "--json"])
    assert len(both["runs"]) == 2
