"""The results bucket through gcp-storage-emulator, bringing a ledger home, and the on-VM boot charge."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from test_cloud_fakes import BUCKET, USER, VM, bucket_client, gcs, gcs_rights, gcs_server  # noqa: F401  (fixtures)

from budgetft.cloud.collect import adopt_ledger
from budgetft.cloud.errors import BucketError
from budgetft.cloud.storage import Bucket, parse_url, run_prefix
from budgetft.cloud.vm_boot import charge_boot, main as vm_boot_main
from budgetft.money.ledger import Ledger, read_charges


def test_urls_and_prefixes():
    assert parse_url("gs://b/some/where/") == ("b", "some/where")
    assert run_prefix("gs://b", "r1") == "budgetft/r1" and run_prefix("gs://b/team", "r1") == "team/budgetft/r1"
    with pytest.raises(BucketError, match="gs://BUCKET_NAME"):
        parse_url("s3://b")


def test_upload_list_read_download_round_trip(tmp_path, gcs):
    src = tmp_path / "src"
    (src / "trials" / "t1").mkdir(parents=True)
    (src / "run.json").write_text('{"status": "running"}')
    (src / "trials" / "t1" / "trial.json").write_text("{}")
    (src / "ray").mkdir()
    (src / "ray" / "big").write_text("x")
    bucket = Bucket(f"gs://{BUCKET}")
    bucket.check_writable("budgetft/r1")
    assert bucket.upload_dir(src, "budgetft/r1/run", skip=("ray/",)) == 2
    assert sorted(b.name for b in bucket.list("budgetft/r1/run")) == ["budgetft/r1/run/run.json", "budgetft/r1/run/trials/t1/trial.json"]
    assert json.loads(bucket.read_text("budgetft/r1/run/run.json")) == {"status": "running"}
    assert bucket.read_text("budgetft/r1/run/missing.json") is None
    dst = tmp_path / "dst"
    written = bucket.download_prefix("budgetft/r1/run", dst)
    assert sorted(p.relative_to(dst).as_posix() for p in written) == ["run.json", "trials/t1/trial.json"]
    assert not [p for p in dst.rglob(".*")]  # no temporary files left behind
    bucket.delete_prefix("budgetft/r1")
    assert bucket.list("budgetft/r1") == []


def test_a_missing_bucket_says_how_to_create_it(gcs):
    with pytest.raises(BucketError, match="gcloud storage buckets create gs://nope"):
        Bucket("gs://nope").check_writable("budgetft/r1")
    with pytest.raises(BucketError, match="does not exist"):
        Bucket("gs://nope").read_text("x")


def test_a_missing_object_is_missing_even_without_storage_buckets_get(gcs, gcs_rights):
    """Issue 28, point 4: with only roles/storage.objectUser (no storage.buckets.get), a missing
    object used to read as a missing bucket (the check called buckets.get). Objects.list is asked."""
    gcs_rights.roles[USER] = {"roles/storage.objectUser"}
    bucket = Bucket(f"gs://{BUCKET}")
    assert bucket.read_text("budgetft/r1/vm/exit_code") is None
    with pytest.raises(BucketError, match="gs://nope does not exist"):
        Bucket("gs://nope").read_text("budgetft/r1/vm/exit_code")


def test_the_bucket_tells_its_location_your_rights_and_who_else_may_use_it(gcs, gcs_rights):
    bucket = Bucket(f"gs://{BUCKET}", project="test-project")
    assert bucket.location()[0].lower() == "us"
    assert set(bucket.permissions(["storage.buckets.get", "storage.objects.create", "storage.buckets.setIamPolicy"])) == {"storage.buckets.get", "storage.objects.create"}
    assert bucket.members_roles()[VM] == {"projects/test-project/roles/budgetftBucket"}
    gcs_rights.roles[USER] = {"roles/storage.objectUser"}
    with pytest.raises(BucketError, match="storage.buckets.get") as refused:
        bucket.location()
    assert "--role=projects/test-project/roles/budgetftBucketUser" in str(refused.value)


def test_the_watcher_reads_a_trial_again_only_when_it_changed(monkeypatch, gcs):
    import io

    from rich.console import Console

    from budgetft.cloud.watch import Watcher

    client = bucket_client(gcs, vm=True)
    client.blob("budgetft/r1/run/trials/t1/trial.json").upload_from_string('{"trial_id": "t1", "evals": [{"accuracy": 0.6}]}')
    bucket = Bucket(f"gs://{BUCKET}")
    reads: list[str] = []
    real = bucket.read_text
    monkeypatch.setattr(bucket, "read_text", lambda name: reads.append(name) or real(name))
    w = Watcher(None, bucket, "budgetft/r1", "z", "n", cap=Decimal(1), max_run_seconds=600, boot_estimate_s=225, console=Console(file=io.StringIO()))
    assert w.read_progress(None, 0.0).best_accuracy == 0.6
    assert w.read_progress(None, 0.0).best_accuracy == 0.6
    assert reads.count("budgetft/r1/run/trials/t1/trial.json") == 1  # Cloud Storage bills each read
    client.blob("budgetft/r1/run/trials/t1/trial.json").upload_from_string('{"trial_id": "t1", "evals": [{"accuracy": 0.6}, {"accuracy": 0.71}]}')
    assert w.read_progress(None, 0.0).best_accuracy == 0.71


def ledger_with(path, *amounts) -> None:
    with Ledger(path, "1.00") as ledger:
        for i, amount in enumerate(amounts):
            ledger.charge(amount, "training", f"c{i}", key=f"k{i}")


def test_the_vms_ledger_replaces_ours_only_if_it_extends_it(tmp_path):
    local, vm, other = tmp_path / "local", tmp_path / "vm", tmp_path / "other"
    ledger_with(local, "0.1")
    ledger_with(vm, "0.1", "0.2")
    ledger_with(other, "0.3")
    assert adopt_ledger(local, (vm / "ledger.jsonl").read_text()) is None
    assert [c.amount for c in read_charges(local / "ledger.jsonl")] == [Decimal("0.1"), Decimal("0.2")]
    shorter = tmp_path / "shorter"
    ledger_with(shorter, "0.1")
    assert adopt_ledger(local, (shorter / "ledger.jsonl").read_text()) is None  # ours extends it: kept
    assert len(read_charges(local / "ledger.jsonl")) == 2
    warning = adopt_ledger(local, (other / "ledger.jsonl").read_text())
    assert "does not extend" in warning and (local / "ledger.vm.jsonl").is_file()
    assert len(read_charges(local / "ledger.jsonl")) == 2


def test_boot_overrun_is_charged_once_and_capped(tmp_path):
    assert charge_boot(tmp_path, Decimal("1.00"), Decimal("3.60"), 225, 200, 1) == 0
    assert charge_boot(tmp_path, Decimal("1.00"), Decimal("3.60"), 225, 325, 1) == Decimal("0.1")  # 100 s at $3.60/h
    assert charge_boot(tmp_path, Decimal("1.00"), Decimal("3.60"), 225, 325, 1) == Decimal("0.1")  # same key: not twice
    assert len(read_charges(tmp_path / "ledger.jsonl")) == 1
    assert charge_boot(tmp_path, Decimal("1.00"), Decimal("3.60"), 0, 36000, 2) == Decimal("0.9")  # only what is left
    uptime = tmp_path / "uptime"
    uptime.write_text("10.0 1.0\n")
    assert vm_boot_main(["--run-dir", str(tmp_path), "--cap", "1.00", "--price-per-hour", "3.6", "--estimate-s", "225", "--uptime-file", str(uptime)]) == 0


def test_the_watcher_rides_out_failed_polls(monkeypatch):
    from rich.console import Console
    import io

    from budgetft.cloud import watch
    from budgetft.cloud.errors import CloudError
    from budgetft.cloud.provider import VM

    class Flaky:
        calls = 0

        def get(self, zone, name):
            self.calls += 1
            if self.calls <= 3:
                raise CloudError("connection reset")
            return VM(name, zone, "TERMINATED")

    class Files:
        def read_text(self, name):
            return "0\n" if name.endswith("exit_code") else None

        def list(self, prefix):
            return []

    monkeypatch.setattr(watch.time, "sleep", lambda s: None)
    buf = io.StringIO()
    w = watch.Watcher(Flaky(), Files(), "p", "z", "n", cap=Decimal(1), max_run_seconds=600, boot_estimate_s=225, console=Console(file=buf))
    outcome = w.watch()
    assert outcome.kind == "finished" and "poll failed (3/" in buf.getvalue()
    always = Flaky()
    always.calls = -10**6
    assert watch.Watcher(always, Files(), "p", "z", "n", cap=Decimal(1), max_run_seconds=600, boot_estimate_s=225, console=Console(file=io.StringIO())).watch().kind == "lost"
