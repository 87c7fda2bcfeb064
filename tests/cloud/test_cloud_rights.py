"""infra/gcp/README.md grants every right a run needs and nothing more: its custom roles are the
permission lists in budgetft/cloud/rights.py, and runs against fakes that enforce IAM (Compute
Engine's per-call permissions, Cloud Storage's per-object ones) succeed with exactly those and
use every one of them."""

from __future__ import annotations

import re
from pathlib import Path

from test_cloud_fakes import USER, VM, QuickVM, SandboxVM, console, fake_compute, fast_cloud, gcs, gcs_rights, gcs_server, launch  # noqa: F401

from budgetft.cloud import rights

README = (Path(__file__).resolve().parents[2] / "infra" / "gcp" / "README.md").read_text()


def readme_roles() -> dict[str, set[str]]:
    roles = {}
    for name, perms in re.findall(r"gcloud iam roles create (\w+) .*?--permissions=([\w.,]+)", README, flags=re.S):
        roles[name] = set(perms.split(","))
    return roles


def test_the_readme_creates_the_roles_budgetft_checks_for():
    assert readme_roles() == {
        rights.VM_BUCKET_ROLE: set(rights.VM_BUCKET_PERMISSIONS),
        rights.USER_BUCKET_ROLE: set(rights.USER_BUCKET_PERMISSIONS),
        rights.LAUNCHER_ROLE: set(rights.LAUNCHER_PERMISSIONS),
        rights.SELF_DELETE_ROLE: set(rights.SELF_DELETE_PERMISSIONS),
        rights.ACT_AS_ROLE: set(rights.ACT_AS_PERMISSIONS),
    }
    assert f"expression={rights.SELF_DELETE_CONDITION}," in README
    assert "roles/storage.objectUser`" in README and "--role=roles/storage.objectUser" not in README  # explained, never granted


def test_runs_need_exactly_the_readmes_rights(tmp_path, fake_compute, gcs, gcs_rights, fast_cloud):
    fake_compute.enforce = True
    fake_compute.user_permissions = set(rights.LAUNCHER_PERMISSIONS)
    # A whole run with the real start-up script: you as budgetftLauncher and budgetftBucketUser,
    # the VM as budgetftBucket (the rights proxy refuses anything else).
    vm = SandboxVM(tmp_path / "vm", gcs)
    fake_compute.on_insert = vm.boot
    con, out = console()
    assert launch(tmp_path / "a", con) == 0, out.getvalue()
    # A Spot VM preempted mid-run (its zone's operations are read); resumed (no VM of the run may
    # be up: a listing) on a VM that powers off instead of deleting itself (budgetft deletes it).
    fake_compute.on_insert = QuickVM(gcs, end="preempt", delay_s=0.05)
    assert launch(tmp_path / "b", console()[0], spot=True) == 1
    fake_compute.on_insert = QuickVM(gcs, end="stop", delay_s=0.05)
    con, out = console()
    assert launch(None, con, spot=True, resume=tmp_path / "b", budget=None, gpu=None) == 0, out.getvalue()
    assert "deleted by budgetft" in out.getvalue()
    # A VM without an external address.
    fake_compute.networks["default"]["pga"]["us-central1"] = True
    fake_compute.nat_regions.add("us-central1")
    fake_compute.user_permissions = set(rights.LAUNCHER_PERMISSIONS) - {"compute.subnetworks.useExternalIp"}
    fake_compute.on_insert = QuickVM(gcs, delay_s=0.05)
    con, out = console()
    assert launch(tmp_path / "c", con, external_ip=False) == 0, out.getvalue()
    assert fake_compute.exercised == set(rights.LAUNCHER_PERMISSIONS)  # each one was used, none was missing
    assert gcs_rights.denied == []
    assert gcs_rights.exercised[USER] == set(rights.USER_BUCKET_PERMISSIONS)
    assert gcs_rights.exercised[VM] == set(rights.VM_BUCKET_PERMISSIONS)


def test_one_launcher_permission_fewer_and_the_preflight_names_it(tmp_path, fake_compute, gcs, fast_cloud):
    fake_compute.enforce = True
    fake_compute.user_permissions = set(rights.LAUNCHER_PERMISSIONS) - {"compute.instances.setLabels"}
    con, out = console()
    assert launch(tmp_path / "r", con) == 2
    assert "missing 1: compute.instances.setLabels" in out.getvalue() and fake_compute.inserts() == []
