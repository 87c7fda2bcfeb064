"""GcpProvider with the real google-cloud-compute client (REST) against the fake API on loopback:
insert, long-running operations, get, list, delete; and how Compute's errors are classified."""

from __future__ import annotations

import pytest
from test_cloud_fakes import PROJECT, FakeCompute, fake_compute  # noqa: F401  (fixture)

from budgetft.cloud import request as req
from budgetft.cloud.errors import ApiDisabled, NotFound, PermissionDenied, QuotaExceeded, ZoneUnavailable
from budgetft.cloud.gcp import GcpProvider, classify, vm_from_json
from budgetft.money.catalog_store import default_catalog


def body(name: str, zone: str = "us-central1-a", run: str = "r1", spot: bool = False) -> dict:
    spec = req.VmSpec(
        name=name, zone=zone, instance=default_catalog().instance("n1-standard-8", "v100", spot=spot), max_run_seconds=1195,
        startup_script="#!/bin/bash\ntrue\n", service_account="sa@p.iam.gserviceaccount.com", labels=req.labels(run, 1, "job"),
    )
    return req.instance_request(spec)


def test_insert_wait_get_list_delete(fake_compute):
    gcp = GcpProvider(PROJECT)  # endpoint from BUDGETFT_GCP_ENDPOINT, anonymous credentials
    op = gcp.create("us-central1-a", body("budgetft-r1-s1", spot=True))
    assert fake_compute.operations[op]["public"]["status"] == "RUNNING"
    gcp.wait("us-central1-a", op)  # the long-running operation, polled through zoneOperations
    gcp.wait("us-central1-b", gcp.create("us-central1-b", body("budgetft-r2-s1", zone="us-central1-b", run="r2")))
    vm = gcp.get("us-central1-a", "budgetft-r1-s1")
    assert vm is not None and vm.run_id == "r1" and vm.spot and vm.gpu == "nvidia-tesla-v100" and vm.machine_type == "n1-standard-8"
    assert vm.max_run_seconds == 1195 and vm.disk_gb == 50 and vm.created is not None
    assert gcp.get("us-central1-a", "budgetft-r1-s1").status in ("STAGING", "RUNNING")  # it boots as we watch
    assert [v.name for v in gcp.list()] == ["budgetft-r1-s1", "budgetft-r2-s1"]
    assert [v.name for v in gcp.list("r2")] == ["budgetft-r2-s1"]
    gcp.delete_and_confirm("us-central1-a", "budgetft-r1-s1")
    assert gcp.get("us-central1-a", "budgetft-r1-s1") is None
    assert gcp.delete("us-central1-a", "budgetft-r1-s1") is None  # already gone: nothing to do
    paths = {p.split("/compute/v1/projects/test-project")[1].split("/operations/")[0] for _, p, _ in fake_compute.requests}
    assert {"/regions/us-central1", "/aggregated/instances", "/zones/us-central1-a/instances"} - paths == {"/regions/us-central1"}


def test_region_gives_zones_and_quotas(fake_compute):
    info = GcpProvider(PROJECT).region("us-central1")
    assert info.zones == ["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"]
    assert info.quotas["NVIDIA_V100_GPUS"] == (4.0, 0.0)


def test_errors_from_the_api_are_classified(fake_compute):
    gcp = GcpProvider(PROJECT)
    fake_compute.exhausted_zones = {"us-central1-a"}
    op = gcp.create("us-central1-a", body("x"))
    with pytest.raises(ZoneUnavailable, match="out of capacity"):
        gcp.wait("us-central1-a", op)
    fake_compute.quota_on_insert = True
    with pytest.raises(QuotaExceeded, match="NVIDIA_V100_GPUS"):
        gcp.create("us-central1-b", body("y", zone="us-central1-b"))
    fake_compute.api_disabled = True
    with pytest.raises(ApiDisabled, match="gcloud services enable compute.googleapis.com --project test-project"):
        gcp.get("us-central1-a", "x")


def test_an_instance_that_vanished_reads_as_none(fake_compute):
    gcp = GcpProvider(PROJECT)
    gcp.wait("us-central1-a", gcp.create("us-central1-a", body("budgetft-r1-s1")))
    fake_compute.vanish("us-central1-a", "budgetft-r1-s1")  # a Spot preemption with DELETE
    assert gcp.get("us-central1-a", "budgetft-r1-s1") is None


@pytest.mark.parametrize(
    "codes, message, status, expected",
    [
        (["ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"], "no room", 503, ZoneUnavailable),
        ([], "The zone 'x' does not have enough resources available to fulfill the request.", None, ZoneUnavailable),
        (["QUOTA_EXCEEDED"], "Quota 'NVIDIA_T4_GPUS' exceeded. Limit: 0.0 in region us-east1.", 403, QuotaExceeded),
        (["notFound"], "The resource 'projects/p/zones/us-central1-f/acceleratorTypes/nvidia-l4' was not found", 404, ZoneUnavailable),
        (["notFound"], "The resource 'projects/p/zones/z/instances/x' was not found", 404, NotFound),
        (["SERVICE_DISABLED"], "Compute Engine API has not been used in project p before or it is disabled", 403, ApiDisabled),
        (["forbidden"], "Required 'compute.instances.create' permission", 403, PermissionDenied),
    ],
)
def test_classify(codes, message, status, expected):
    assert isinstance(classify("us-central1-a", codes, message, "p", status), expected)


def test_vm_from_json_reads_what_status_needs():
    vm = vm_from_json({"name": "n", "zone": "https://x/zones/us-east1-b", "status": "TERMINATED", "machineType": "https://x/machineTypes/g2-standard-8",
                       "labels": {"budgetft-run": "r"}, "creationTimestamp": "2025-06-01T10:00:00.000-07:00",
                       "lastStartTimestamp": "2025-06-01T10:00:30.000-07:00", "lastStopTimestamp": "2025-06-01T10:20:30.000-07:00",
                       "scheduling": {"provisioningModel": "SPOT", "maxRunDuration": {"seconds": "600"}}})
    assert (vm.zone, vm.region, vm.run_id, vm.gpu, vm.spot, vm.max_run_seconds) == ("us-east1-b", "us-east1", "r", None, True, 600)
    assert vm.billed_seconds() == 1200.0  # a stopped VM's clock stops at its stop


def test_the_fake_is_what_the_tests_think_it_is():
    fake = FakeCompute()
    code, reply = fake.route("GET", "/compute/v1/projects/other/zones/a/instances", None)
    assert code == 404
