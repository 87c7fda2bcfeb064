"""`budgetft run --cloud gcp` end to end against the fake Compute API (real google-cloud-compute
client, REST) and gcp-storage-emulator behind its rights proxy: launch -> poll -> collect -> VM
gone; preemption and --resume; and the failures that must leave nothing behind. Every injected
fault, one by one: test_cloud_failover.py."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal

import pytest
from test_cloud_fakes import (  # noqa: F401  (fixtures)
    BUCKET,
    VM,
    QuickVM,
    SandboxVM,
    bucket_client,
    fake_compute,
    fast_cloud,
    gcs,
    gcs_rights,
    gcs_server,
    launch,
    read_ledger,
)
from test_cloud_fakes import console as make_console


def bucket_names(endpoint: str) -> list[str]:
    return [b.name for b in bucket_client(endpoint).client.list_blobs(BUCKET, prefix="budgetft/")]


def test_launch_poll_collect_and_delete_with_the_real_startup_script(tmp_path, fake_compute, gcs, fast_cloud):
    vm = SandboxVM(tmp_path / "vm", gcs)
    fake_compute.on_insert = vm.boot
    con, out = make_console()
    run_dir = tmp_path / "run1"
    code = launch(run_dir, con)
    text = out.getvalue()
    assert code == 0, text + getattr(vm, "result", None).stdout if hasattr(vm, "result") else text
    # The request: the budget's lifetime, enforced by the cloud, and our labels and scopes; the
    # exact image the preflight resolved (not the family); the wheel's digest in the script.
    [(zone, body)] = fake_compute.inserts()
    assert zone == "us-central1-a"
    sched = body["scheduling"]
    assert sched["maxRunDuration"] == {"seconds": "1129"} and sched["instanceTerminationAction"] == "DELETE"
    assert sched["provisioningModel"] == "STANDARD"
    assert body["labels"]["budgetft-run"] == "run1"
    assert body["serviceAccounts"][0]["scopes"] == ["https://www.googleapis.com/auth/devstorage.read_write", "https://www.googleapis.com/auth/compute"]
    assert body["disks"][0]["initializeParams"]["sourceImage"] == "projects/deeplearning-platform-release/global/images/pytorch-2-9-cu129-ubuntu-2404-nvidia-580-v20261120"
    script = body["metadata"]["items"][0]["value"]
    assert f"WHEEL_SHA256={hashlib.sha256(b'PK fake wheel').hexdigest()}" in script
    # Progress was shown while it ran; the VM deleted itself (and its disk) when done.
    assert "VM RUNNING" in text and "best accuracy" in text
    assert fake_compute.instances == {} and fake_compute.deletes() == []
    assert "VM RUNNING, running" in text
    # The results are home: the VM's run directory, its start-up log, our launch record.
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    trial = json.loads((run_dir / "trials" / "t001-lora" / "trial.json").read_text())
    assert trial["evals"][-1]["accuracy"] == pytest.approx(0.68)
    assert (run_dir / "report.md").is_file()
    assert "phase: running" in (run_dir / "cloud" / "startup-1.log").read_text()
    record = json.loads((run_dir / "cloud" / "launch-1.json").read_text())
    assert record["status"] == "finished" and record["zone"] == "us-central1-a" and record["max_run_seconds"] == 1129
    assert record["wheel_sha256"] == hashlib.sha256(b"PK fake wheel").hexdigest() and record["usd_per_hour"] == "2.880847316"
    # One ledger: the overheads charged before launch (the VM's seconds, then the results'
    # transfer home), the VM's boot overrun and its training, at the whole rate.
    charges = read_ledger(run_dir)
    keys = [c["key"] for c in charges]
    assert keys[:5] == ["vm1:boot", "vm1:overhead", "vm1:upload", "vm1:teardown", "vm1.side1"]
    assert "vm1:boot-extra" in keys and "s1:100" in keys
    assert Decimal(charges[-1]["total_usd"]) <= Decimal("1.00")
    assert "spent $" in text and "of $1.00" in text and "deleted itself when done; confirmed gone" in text
    assert "FAIL" not in text  # the preflight's checks all passed


def test_zone_fallback_then_success(tmp_path, fake_compute, gcs, fast_cloud):
    fake_compute.faults.stockouts.update({"us-central1-a": {}, "us-central1-b": {}})
    fake_compute.on_insert = QuickVM(gcs)
    con, out = make_console()
    code = launch(tmp_path / "run2", con)
    text = out.getvalue()
    assert code == 0, text
    assert [z for z, _ in fake_compute.inserts()] == ["us-central1-a", "us-central1-b", "us-central1-c"]
    assert "us-central1-a: out of capacity" in text and "trying the next zone" in text
    assert fake_compute.instances == {}
    assert json.loads((tmp_path / "run2" / "cloud" / "launch-1.json").read_text())["zone"] == "us-central1-c"


def test_every_zone_of_the_region_asked_for_exhausted_fails_cleanly(tmp_path, fake_compute, gcs, fast_cloud):
    for zone in ("us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"):
        fake_compute.faults.stockouts[zone] = {}
    con, out = make_console()
    code = launch(tmp_path / "run3", con, region="us-central1")
    text = out.getvalue()
    assert code == 2
    assert "no zone could start the VM now" in text and "us-central1-f: out of capacity" in text and "Nothing was left running" in text
    assert len(fake_compute.inserts()) == 4 and fake_compute.instances == {}
    assert not (tmp_path / "run3").exists()  # nothing was spent: no half-made run directory
    assert bucket_names(gcs) == []


def test_an_exhausted_zone_given_with_zone_says_how_to_widen_the_search(tmp_path, fake_compute, gcs, fast_cloud):
    fake_compute.faults.stockouts["us-central1-b"] = {}
    con, out = make_console()
    assert launch(tmp_path / "r", con, zone="us-central1-b") == 2
    assert "drop --zone/--region so every catalogue region is tried" in out.getvalue()
    assert len(fake_compute.inserts()) == 1


def test_no_project_wide_gpu_quota_fails_before_creating_anything(tmp_path, fake_compute, gcs, fast_cloud):
    fake_compute.project_quotas["GPUS_ALL_REGIONS"] = (0.0, 0.0)
    con, out = make_console()
    code = launch(tmp_path / "run4", con)
    text = out.getvalue()
    assert code == 2
    assert "GPUS_ALL_REGIONS quota (limit 0, in use 0) leaves no GPU for this VM, in any region" in text and "request an increase of GPUS_ALL_REGIONS" in text
    assert fake_compute.inserts() == [] and fake_compute.instances == {}
    assert not (tmp_path / "run4").exists() and bucket_names(gcs) == []


def test_spot_preemption_is_read_from_the_zone_then_resume_finishes(tmp_path, fake_compute, gcs, fast_cloud):
    fake_compute.on_insert = QuickVM(gcs, end="preempt", accuracy=0.64)
    con, out = make_console()
    run_dir = tmp_path / "run6"
    code = launch(run_dir, con, spot=True)
    text = out.getvalue()
    assert code == 1, text
    assert "Spot preemption" in text and "(compute.instances.preempted)" in text and "1 trial(s), best accuracy 0.640" in text
    assert "deleted by Compute Engine; confirmed gone" in text
    assert f"continue with: budgetft run --cloud gcp --resume {run_dir} --spot" in text
    assert fake_compute.instances == {}
    assert (run_dir / "trials" / "t001-lora" / "trial.json").is_file()
    spent_before = Decimal(read_ledger(run_dir)[-1]["total_usd"])

    # --resume: a new VM (session 2) with what is left of the same cap.
    fake_compute.on_insert = QuickVM(gcs, end="finish", accuracy=0.71)
    con, out = make_console()
    code = launch(None, con, spot=True, resume=run_dir, budget=None, gpu=None)
    text = out.getvalue()
    assert code == 0, text
    [_, (zone, body)] = fake_compute.inserts()
    assert body["name"].endswith("-s2") and body["labels"]["budgetft-session"] == "2"
    assert body["scheduling"]["provisioningModel"] == "SPOT"
    assert "nvidia-tesla-v100" in json.dumps(body["guestAccelerators"])  # same GPU as the first VM
    lifetime = int(body["scheduling"]["maxRunDuration"]["seconds"])
    first = int(fake_compute.inserts()[0][1]["scheduling"]["maxRunDuration"]["seconds"])
    assert lifetime < first  # only the remaining money buys time
    charges = read_ledger(run_dir)
    assert [c["key"] for c in charges if c["key"] and c["key"].startswith("vm2")] == ["vm2:boot", "vm2:overhead", "vm2:upload", "vm2:teardown", "vm2.side1"]
    assert Decimal(charges[-1]["total_usd"]) > spent_before and Decimal(charges[-1]["total_usd"]) <= Decimal("1.00")
    assert (run_dir / "cloud" / "launch-2.json").is_file() and fake_compute.instances == {}
    assert (run_dir / "trials" / "t002-lora" / "trial.json").is_file()


def test_a_silent_vm_is_deleted_and_its_true_time_charged_up_to_the_cap(tmp_path, fake_compute, gcs, fast_cloud):
    fake_compute.on_insert = QuickVM(gcs, end="silent")
    con, out = make_console()
    run_dir = tmp_path / "run7"
    code = launch(run_dir, con)
    text = out.getvalue()
    assert code == 1
    assert "never reported back" in text and fake_compute.instances == {}
    # Two hours at $2.87/h is more than the cap: the ledger records up to the cap and says so.
    charges = read_ledger(run_dir)
    assert charges[-1]["key"] == "vm1:reconcile" and Decimal(charges[-1]["total_usd"]) == Decimal("1.000000")
    assert "more than the cap left" in text


def test_ctrl_c_while_watching_deletes_the_vm(tmp_path, fake_compute, gcs, fast_cloud, monkeypatch):
    from budgetft.cloud import watch

    def interrupt(_seconds):
        raise KeyboardInterrupt

    fake_compute.on_insert = None  # a VM that just runs
    monkeypatch.setattr(watch.time, "sleep", interrupt)
    con, out = make_console()
    assert launch(tmp_path / "run8", con) == 130
    assert fake_compute.instances == {} and len(fake_compute.deletes()) == 1
    assert "interrupted" in out.getvalue()


def test_api_disabled_names_the_command_that_enables_it(tmp_path, fake_compute, gcs, fast_cloud):
    fake_compute.api_disabled = True
    con, out = make_console()
    assert launch(tmp_path / "run9", con) == 2
    assert "gcloud services enable compute.googleapis.com --project test-project" in out.getvalue()
    assert not (tmp_path / "run9").exists()


def test_no_credentials_names_the_login_command(tmp_path, monkeypatch, gcs):
    # Real google.auth lookup, offline: no key file, no gcloud config, no metadata server probe.
    for var in ("BUDGETFT_GCP_ENDPOINT", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "p")
    con, out = make_console()
    assert launch(tmp_path / "run10", con) == 2
    assert "gcloud auth application-default login" in out.getvalue()
    assert not (tmp_path / "run10").exists()


def test_missing_bucket_fails_before_anything_is_created(tmp_path, fake_compute, gcs, fast_cloud):
    con, out = make_console()
    assert launch(tmp_path / "run11", con, bucket="gs://no-such-bucket") == 2
    text = out.getvalue()
    assert "gs://no-such-bucket does not exist" in text and "gcloud storage buckets create gs://no-such-bucket" in text
    assert fake_compute.inserts() == [] and not (tmp_path / "run11").exists()


def test_a_vm_account_with_only_roles_storage_object_user_is_refused_before_anything_is_created(tmp_path, fake_compute, gcs, gcs_rights, fast_cloud):
    """Issue 28, point 4: such a VM could not upload (gcloud storage needs storage.buckets.get)
    and was deleted as silent after paid minutes; the preflight now refuses it, with the fix."""
    gcs_rights.roles[VM] = {"roles/storage.objectUser"}
    fake_compute.on_insert = QuickVM(gcs)  # were it created, it would end at once
    con, out = make_console()
    assert launch(tmp_path / "r", con) == 2
    text = out.getvalue()
    assert "vm bucket rights" in text and "lacks storage.buckets.get" in text and "--role=projects/test-project/roles/budgetftBucket" in text
    assert fake_compute.inserts() == [] and not (tmp_path / "r").exists()


def test_unwritable_bucket_fails_before_anything_is_created(tmp_path, fake_compute, monkeypatch, fast_cloud):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import threading

    class Forbidden(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _no(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            data = b'{"error": {"code": 403, "message": "caller does not have storage.objects.create access"}}'
            self.send_response(403)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _no

    server = ThreadingHTTPServer(("127.0.0.1", 0), Forbidden)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        con, out = make_console()
        assert launch(tmp_path / "run12", con, bucket="gs://locked") == 2
        assert "gs://locked refuses your credentials" in out.getvalue() and "roles/budgetftBucketUser" in out.getvalue()
        assert fake_compute.inserts() == []
    finally:
        server.shutdown()
        server.server_close()


def test_budget_too_small_for_the_vm_overheads_is_refused(tmp_path):
    con, out = make_console()
    assert launch(tmp_path / "r", con, budget=Decimal("0.25"), dry_run=True) == 2
    assert "Raise --budget to at least $" in out.getvalue()


def test_resume_refuses_while_a_vm_of_the_run_is_still_up_and_catches_up_first(tmp_path, fake_compute, gcs, fast_cloud):
    fake_compute.on_insert = QuickVM(gcs, end="preempt")
    run_dir = tmp_path / "run14"
    con, out = make_console()
    assert launch(run_dir, con, spot=True) == 1
    # The launcher "died" before bringing the last upload home: the bucket has a newer trial.
    bucket = bucket_client(gcs)
    bucket.blob("budgetft/run14/run/trials/t009-lora/trial.json").upload_from_string('{"trial_id": "t009-lora"}')
    fake_compute.add_instance("us-central1-b", "budgetft-run14-s9", {"budgetft-run": "run14"})
    con, out = make_console()
    assert launch(None, con, spot=True, resume=run_dir, budget=None, gpu=None) == 2
    assert "still has a VM: budgetft-run14-s9" in out.getvalue() and len(fake_compute.inserts()) == 1
    fake_compute.vanish("us-central1-b", "budgetft-run14-s9")
    fake_compute.on_insert = QuickVM(gcs, end="finish")
    con, out = make_console()
    assert launch(None, con, spot=True, resume=run_dir, budget=None, gpu=None) == 0, out.getvalue()
    assert "caught up" in out.getvalue() and (run_dir / "trials" / "t009-lora" / "trial.json").is_file()
