"""GcpProvider with the real google-cloud-compute client (REST) against the fake API on loopback:
insert, long-running operations, get, list, delete, events; retries; how Compute's errors are
classified and scoped; and that the fake refuses what the real API refuses."""

from __future__ import annotations

import copy

import pytest
from test_cloud_fakes import PROJECT, SA, FakeCompute, fake_compute, fast_cloud  # noqa: F401  (fixtures)

from budgetft.cloud import request as req
from budgetft.cloud.errors import CLOUD, REGION, ApiDisabled, ExternalIpForbidden, NotFound, PermissionDenied, QuotaExceeded, Transient, ZoneUnavailable
from budgetft.cloud.gcp import GcpProvider
from budgetft.cloud.gcp_errors import Problem, classify, is_transient
from budgetft.cloud.gcp_json import vm_from_json
from budgetft.cloud.image import DEFAULT_IMAGE
from budgetft.money.catalog_store import default_catalog

IMAGE = "projects/deeplearning-platform-release/global/images/family/pytorch-2-9-cu129-ubuntu-2404-nvidia-580"


def body(name: str, zone: str = "us-central1-a", run: str = "r1", spot: bool = False, machine: str = "n1-standard-8", gpu: str | None = "v100", **kw) -> dict:
    spec = req.VmSpec(
        name=name, zone=zone, instance=default_catalog().instance(machine, gpu, spot=spot), max_run_seconds=1195, image=IMAGE,
        startup_script="#!/bin/bash\ntrue\n", service_account=SA, labels=req.labels(run, 1, "job"), **kw,
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
    assert [v.name for v in gcp.list()] == ["budgetft-r1-s1", "budgetft-r2-s1"]
    assert [v.name for v in gcp.list("r2")] == ["budgetft-r2-s1"]
    gcp.delete_and_confirm("us-central1-a", "budgetft-r1-s1")
    assert gcp.get("us-central1-a", "budgetft-r1-s1") is None
    assert gcp.delete("us-central1-a", "budgetft-r1-s1") is None  # already gone: nothing to do


def test_provisioning_and_staging_are_not_billed(fake_compute):
    gcp = GcpProvider(PROJECT)
    gcp.wait("us-central1-a", gcp.create("us-central1-a", body("budgetft-r1-s1")))
    fake_compute.instances[("us-central1-a", "budgetft-r1-s1")]["creationTimestamp"] = "2020-01-01T00:00:00.000-07:00"
    first = gcp.get("us-central1-a", "budgetft-r1-s1")  # the fake boots one step per GET
    assert first.status == "STAGING" and first.billed_seconds() == 0.0  # six years since creation, none of it billed
    running = gcp.get("us-central1-a", "budgetft-r1-s1")
    assert running.status == "RUNNING" and running.billed_seconds() < 60


def test_region_zones_quotas_and_what_zones_offer(fake_compute):
    fake_compute.zone_gpus["us-central1-f"].discard("nvidia-tesla-v100")
    gcp = GcpProvider(PROJECT)
    info = gcp.region("us-central1")
    assert info.zones == ["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"]
    assert info.quotas["NVIDIA_V100_GPUS"] == (4.0, 0.0) and info.quotas["GPUS_ALL_REGIONS"] == (8.0, 0.0)
    offered = gcp.offered_zones("nvidia-tesla-v100", "n1-standard-8")
    assert "us-central1-a" in offered and "us-central1-f" not in offered and "us-east1-b" in offered


def test_an_image_family_resolves_to_one_image_with_its_disk_size(fake_compute):
    gcp = GcpProvider(PROJECT)
    image = gcp.image(IMAGE)
    assert image.name == "pytorch-2-9-cu129-ubuntu-2404-nvidia-580-v20261120" and image.disk_size_gb == 50 and image.status == "READY"
    assert image.self_link.endswith("/projects/deeplearning-platform-release/global/images/" + image.name)
    assert gcp.image(IMAGE.replace("2-9-cu129", "1-0-cu100")) is None
    assert DEFAULT_IMAGE == IMAGE


def test_events_say_a_vm_was_preempted(fake_compute):
    gcp = GcpProvider(PROJECT)
    gcp.wait("us-central1-a", gcp.create("us-central1-a", body("budgetft-r1-s1", spot=True)))
    fake_compute.preempt("us-central1-a", "budgetft-r1-s1")
    assert gcp.get("us-central1-a", "budgetft-r1-s1") is None
    kinds = [e.kind for e in gcp.events("us-central1-a", "budgetft-r1-s1")]
    assert kinds == ["created", "preempted"]


def test_429_and_5xx_are_retried_with_backoff_and_a_retried_insert_acts_once(fake_compute, fast_cloud):
    waits = fast_cloud
    fake_compute.faults.throttles = [[r"GET .*/regions/", 429, "rateLimitExceeded", 2], [r"POST .*/instances$", 503, "backendError", 2]]
    gcp = GcpProvider(PROJECT)
    assert gcp.region("us-central1").zones  # two 429s, then an answer
    op = gcp.create("us-central1-a", body("budgetft-r1-s1"))  # two 503s: the insert is sent three times
    gcp.wait("us-central1-a", op)
    assert len(waits) == 4 and all(w >= 0 for w in waits)  # four backoffs, each a jittered wait
    posts = [r for r in fake_compute.requests if r[0] == "POST" and r[1].endswith("/instances")]
    assert len(posts) == 3  # sent three times, all with one requestId: one instance
    assert list(fake_compute.instances) == [("us-central1-a", "budgetft-r1-s1")]


def test_a_retried_request_id_returns_the_first_operation(fake_compute):
    code, first = fake_compute.route("POST", f"/compute/v1/projects/{PROJECT}/zones/us-central1-a/instances", {"requestId": "0" * 8 + "-0000-0000-0000-" + "0" * 12}, body("budgetft-x-s1"))
    again_code, again = fake_compute.route("POST", f"/compute/v1/projects/{PROJECT}/zones/us-central1-a/instances", {"requestId": "0" * 8 + "-0000-0000-0000-" + "0" * 12}, body("budgetft-x-s1"))
    assert code == again_code == 200 and first["name"] == again["name"] and len(fake_compute.instances) == 1


def test_rate_limits_that_never_end_are_transient_not_quota(fake_compute, fast_cloud):
    fake_compute.faults.throttles = [[r"GET .*/regions/", 403, "rateLimitExceeded", 99]]
    with pytest.raises(Transient, match="too many"):
        GcpProvider(PROJECT).region("us-central1")
    assert len(fast_cloud) == 5  # 6 attempts, 5 waits


def test_an_operation_that_takes_several_polls(fake_compute, fast_cloud):
    fake_compute.faults.slow_polls = 3
    gcp = GcpProvider(PROJECT)
    gcp.wait("us-central1-a", gcp.create("us-central1-a", body("budgetft-r1-s1")))
    assert gcp.get("us-central1-a", "budgetft-r1-s1") is not None and len(fast_cloud) >= 3


def test_errors_from_the_api_are_classified_and_scoped(fake_compute):
    gcp = GcpProvider(PROJECT)
    fake_compute.faults.stockouts["us-central1-a"] = {}
    op = gcp.create("us-central1-a", body("x"))
    with pytest.raises(ZoneUnavailable, match="out of capacity") as stock:
        gcp.wait("us-central1-a", op)
    assert stock.value.scope == "zone" and stock.value.reason == "capacity"
    fake_compute.faults.unsupported.add("us-central1-b")
    with pytest.raises(ZoneUnavailable) as unsupported:
        gcp.wait("us-central1-b", gcp.create("us-central1-b", body("x2", zone="us-central1-b")))
    assert unsupported.value.reason == "unsupported"
    fake_compute.quota("us-central1", "NVIDIA_V100_GPUS", 0.0)  # counted on insert, reported on the operation
    fake_compute.quota("us-central1", "PREEMPTIBLE_NVIDIA_V100_GPUS", 0.0)  # none: this standard VM draws on the standard quota
    with pytest.raises(QuotaExceeded) as regional:
        gcp.wait("us-central1-c", gcp.create("us-central1-c", body("y", zone="us-central1-c")))
    assert (regional.value.metric, regional.value.scope, regional.value.region) == ("NVIDIA_V100_GPUS", REGION, "us-central1")
    fake_compute.faults.insert_quota.append({"metric": "GPUS_ALL_REGIONS", "sync": True})
    with pytest.raises(QuotaExceeded) as global_:
        gcp.create("us-east1-b", body("z", zone="us-east1-b"))
    assert (global_.value.metric, global_.value.scope) == ("GPUS_ALL_REGIONS", CLOUD)
    fake_compute.faults.insert_quota.clear()
    fake_compute.faults.no_external_ip = True
    with pytest.raises(ExternalIpForbidden, match="--no-external-ip"):
        gcp.create("us-east1-b", body("w", zone="us-east1-b"))
    gcp.create("us-east1-b", body("w", zone="us-east1-b", external_ip=False))  # no address: allowed
    fake_compute.api_disabled = True
    with pytest.raises(ApiDisabled, match="gcloud services enable compute.googleapis.com --project test-project"):
        gcp.get("us-central1-a", "x")


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda b: b.update(machineType="zones/us-central1-a/machineTypes/n9-huge"), "does not exist in zone"),
        (lambda b: b["guestAccelerators"][0].update(acceleratorType="zones/us-central1-a/acceleratorTypes/nvidia-h200"), "was not found"),
        (lambda b: b.update(machineType="zones/us-central1-a/machineTypes/n1-standard-16"), "at most 12 vCPUs"),
        (lambda b: b.update(machineType="zones/us-central1-a/machineTypes/g2-standard-8"), "built in"),
        (lambda b: b["scheduling"].update(onHostMaintenance="MIGRATE"), "live migration"),
        (lambda b: b["scheduling"].update(provisioningModel="SPOT", automaticRestart=True), "automatically restarted"),
        (lambda b: b["scheduling"].update(maxRunDuration={"seconds": "10"}), "between 30 seconds"),
        (lambda b: b["scheduling"].pop("instanceTerminationAction"), "Required with maxRunDuration"),
        (lambda b: b["disks"][0]["initializeParams"].update(diskSizeGb="30"), "smaller than the image size"),
        (lambda b: b["disks"][0]["initializeParams"].update(sourceImage="projects/x/global/images/family/y"), "was not found"),
        (lambda b: b["networkInterfaces"][0].update(network="global/networks/nope"), "networks/nope' was not found"),
        (lambda b: b["serviceAccounts"][0].update(email="nobody@x.iam.gserviceaccount.com"), "serviceAccounts/nobody"),
        (lambda b: b.update(name="Budgetft_X"), "regex"),
        (lambda b: b.pop("disks"), "Required field 'resource.disks'"),
        (lambda b: b["labels"].update({"budgetft-run": "UPPER"}), "Label keys and values"),
    ],
)
def test_the_fake_refuses_what_compute_engine_refuses(change, field):
    fake = FakeCompute()
    good = body("budgetft-x-s1")
    assert fake.route("POST", f"/compute/v1/projects/{PROJECT}/zones/us-central1-a/instances", {}, copy.deepcopy(good))[0] == 200
    bad = copy.deepcopy(good)
    bad["name"] = "budgetft-y-s1"
    change(bad)
    code, reply = fake.route("POST", f"/compute/v1/projects/{PROJECT}/zones/us-central1-a/instances", {}, bad)
    assert code in (400, 404) and field in reply["error"]["message"]


def test_a_standard_short_lived_vm_draws_on_preemptible_quota_in_the_fake_as_in_compute(fake_compute):
    fake_compute.quota("us-central1", "PREEMPTIBLE_NVIDIA_V100_GPUS", 1.0, 1.0)  # exists, and full
    code, reply = fake_compute.route("POST", f"/compute/v1/projects/{PROJECT}/zones/us-central1-a/instances", {}, body("budgetft-x-s1"))
    op = fake_compute.route("GET", f"/compute/v1/projects/{PROJECT}/zones/us-central1-a/operations/{reply['name']}", {}, None)[1]
    assert op["error"]["errors"][0]["code"] == "QUOTA_EXCEEDED" and "PREEMPTIBLE_NVIDIA_V100_GPUS" in op["error"]["errors"][0]["message"]


@pytest.mark.parametrize(
    "problem, expected, scope",
    [
        (Problem(("ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",), "no room", 503), ZoneUnavailable, "zone"),
        (Problem((), "The zone 'x' does not have enough resources available to fulfill the request."), ZoneUnavailable, "zone"),
        (Problem(("UNSUPPORTED_OPERATION",), "not here"), ZoneUnavailable, "zone"),
        (Problem(("QUOTA_EXCEEDED",), "Quota 'NVIDIA_T4_GPUS' exceeded.  Limit: 0.0 in region us-east1.", 403), QuotaExceeded, REGION),
        (Problem(("quotaExceeded",), "Quota 'GPUS_ALL_REGIONS' exceeded.  Limit: 0.0 globally.", 403), QuotaExceeded, CLOUD),
        (Problem(("QUOTA_EXCEEDED",), "Quota exceeded", None, "PREEMPTIBLE_NVIDIA_T4_GPUS", {"region": "us-east1"}), QuotaExceeded, REGION),
        (Problem(("rateLimitExceeded",), "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute'", 403), Transient, CLOUD),
        (Problem(("notFound",), "The resource 'projects/p/zones/us-central1-f/acceleratorTypes/nvidia-l4' was not found", 404), ZoneUnavailable, "zone"),
        (Problem(("notFound",), "The resource 'projects/p/zones/z/instances/x' was not found", 404), NotFound, CLOUD),
        (Problem(("SERVICE_DISABLED",), "Compute Engine API has not been used in project p before or it is disabled", 403), ApiDisabled, CLOUD),
        (Problem(("forbidden",), "Required 'compute.instances.create' permission", 403), PermissionDenied, CLOUD),
        (Problem(("conditionNotMet",), "Constraint constraints/compute.vmExternalIpAccess violated for project 1.", 412), ExternalIpForbidden, CLOUD),
    ],
)
def test_classify(problem, expected, scope):
    error = classify(problem, "us-east1-b", "p")
    assert isinstance(error, expected) and error.scope == scope


def test_only_passing_trouble_is_retried():
    assert is_transient(Problem(("rateLimitExceeded",), "x", 403)) and is_transient(Problem((), "x", 503)) and is_transient(Problem((), "x", 429))
    assert not is_transient(Problem(("ZONE_RESOURCE_POOL_EXHAUSTED",), "x", 503))  # a stockout: the next zone, not the same call
    assert not is_transient(Problem(("quotaExceeded",), "Quota 'CPUS' exceeded.  Limit: 8.0 in region us-east1.", 403))


def test_vm_from_json_reads_what_status_needs():
    vm = vm_from_json({"name": "n", "zone": "https://x/zones/us-east1-b", "status": "TERMINATED", "machineType": "https://x/machineTypes/g2-standard-8",
                       "labels": {"budgetft-run": "r"}, "creationTimestamp": "2025-06-01T10:00:00.000-07:00",
                       "lastStartTimestamp": "2025-06-01T10:00:30.000-07:00", "lastStopTimestamp": "2025-06-01T10:20:30.000-07:00",
                       "scheduling": {"provisioningModel": "SPOT", "maxRunDuration": {"seconds": "600"}}})
    assert (vm.zone, vm.region, vm.run_id, vm.gpu, vm.spot, vm.max_run_seconds) == ("us-east1-b", "us-east1", "r", None, True, 600)
    assert vm.billed_seconds() == 1200.0  # a stopped VM's clock stops at its stop


def test_the_fake_is_what_the_tests_think_it_is():
    fake = FakeCompute()
    code, reply = fake.route("GET", "/compute/v1/projects/other/zones/a/instances", {}, None)
    assert code == 404
