"""Pure parts of a cloud launch: lifetime and overheads, instance choice, the request, the plan."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from budgetft.cloud import request as req
from budgetft.cloud.choose import ChoiceError, RELATIVE_THROUGHPUT, choose, model_params
from budgetft.cloud.estimate import DELETE_LAG_SECONDS, RESERVE_SECONDS, SHUTDOWN_SECONDS, disk_gb_for, estimate, max_run_seconds, minimum_budget, money, overhead_seconds
from budgetft.cloud.failover import placements
from budgetft.cloud.plan import CloudOptions, LaunchError, make_plan, secret_name
from budgetft.cloud.side_costs import IPV4_USD_PER_HOUR, gcs_operations_usd_per_hour, side_costs, transfer_usd_per_gb
from budgetft.resume import ResumeError
from budgetft.money.catalog_store import default_catalog

CATALOG = default_catalog()


def v100(spot: bool = False):
    return CATALOG.instance("n1-standard-8", "v100", spot=spot)


def pick(**kw):
    args = dict(model_name="HuggingFaceTB/SmolLM2-135M-Instruct", tokens_per_example=256, full_finetune=False, budget=Decimal("1.00"))
    args.update(kw)
    return choose(CATALOG, **args)


# -- lifetime and overheads


def test_max_run_duration_is_what_the_budget_buys_rounded_down_less_shutdown_and_deletion_lag():
    price = v100().usd_per_hour
    seconds = max_run_seconds(Decimal("1.00"), price)
    # 3600 / 2.866847316 = 1255.7 s, rounded down; Compute Engine may delete up to 30 s late, billed.
    assert RESERVE_SECONDS == SHUTDOWN_SECONDS + DELETE_LAG_SECONDS == 90
    assert seconds == 1255 - RESERVE_SECONDS
    assert v100().cost(seconds + RESERVE_SECONDS) <= Decimal("1.00")  # never past the budget
    assert max_run_seconds(Decimal("1.00"), v100(spot=True).usd_per_hour) == 3128 - RESERVE_SECONDS


def test_estimate_charges_overheads_and_leaves_the_rest_to_the_run():
    est = estimate(Decimal("1.00"), v100())
    assert [line.category for line in est.overheads] == ["boot", "overhead", "upload", "teardown"]
    assert est.total_usd == Decimal("1.00") and est.run_usd > 0
    assert est.run_seconds == est.max_run_seconds - (overhead_seconds() - RESERVE_SECONDS)
    assert est.enough
    small = estimate(Decimal("0.25"), v100())
    assert not small.enough and f"at least ${minimum_budget(v100().usd_per_hour)}" in small.refusal(v100())
    assert minimum_budget(v100().usd_per_hour) == Decimal("0.55")  # 390 s of overheads + 300 s of run at $2.8668/h


def test_the_side_costs_enter_the_rate_rounded_up_and_their_one_offs_the_overheads():
    side = side_costs(v100(), model_params=135e6)
    assert [t.what for t in side.hourly] == ["external IPv4 address", "Cloud Storage operations"]
    assert side.hourly[0].usd == IPV4_USD_PER_HOUR == Decimal("0.005") and "network-pricing" in side.hourly[0].source and "2026" in side.hourly[0].source
    assert gcs_operations_usd_per_hour() == Decimal("0.0090")  # 840 Class A and 1,500 Class B operations an hour at most
    est = estimate(Decimal("1.00"), v100(), side)
    assert est.usd_per_hour == v100().usd_per_hour + Decimal("0.014")  # the VM's meter charges the whole rate
    results = est.overheads[-1]
    assert results.seconds == 0 and results.category == "upload" and results.usd == Decimal("0.023920")  # 0.104 GB at $0.23/GB
    # The one-off is paid out of the money the lifetime is made of: (1.00 - 0.02392) * 3600 / 2.880847316 = 1219.7 s.
    assert est.max_run_seconds == 1219 - RESERVE_SECONDS and est.total_usd == Decimal("1.00")
    private = side_costs(v100(spot=True), external_ip=False, bucket_location="europe-west4", model_params=135e6)
    assert private.hourly[0].what == "Cloud NAT gateway and its address" and private.hourly[0].usd == Decimal("0.0064")
    assert private.hourly[-1].what.startswith("uploads to the bucket in europe-west4")
    assert "NAT processing" in private.one_offs[0].what and private.one_offs[0].usd == Decimal("0.091800")  # 2.04 GB at $0.045
    assert transfer_usd_per_gb("us-central1", "us-central1") == 0 and transfer_usd_per_gb("US", "us-east1") == 0
    assert transfer_usd_per_gb("us-east1", "us-central1") == Decimal("0.02") and transfer_usd_per_gb("europe-west4", "us-central1") == Decimal("0.15")


def test_disk_grows_with_the_model_and_never_below_the_image_minimum():
    assert disk_gb_for(135e6) == 50
    assert disk_gb_for(7e9) == 130  # 35 + 3 x 28 GB + 5, rounded up to 10 GB


def test_money_formatting():
    assert money(Decimal("1.000000")) == "1.00" and money(Decimal("0.123400")) == "0.1234" and money(Decimal(2)) == "2.00"


# -- choosing the instance


def test_model_size_from_the_name():
    assert model_params("facebook/opt-1.3b") == (1.3e9, "read from its name")
    assert model_params("HuggingFaceTB/SmolLM2-135M-Instruct") == (135e6, "read from its name")
    assert "assumed" in model_params("gpt2")[1]


def test_without_a_gpu_the_most_training_for_the_budget_wins_and_says_why():
    choice = pick(spot=True)
    best = choice.best
    assert all(best.examples_for_budget >= c.examples_for_budget for c in choice.ranked)
    assert "the most training for this budget" in choice.reason() and "next:" in choice.reason()
    assert best.instance.spot


def test_an_expensive_gpu_loses_on_a_small_budget_even_if_fast():
    # An H100 hour costs ~$11: $1 does not even pay its boot, so it buys no training.
    ranked = {c.instance.gpu: c for c in pick(budget=Decimal("1.00")).ranked}
    assert "nvidia-h100-80gb" not in ranked or ranked["nvidia-h100-80gb"].examples_for_budget == 0


def test_gpu_given_picks_the_host_with_at_least_8_vcpus():
    choice = pick(gpu="v100")
    assert choice.instance.machine == "n1-standard-8" and choice.instance.gpu == "nvidia-tesla-v100"
    assert pick(gpu="v100", machine="n1-standard-4").instance.machine == "n1-standard-4"


def test_calibration_replaces_the_estimate(tmp_path):
    cal = tmp_path / "calibration.json"
    cal.write_text(json.dumps({"device": "Tesla T4", "methods": {"lora": {"examples_per_s": 40.0}}}))
    choice = pick(gpu="t4", calibration=cal)
    assert choice.basis == "calibrated on Tesla T4"
    assert choice.best.examples_per_s == pytest.approx(40.0)  # the T4 measured, the T4 chosen
    cal.write_text(json.dumps({"device": "CPU: EPYC x2", "methods": {"lora": {"examples_per_s": 1.0}}}))
    assert pick(calibration=cal).basis.startswith("estimated")  # a CPU rate says nothing of GPUs


def test_choice_errors_name_the_options():
    with pytest.raises(ChoiceError, match="valid:"):
        pick(gpu="k80")
    with pytest.raises(ChoiceError, match="unknown machine type"):
        pick(machine="n9-huge")
    with pytest.raises(ChoiceError, match="GB this model needs"):
        pick(model_name="meta-llama/Llama-2-7b", full_finetune=True, gpu="t4")


def test_every_catalogue_gpu_has_a_throughput():
    assert set(CATALOG.gpus()) <= set(RELATIVE_THROUGHPUT)


# -- the request


def spec(instance, **kw):
    args = dict(name="budgetft-x-s1", zone="us-central1-b", instance=instance, max_run_seconds=1195, startup_script="#!/bin/bash\n", service_account="sa@p.iam.gserviceaccount.com", labels=req.labels("x", 1, "job"))
    args.update(kw)
    return req.VmSpec(**args)


def test_request_for_an_n1_attaches_the_gpu_and_sets_the_end_of_life():
    body = req.instance_request(spec(v100(spot=True)))
    assert body["guestAccelerators"] == [{"acceleratorType": "zones/us-central1-b/acceleratorTypes/nvidia-tesla-v100", "acceleratorCount": 1}]
    s = body["scheduling"]
    assert s == {"onHostMaintenance": "TERMINATE", "automaticRestart": False, "provisioningModel": "SPOT", "maxRunDuration": {"seconds": "1195"}, "instanceTerminationAction": "DELETE"}
    assert body["disks"][0]["autoDelete"] is True and body["disks"][0]["initializeParams"]["diskSizeGb"] == "50"
    assert body["labels"] == {"budgetft-run": "x", "budgetft-session": "1", "budgetft-job": "job"}
    # Storage, and Compute so the VM can delete itself; its account's roles narrow both.
    assert body["serviceAccounts"][0]["scopes"] == [req.STORAGE_SCOPE, req.COMPUTE_SCOPE]
    assert body["networkInterfaces"] == [{"network": "global/networks/default", "accessConfigs": [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}]}]


def test_request_without_an_external_address_names_its_subnet_when_told():
    body = req.instance_request(spec(v100(), external_ip=False, network="vpc", subnet="ml"))
    assert body["networkInterfaces"] == [{"network": "global/networks/vpc", "subnetwork": "regions/us-central1/subnetworks/ml"}]


def test_request_for_a_g2_has_no_attached_gpu():
    body = req.instance_request(spec(CATALOG.instance("g2-standard-8")))
    assert "guestAccelerators" not in body and body["machineType"].endswith("/g2-standard-8")


def test_request_is_accepted_by_the_compute_client():
    from google.cloud import compute_v1

    inst = compute_v1.Instance.from_json(json.dumps(req.instance_request(spec(v100()))))
    assert inst.scheduling.max_run_duration.seconds == 1195 and inst.scheduling.instance_termination_action == "DELETE"


def test_names_and_labels_are_valid_for_compute_engine():
    name = req.instance_name("BoolQ_SmolLM2 run/2025.06.01-" + "x" * 80, 12)
    assert len(name) <= 63 and name.endswith("-s12") and name.startswith("budgetft-")
    assert all(c.islower() or c.isdigit() or c == "-" for c in name)
    assert req.label_value("Run.ID/UPPER") == "run-id-upper"
    assert req.zones_for("us-central1", None, ["us-central1-f", "us-central1-a", "us-central1-z"]) == ["us-central1-a", "us-central1-f", "us-central1-z"]
    assert req.zones_for("us-central1", "us-central1-c") == ["us-central1-c"]


# -- the plan


def plan(tmp_path, **kw):
    args = dict(gpu="v100", machine=None, zone=None, region=None, spot=False, project="p", bucket="gs://b")
    args.update(kw)
    job, budget = args.pop("job", None), args.pop("budget", Decimal("1.00"))
    out, resume = args.pop("out", tmp_path / "r"), args.pop("resume", None)
    return make_plan(job, [], budget, CloudOptions(**args), out=out, resume=resume)


def test_plan_ships_local_data_files_and_points_the_job_at_them(tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text('{"passage": "p", "question": "q", "answer": true}\n')
    job = tmp_path / "job.yaml"
    from budgetft.spec import dump_job, load_job

    job.write_text(dump_job(load_job(None, [f"data.name={data}"])))
    p = make_plan(str(job), [], Decimal("1.00"), CloudOptions(gpu="v100", project="p", bucket="gs://b"), out=tmp_path / "r")
    assert p.inputs == [(data.resolve(), "1-rows.jsonl")]
    assert "/var/lib/budgetft/run/inputs/1-rows.jsonl" in p.vm_job_yaml


def test_plan_refuses_a_local_model_directory(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    with pytest.raises(LaunchError, match="local directory"):
        make_plan(None, [f"model.name={model}"], Decimal("1.00"), CloudOptions(gpu="v100", project="p", bucket="gs://b"), out=tmp_path / "r")


def test_plan_refuses_a_directory_that_holds_a_run_and_a_bad_zone(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.json").write_text("{}")
    with pytest.raises(ResumeError, match="--resume"):  # decided as for a local run (budgetft.resume)
        plan(tmp_path)
    with pytest.raises(LaunchError, match="not in --region"):
        plan(tmp_path, out=tmp_path / "r2", zone="us-east1-b", region="us-central1")


def test_plan_defaults_bucket_from_project_and_region_from_zone(tmp_path):
    p = plan(tmp_path, bucket=None, zone="us-east1-c")
    assert p.bucket_url == "gs://p-budgetft" and p.region == "us-east1" and p.zones == ["us-east1-c"]
    assert p.run_url == "gs://p-budgetft/budgetft/r"
    assert [pl.region for pl in p.order] == ["us-east1"]  # a zone given: nowhere else


def test_failover_order_is_catalogue_price_order_and_on_demand_comes_after_every_spot_placement(tmp_path):
    p = plan(tmp_path, spot=True, fallback_on_demand=True)
    order = [(pl.region, pl.spot) for pl in p.order]
    prices = [pl.instance.usd_per_hour for pl in p.order if pl.spot]
    assert prices == sorted(prices) and order[0] == ("us-central1", True)  # the plan's region first among equal prices
    spots = [o for o in order if o[1]]
    assert order[: len(spots)] == spots and all(not s for _, s in order[len(spots):]) and len(spots) == len(order) - len(spots)
    assert {r for r, _ in order} == set(CATALOG.regions()) - {"local"}  # every region that prices an n1-standard-8 + V100
    assert [pl.region for pl in plan(tmp_path, out=tmp_path / "r2", region="us-west1").order] == ["us-west1"]  # --region: that one only
    with pytest.raises(LaunchError, match="add --spot"):
        plan(tmp_path, out=tmp_path / "r3", fallback_on_demand=True)


def test_placements_follow_whatever_regions_the_catalogue_prices():
    from budgetft.money.catalog import Catalog

    rows = "\n".join([
        "kind,name,region,provisioning,usd_per_hour,usd_per_gb_month,gpu,gpu_count,vcpus,memory_gb,attaches_to",
        "machine,n1-standard-8,r-cheap,spot,0.10,,,,8,30,",
        "machine,n1-standard-8,r-dear,spot,0.20,,,,8,30,",
        "machine,n1-standard-8,r-none,spot,0.05,,,,8,30,",
        "gpu,nvidia-tesla-t4,r-cheap,spot,0.10,,,,,,n1",
        "gpu,nvidia-tesla-t4,r-dear,spot,0.10,,,,,,n1",
        "disk,pd-balanced,r-cheap,any,,0.10,,,,,",
        "disk,pd-balanced,r-dear,any,,0.10,,,,,",
        "disk,pd-balanced,r-none,any,,0.10,,,,,",
    ])
    catalog = Catalog.from_text(rows)
    inst = catalog.instance("n1-standard-8", "t4", region="r-dear", spot=True)
    order = placements(catalog, inst, region="r-dear")
    assert [p.region for p in order] == ["r-cheap", "r-dear"]  # r-none has no T4: not a place to try


def test_a_secret_is_named_in_full():
    assert secret_name("hf-token", "p") == "projects/p/secrets/hf-token"
    assert secret_name("projects/q/secrets/t/versions/3", "p") == "projects/q/secrets/t"
    assert secret_name(None, "p") is None
