"""The VM's start-up script: valid bash, clean under shellcheck, and doing its job when run in a
sandbox whose install and GPU steps are stubs (gcloud talks to the storage emulator)."""

from __future__ import annotations

import json
import shutil
import subprocess
from decimal import Decimal

import pytest
import hashlib

from test_cloud_fakes import BUCKET, VM, SandboxVM, bucket_client, gcs, gcs_rights, gcs_server, read_ledger  # noqa: F401

from budgetft.cloud.errors import CloudError
from budgetft.cloud.estimate import boot_seconds
from budgetft.cloud.startup import StartupParams, render
from budgetft.money.ledger import Ledger

RUN_URL = f"gs://{BUCKET}/budgetft/r1"
WHEEL = f"{RUN_URL}/dist/budgetft-0.1.0-py3-none-any.whl"
WHEEL_BYTES = b"PK the wheel the launcher built"


def params(**kw) -> StartupParams:
    base = dict(run_id="r1", session=1, run_url=RUN_URL, cap_usd="1.00", price_per_hour="2.866847316", boot_estimate_s=boot_seconds(), wheel_url=WHEEL,
                pip_spec="budgetft==0.1.0", wheel_sha256=hashlib.sha256(WHEEL_BYTES).hexdigest())
    return StartupParams(**{**base, **kw})


def test_rendered_script_is_valid_bash(tmp_path):
    for p in (params(), params(wheel_url="", session=3)):
        path = tmp_path / "s.sh"
        path.write_text(render(p))
        assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed (apt-get install -y shellcheck)")
def test_rendered_script_passes_shellcheck(tmp_path):
    path = tmp_path / "s.sh"
    path.write_text(render(params()))
    done = subprocess.run(["shellcheck", "--severity=info", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_values_are_quoted_so_they_cannot_run_commands(tmp_path):
    hostile = params(run_id="r1; touch pwned", pip_spec="$(touch pwned)")
    text = render(hostile)
    assert "RUN_ID='r1; touch pwned'" in text and "PIP_SPEC='$(touch pwned)'" in text


def test_a_missing_value_is_an_error(tmp_path):
    template = tmp_path / "t.tmpl"
    template.write_text("X={{RUN_ID}}\nY={{NOT_A_SETTING}}\n")
    with pytest.raises(CloudError, match="NOT_A_SETTING"):
        render(params(), template)


def seed_bucket(endpoint: str, cap: str = "1.00", run_json: dict | None = None) -> None:
    """What the launcher uploads before creating the VM: job.yaml, a ledger with the overheads."""
    bucket = bucket_client(endpoint)
    bucket.blob("budgetft/r1/run/job.yaml").upload_from_string("name: fake\n")
    bucket.blob("budgetft/r1/dist/budgetft-0.1.0-py3-none-any.whl").upload_from_string(WHEEL_BYTES)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        with Ledger(tmp, cap) as ledger:
            ledger.charge("0.179", "boot", "estimated boot", key="vm1:boot")
        bucket.blob("budgetft/r1/run/ledger.jsonl").upload_from_filename(str(Path(tmp) / "ledger.jsonl"))
    if run_json is not None:
        bucket.blob("budgetft/r1/run/run.json").upload_from_string(json.dumps(run_json))


def test_sandbox_run_installs_runs_uploads_and_powers_off(tmp_path, gcs):
    seed_bucket(gcs)
    vm = SandboxVM(tmp_path / "vm", gcs, uptime_s=boot_seconds() + 75)
    done = vm.run(render(params()))
    assert done.returncode == 0, done.stdout + done.stderr
    calls = vm.calls()
    text = "\n".join(calls)
    # The install used the image's python (the torch probe), a venv that sees it, and our wheel.
    assert "python3 -m venv --system-site-packages" in text
    assert any(c.startswith("pip install") and c.endswith("/dist/budgetft-0.1.0-py3-none-any.whl[gpu]") for c in calls)
    assert any(c.startswith("nvidia-smi") for c in calls)
    run_call = next(c for c in calls if c.startswith("budgetft run"))
    assert "--budget 1.00 --price-per-hour 2.866847316 --out" in run_call and run_call.split()[2].endswith("run/job.yaml")
    # Phases in order, then the final upload, the exit code, the VM deleting itself (and its
    # disk: nothing left billing), and the power-off last of all.
    log = (vm.work / "vm" / "startup-1.log").read_text()
    order = [log.index(f"phase: {p}") for p in ("booting", "installing", "gpu", "running", "uploading")]
    assert order == sorted(order)
    delete = "curl DELETE https://compute.googleapis.com/compute/v1/projects/test-project/zones/us-central1-a/instances/budgetft-r1-s1"
    assert delete in calls and calls.index(delete) < len(calls) - 1 and vm.deleted.exists()
    assert calls[-1] == "shutdown -h now" and vm.poweroff.exists() and "deleting this VM and its disk" in log
    bucket = bucket_client(gcs)
    assert bucket.blob("budgetft/r1/vm/exit_code").download_as_text().strip() == "0"
    assert bucket.blob("budgetft/r1/vm/phase").download_as_text().strip() == "uploading"
    assert json.loads(bucket.blob("budgetft/r1/run/run.json").download_as_text())["status"] == "finished"
    assert bucket.blob("budgetft/r1/run/trials/t001-lora/trial.json").exists()
    # Boot took 75 s more than estimated: charged before the run, in the ledger that went home.
    ledger_text = bucket.blob("budgetft/r1/run/ledger.jsonl").download_as_text()
    charges = [json.loads(line) for line in ledger_text.splitlines()]
    assert [c["key"] for c in charges][:2] == ["vm1:boot", "vm1:boot-extra"]
    assert Decimal(charges[1]["amount_usd"]) == Decimal("0.059726")  # 75 s at $2.866847316/h, rounded up
    assert Decimal(charges[-1]["total_usd"]) <= Decimal("1.00")
    # Uploads happened while the job ran (every SYNC_EVERY_S), not only at the end.
    run_syncs = [c for c in calls if c.startswith("gcloud storage rsync") and c.endswith("/run") and "gs://" not in c.split()[-2]]
    assert len(run_syncs) >= 2


def test_sandbox_failed_install_still_uploads_exit_code_and_powers_off(tmp_path, gcs):
    seed_bucket(gcs)
    vm = SandboxVM(tmp_path / "vm", gcs)
    vm.env_extra["FAKE_PIP_EXIT"] = "1"
    done = vm.run(render(params()))
    assert done.returncode == 12
    assert not any(c.startswith("budgetft run") for c in vm.calls())
    assert bucket_client(gcs).blob("budgetft/r1/vm/exit_code").download_as_text().strip() == "12"
    assert vm.poweroff.exists()


def test_sandbox_resumes_when_the_run_directory_has_a_run(tmp_path, gcs):
    seed_bucket(gcs, run_json={"run_id": "r1", "status": "running", "cap_usd": "1.00", "sessions": 1})
    vm = SandboxVM(tmp_path / "vm", gcs)
    done = vm.run(render(params(session=2)))
    assert done.returncode == 0, done.stdout + done.stderr
    run_call = next(c for c in vm.calls() if c.startswith("budgetft run"))
    assert run_call.startswith("budgetft run --resume ") and "--budget" not in run_call
    assert bucket_client(gcs).blob("budgetft/r1/vm/startup-2.log").exists()


def test_a_restarted_vm_does_not_rerun_the_job(tmp_path, gcs):
    seed_bucket(gcs)
    vm = SandboxVM(tmp_path / "vm", gcs)
    (vm.work / "vm").mkdir(parents=True)
    (vm.work / "vm" / "exit_code").write_text("0\n")
    done = vm.run(render(params()))
    assert done.returncode == 0
    assert [c for c in vm.calls() if not c.startswith(("gcloud", "curl"))] == ["shutdown -h now"] and vm.deleted.exists()


def test_a_vm_that_may_not_delete_itself_powers_off_and_says_what_bills(tmp_path, gcs):
    seed_bucket(gcs)
    vm = SandboxVM(tmp_path / "vm", gcs)
    vm.env_extra["FAKE_NO_SELF_DELETE"] = "1"
    assert vm.run(render(params())).returncode == 0
    assert not vm.deleted.exists() and vm.poweroff.exists()
    assert "its disk bills until `budgetft down r1`" in (vm.work / "vm" / "startup-1.log").read_text()


def test_a_wheel_changed_in_the_bucket_is_not_installed(tmp_path, gcs):
    """Anything on a VM may write to the bucket; the sha256 sits in the script (instance
    metadata), which nothing on the VM can change."""
    seed_bucket(gcs)
    bucket_client(gcs, vm=True).blob("budgetft/r1/dist/budgetft-0.1.0-py3-none-any.whl").upload_from_string(b"PK a wheel someone swapped in")
    vm = SandboxVM(tmp_path / "vm", gcs)
    done = vm.run(render(params()))
    assert done.returncode == 15
    assert not any(c.startswith("pip install") for c in vm.calls()) and not any(c.startswith("budgetft run") for c in vm.calls())
    assert "not the one the launcher built" in (vm.work / "vm" / "startup-1.log").read_text()
    assert bucket_client(gcs).blob("budgetft/r1/vm/exit_code").download_as_text().strip() == "15"
    assert render(params(wheel_sha256="")).count("WHEEL_SHA256=''") == 1  # no digest: nothing matches it, nothing installs


def test_the_hub_token_comes_from_secret_manager_and_stays_out_of_the_log(tmp_path, gcs):
    seed_bucket(gcs)
    secret = "projects/test-project/secrets/hf-token"
    vm = SandboxVM(tmp_path / "vm", gcs)
    vm.env_extra["FAKE_SECRET"] = "hf_s3cr3t"
    assert vm.run(render(params(hf_token_secret=secret))).returncode == 0
    calls = vm.calls()
    assert f"curl GET https://secretmanager.googleapis.com/v1/{secret}/versions/latest:access" in calls
    assert any(c.startswith("budgetft run") and c.endswith("HF_TOKEN=hf_s3cr3t") for c in calls)  # the run sees it
    log = (vm.work / "vm" / "startup-1.log").read_text()
    assert "hf_s3cr3t" not in log and "hf_s3cr3t" not in render(params(hf_token_secret=secret))
    unreadable = SandboxVM(tmp_path / "vm2", gcs)
    assert unreadable.run(render(params(hf_token_secret=secret))).returncode == 16
    assert not any(c.startswith("budgetft run") for c in unreadable.calls())


def test_a_vm_with_only_roles_storage_object_user_cannot_read_the_bucket(tmp_path, gcs, gcs_rights):
    """Issue 28, point 4: roles/storage.objectUser lacks storage.buckets.get, which gcloud
    storage reads first: the VM reads nothing and ends with exit code 10."""
    seed_bucket(gcs)
    gcs_rights.roles[VM] = {"roles/storage.objectUser"}
    vm = SandboxVM(tmp_path / "vm", gcs)
    assert vm.run(render(params())).returncode == 10
    assert (VM, "storage.buckets.get", "/storage/v1/b/budgetft-test") in gcs_rights.denied
    assert "budgetftBucket role" in (vm.work / "vm" / "startup-1.log").read_text()


def test_read_ledger_helper_matches_ledger(tmp_path):
    with Ledger(tmp_path, "1.00") as ledger:
        ledger.charge("0.10", "boot", "x")
    assert read_ledger(tmp_path)[0]["amount_usd"] == "0.100000"


def test_the_vm_installs_a_wheel_of_this_very_code(tmp_path):
    import zipfile

    import budgetft
    from budgetft.cloud.package import build_wheel, install_source, source_root

    root = source_root()
    assert root is not None
    had_build = (root / "build").exists()
    wheel = build_wheel(tmp_path)
    assert wheel.name == f"budgetft-{budgetft.__version__}-py3-none-any.whl" == install_source().wheel
    names = zipfile.ZipFile(wheel).namelist()
    assert "budgetft/cloud/vm_boot.py" in names and "budgetft/money/catalog.csv" in names
    assert (root / "build").exists() == had_build  # built from a copy: the shared tree is untouched
