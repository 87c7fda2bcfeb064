"""`budgetft status`, `budgetft down` and `budgetft run --cloud gcp --dry-run` through the CLI."""

from __future__ import annotations

import json
import re

from test_cloud_fakes import fake_compute  # noqa: F401  (fixture)
from typer.testing import CliRunner

from budgetft.cli import app

runner = CliRunner()


def dry_run_request(*flags: str) -> tuple[dict, str, str]:
    result = runner.invoke(app, ["run", "--budget", "1.00", "--cloud", "gcp", "--gpu", "v100", "--dry-run", *flags])
    assert result.exit_code == 0, result.output
    head, _, script = result.stdout.partition("\n# start-up script")
    request = json.loads(head.split("\n", 1)[1])
    return request, script, result.stderr


def test_dry_run_prints_the_request_whose_lifetime_the_budget_pays_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BUDGETFT_GCP_ENDPOINT", raising=False)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "my-project")
    on_demand, script, human = dry_run_request()
    spot, _, spot_human = dry_run_request("--spot")
    # $1 less the results' transfer home ($0.02392) at the catalogue's $2.8668/h for n1-standard-8
    # + V100 + 50 GB disk, plus the external address ($0.005/h) and storage operations ($0.009/h),
    # is 1219 s; 90 s of that is kept for the shutdown and Compute Engine's deletion lag, billed too.
    assert on_demand["scheduling"]["maxRunDuration"] == {"seconds": "1129"}  # ~19 minutes
    seconds_spot = int(spot["scheduling"]["maxRunDuration"]["seconds"])
    assert seconds_spot == 2926 and 2.4 < seconds_spot / 1129 < 2.7  # ~2.5x longer on Spot
    assert on_demand["scheduling"]["instanceTerminationAction"] == "DELETE"
    assert spot["scheduling"]["provisioningModel"] == "SPOT" and on_demand["scheduling"]["provisioningModel"] == "STANDARD"
    assert on_demand["machineType"].endswith("/n1-standard-8")
    assert on_demand["guestAccelerators"][0]["acceleratorType"].endswith("/nvidia-tesla-v100")
    assert on_demand["serviceAccounts"][0]["email"] == "budgetft-vm@my-project.iam.gserviceaccount.com"
    assert "$2.8808/h" in human and "18 min 49 s" in human and "total     $1.0000" in human
    assert "external IPv4 address $0.0050" in human and "Cloud Storage operations $0.0090" in human
    assert "$1.1648/h" in spot_human and "48 min 46 s" in spot_human and "external IPv4 address $0.0050" in spot_human
    assert "then      us-east1 (on-demand" in human  # where it goes next when us-central1 has no room
    # The script printed is the one in the request, and nothing was created or written.
    embedded = next(i["value"] for i in on_demand["metadata"]["items"] if i["key"] == "startup-script")
    assert script.split("\n", 1)[1] == embedded
    assert list(tmp_path.iterdir()) == []


def test_dry_run_without_gpu_picks_and_explains(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["run", "--budget", "1.00", "--cloud", "gcp", "--dry-run", "--spot"])
    assert result.exit_code == 0, result.output
    assert "the most training for this budget" in result.stderr and "next:" in result.stderr


def test_status_lists_budgetft_vms_with_run_age_and_cost(fake_compute):
    fake_compute.add_instance("us-central1-a", "budgetft-r1-s1", {"budgetft-run": "r1", "budgetft-session": "1"}, age_s=1800)
    fake_compute.add_instance("us-central1-b", "budgetft-r2-s1", {"budgetft-run": "r2", "budgetft-session": "1"}, gpu="nvidia-tesla-t4", spot=True, age_s=60)
    fake_compute.add_instance("us-central1-a", "someone-elses-vm", {"team": "x"})
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "r1" in out and "r2" in out and "someone-elses-vm" not in out
    assert re.search(r"(30 min \d+ s|29 min 59 s)", out)
    assert "~$1.43" in out  # half an hour at $2.8668/h


def test_down_deletes_one_run_then_all_and_leaves_others_alone(fake_compute):
    fake_compute.add_instance("us-central1-a", "budgetft-r1-s1", {"budgetft-run": "r1"})
    fake_compute.add_instance("us-central1-c", "budgetft-r2-s2", {"budgetft-run": "r2"})
    fake_compute.add_instance("us-central1-a", "someone-elses-vm", {"team": "x"})
    result = runner.invoke(app, ["down", "runs/r1"])
    assert result.exit_code == 0, result.output
    assert ("us-central1-a", "budgetft-r1-s1") not in fake_compute.instances and "confirmed gone" in result.stderr
    assert runner.invoke(app, ["down", "nope"]).exit_code == 1
    result = runner.invoke(app, ["down", "--all"])
    assert result.exit_code == 0
    assert list(fake_compute.instances) == [("us-central1-a", "someone-elses-vm")]
    assert runner.invoke(app, ["down"]).exit_code == 2


def test_status_reports_a_disabled_api_clearly(fake_compute):
    fake_compute.api_disabled = True
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 2 and "gcloud services enable compute.googleapis.com" in result.stderr
