"""The price catalogue, Google's billing rules, the `prices` command and the offline fetcher."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from datetime import date
from decimal import ROUND_CEILING, Decimal
from importlib import resources
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from budgetft.cli.prices import prices
from budgetft.money.gpu_names import NVML_NAMES, gpu_for_nvml_name, resolve_gpu
from budgetft.money.catalog import Catalog
from budgetft.money.errors import CatalogError, UnknownName
from budgetft.money.catalog_store import default_catalog
from budgetft.money.usd import billed_seconds, cost, minutes_per_dollar

ROOT = Path(__file__).resolve().parents[2]  # the repository


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return default_catalog()


# ----------------------------------------------------------------------------- data


def test_header_says_version_and_when_prices_were_taken(catalog):
    assert catalog.version != "unknown"
    assert date.fromisoformat(catalog.fetched).year >= 2025
    assert "Google Cloud" in catalog.meta["source"]


def test_every_required_price_is_present_in_us_central1(catalog):
    for machine in ("n1-standard-4", "n1-standard-8", "n1-standard-16", "g2-standard-4", "g2-standard-8",
                    "a2-highgpu-1g", "a2-ultragpu-1g", "a3-highgpu-1g"):
        for spot in (False, True):
            assert catalog.find("machine", machine, "us-central1", spot).usd_per_hour > 0
    for gpu in ("nvidia-tesla-t4", "nvidia-tesla-p100", "nvidia-tesla-v100"):
        assert catalog.find("gpu", gpu, "us-central1").attaches_to == ("n1",)
    for disk in ("pd-standard", "pd-balanced", "pd-ssd"):
        assert catalog.find("disk", disk, "us-central1").usd_per_gb_month > 0
    assert catalog.find("local", "cpu", "local").usd_per_hour == 0


def test_v100_on_n1_standard_8_matches_the_study(catalog):
    # "PEFT on a budget" paid about $2.86/h for n1-standard-8 + V100 on-demand: $1 ~ 21 minutes.
    inst = catalog.instance("n1-standard-8", "v100")
    assert abs(inst.usd_per_hour - Decimal("2.86")) < Decimal("0.03")
    assert Decimal(20) < inst.minutes_per_dollar < Decimal(22)
    assert inst.label == "n1-standard-8 + nvidia-tesla-v100"


def test_instance_price_is_machine_plus_gpus_plus_disk(catalog):
    machine = catalog.find("machine", "n1-standard-8").usd_per_hour
    t4 = catalog.find("gpu", "nvidia-tesla-t4").usd_per_hour
    per_gb_month = catalog.find("disk", "pd-ssd").usd_per_gb_month
    inst = catalog.instance("n1-standard-8", "t4", 2, disk_type="pd-ssd", disk_gb=100)
    # $/GB-month -> $/h with Google's 730-hour month.
    expected = machine + 2 * t4 + per_gb_month * 100 / Decimal(730)
    assert inst.usd_per_hour >= expected
    assert inst.usd_per_hour - expected < Decimal("0.000000001")
    assert inst.label == "n1-standard-8 + 2x nvidia-tesla-t4"
    assert catalog.instance("n1-standard-8", "t4", disk_gb=0).usd_per_hour == machine + t4


def test_accelerator_machines_include_their_gpu(catalog):
    g2 = catalog.instance("g2-standard-8")
    assert (g2.gpu, g2.gpu_count, g2.gpus_usd_per_hour) == ("nvidia-l4", 1, 0)
    assert catalog.instance("g2-standard-8", "L4").usd_per_hour == g2.usd_per_hour
    assert catalog.instance("a3-highgpu-1g").gpu == "nvidia-h100-80gb"
    with pytest.raises(CatalogError, match="comes with 1x nvidia-l4"):
        catalog.instance("g2-standard-8", "v100")


def test_impossible_n1_shapes_are_refused_and_not_listed(catalog):
    # One V100 allows at most 12 vCPUs; one T4 allows 48.
    with pytest.raises(CatalogError, match="at most 12"):
        catalog.instance("n1-standard-16", "v100")
    assert catalog.instance("n1-standard-16", "v100", 2).gpu_count == 2
    assert catalog.instance("n1-standard-16", "t4").gpu == "nvidia-tesla-t4"
    labels = {i.label for i in catalog.instances(regions=["us-central1"])}
    assert "n1-standard-16 + nvidia-tesla-v100" not in labels
    assert {"n1-standard-16", "n1-standard-16 + nvidia-tesla-t4", "g2-standard-4", "a3-highgpu-1g"} <= labels


def test_spot_is_cheaper_than_on_demand_everywhere(catalog):
    for row in catalog.rows:
        if row.provisioning == "spot":
            on_demand = catalog.find(row.kind, row.name, row.region, spot=False)
            assert row.usd_per_hour < on_demand.usd_per_hour, row


def test_spot_l4_and_t4_buy_hours_not_minutes(catalog):
    v100 = catalog.instance("n1-standard-8", "v100").minutes_per_dollar
    l4 = catalog.instance("g2-standard-8", spot=True).minutes_per_dollar / 60
    t4 = catalog.instance("n1-standard-8", "t4", spot=True).minutes_per_dollar / 60
    # Design notes: ~2.5 h (L4) and ~3.6 h (T4) per dollar. Spot prices float (a refreshed
    # catalogue may be cheaper), so bound them from below tightly and from above loosely.
    assert Decimal("2.2") < l4 < Decimal("5")
    assert Decimal("3.0") < t4 < Decimal("7")
    assert l4 * 60 > 8 * v100 and t4 * 60 > 9 * v100


def test_instances_filters_and_sorts(catalog):
    spot_v100 = catalog.instances(regions=["us-central1"], spot=True, gpus=["V100"])
    assert spot_v100 and all(i.spot and i.gpu == "nvidia-tesla-v100" for i in spot_v100)
    everything = catalog.instances()
    assert [i.usd_per_hour for i in everything] == sorted(i.usd_per_hour for i in everything)
    assert {i.region for i in everything} == {"us-central1", "us-east1", "us-west1", "europe-west4"}


# ----------------------------------------------------------------------------- billing


@pytest.mark.parametrize(
    "seconds, billed",
    [(0, 60), (1, 60), (59.2, 60), (60, 60), (60.01, 61), (61, 61), (Decimal("3599.5"), 3600)],
)
def test_billed_per_second_with_a_one_minute_minimum(seconds, billed):
    assert billed_seconds(seconds) == billed


def test_billing_minimum_can_be_waived_for_time_after_the_first_minute():
    assert billed_seconds(0.2, minimum=0) == 1
    assert billed_seconds(0, minimum=0) == 0
    with pytest.raises(ValueError):
        billed_seconds(-1)


def test_cost_rounds_up_to_a_millionth_of_a_dollar():
    assert cost("2.86", 1) == Decimal("0.047667")  # 60 s x 2.86/3600 = 0.0476666...
    assert cost("3.6", 3600) == Decimal("3.600000")
    assert cost("0.000001", 1) == Decimal("0.000001")  # never rounded down to zero
    assert cost(0.1, 36000) == Decimal("1.000000")  # floats enter through their repr
    assert cost(0, 100) == 0
    with pytest.raises(ValueError):
        cost("-1", 10)


def test_minutes_per_dollar():
    assert minutes_per_dollar(Decimal("2.86")) == Decimal("20.97")  # 20.979..., rounded down
    assert minutes_per_dollar(Decimal(0)) is None


def test_local_runs_cost_nothing_unless_priced(catalog):
    assert catalog.local().usd_per_hour == 0
    assert catalog.local().cost(3600) == 0
    assert catalog.local("0.50").cost(7200) == Decimal("1.000000")


# ----------------------------------------------------------------------------- names


def test_unknown_names_list_the_valid_ones(catalog):
    with pytest.raises(UnknownName) as err:
        catalog.find("machine", "n9-standard-8")
    assert "n1-standard-8" in str(err.value) and "a3-highgpu-1g" in str(err.value)
    with pytest.raises(UnknownName, match="us-central1"):
        catalog.find("machine", "n1-standard-8", "mars-central1")
    with pytest.raises(UnknownName, match="v100") as err:
        resolve_gpu("x100")
    assert "a100-80gb" in str(err.value)
    with pytest.raises(UnknownName, match="pd-balanced"):
        catalog.instance("n1-standard-8", disk_type="floppy")
    with pytest.raises(CatalogError, match="regions that have it: us-central1"):
        catalog.find("machine", "a3-highgpu-1g", "us-east1")


@pytest.mark.parametrize(
    "nvml, gpu",
    [
        ("Tesla V100-SXM2-16GB", "nvidia-tesla-v100"),
        ("NVIDIA L4", "nvidia-l4"),
        ("NVIDIA A100-SXM4-80GB", "nvidia-a100-80gb"),
        ("NVIDIA A100-SXM4-40GB", "nvidia-tesla-a100"),
        ("NVIDIA H100 80GB HBM3", "nvidia-h100-80gb"),
        ("Tesla T4", "nvidia-tesla-t4"),
        ("Tesla P100-PCIE-16GB", "nvidia-tesla-p100"),
        (b"Tesla T4", "nvidia-tesla-t4"),  # older pynvml returns bytes
        ("Tesla V100-PCIE-16GB", "nvidia-tesla-v100"),  # a variant not in the table
    ],
)
def test_nvml_names_map_to_catalogue_gpus(catalog, nvml, gpu):
    assert gpu_for_nvml_name(nvml) == gpu
    assert gpu in catalog.gpus()


def test_unknown_nvml_name_is_an_error_not_a_guess():
    for name in ("NVIDIA L40S", "NVIDIA GeForce RTX 4090"):
        with pytest.raises(UnknownName, match="Tesla T4"):
            gpu_for_nvml_name(name)


def test_every_nvml_and_alias_target_is_priced(catalog):
    assert set(NVML_NAMES.values()) == set(catalog.gpus())
    for alias in ("t4", "P100", "v100", "l4", "a100", "a100-80gb", "h100", "nvidia-tesla-v100"):
        assert resolve_gpu(alias) in catalog.gpus()


def test_bad_catalogue_rows_are_reported():
    header = "kind,name,region,provisioning,usd_per_hour,usd_per_gb_month,gpu,gpu_count,vcpus,memory_gb,attaches_to\n"
    with pytest.raises(CatalogError, match="needs a usd_per_hour"):
        Catalog.from_text(header + "machine,x-1,r,on-demand,,,,0,1,1,\n")
    with pytest.raises(CatalogError, match="valid: disk, gpu, local, machine"):
        Catalog.from_text(header + "tpu,x-1,r,on-demand,1,,,0,1,1,\n")


# ----------------------------------------------------------------------------- CLI


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(prices)

    @app.command()
    def other() -> None:  # a second command keeps `prices` a named subcommand, as in budgetft
        pass

    return app


def test_prices_command_lists_instances():
    result = CliRunner().invoke(_app(), ["prices"])
    assert result.exit_code == 0, result.output
    assert "n1-standard-8 + nvidia-tesla-v100" in result.output
    assert "2.8668" in result.output  # $/h with the 50 GB pd-balanced boot disk
    assert "20.9" in result.output  # minutes per dollar
    assert "europe-west4" not in result.output  # default region only


def test_prices_command_filters_by_gpu_and_spot():
    result = CliRunner().invoke(_app(), ["prices", "--gpu", "L4", "--gpu", "t4", "--spot", "--region", "all"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "spot" in line or "on-demand" in line]
    assert lines and all("on-demand" not in line for line in lines)
    assert any("g2-standard-8" in line for line in lines) and any("nvidia-tesla-t4" in line for line in lines)
    assert not any("v100" in line.lower() for line in lines)
    assert "europe-west4" in result.output


@pytest.mark.parametrize(
    "args, valid",
    [(["--gpu", "x100"], "v100"), (["--region", "mars1"], "us-central1"), (["--disk-type", "floppy"], "pd-ssd")],
)
def test_prices_command_rejects_unknown_values(args, valid):
    result = CliRunner().invoke(_app(), ["prices", *args])
    assert result.exit_code == 2
    assert valid in result.output


def test_money_and_prices_import_without_heavy_libraries():
    code = (
        "import sys, budgetft.money.catalog, budgetft.money.ledger, budgetft.money.meter, budgetft.cli.prices;"
        "heavy = [m for m in ('torch', 'transformers', 'ray', 'google.cloud', 'pynvml') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT)})


# ----------------------------------------------------------------------------- fetcher


def _load_fetcher():
    spec = importlib.util.spec_from_file_location("fetch_prices", ROOT / "scripts" / "fetch_prices.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sku(description: str, usage: str, units: int, nanos: int, regions=("us-central1", "us-east1"), unit="h"):
    return {
        "skuId": description[:8],
        "description": description,
        "category": {"serviceDisplayName": "Compute Engine", "resourceFamily": "Compute", "usageType": usage},
        "serviceRegions": list(regions),
        "pricingInfo": [
            {
                "pricingExpression": {
                    "usageUnit": unit,
                    "tieredRates": [{"startUsageAmount": 0, "unitPrice": {"currencyCode": "USD", "units": str(units), "nanos": nanos}}],
                }
            }
        ],
    }


SAMPLE_SKUS = [
    _sku("N1 Predefined Instance Core running in Americas", "OnDemand", 0, 31611000),
    _sku("N1 Predefined Instance Ram running in Americas", "OnDemand", 0, 4237000, unit="GiBy.h"),
    _sku("Spot Preemptible N1 Predefined Instance Core running in Americas", "Preemptible", 0, 7000000),
    _sku("Spot Preemptible N1 Predefined Instance Ram running in Americas", "Preemptible", 0, 940000, unit="GiBy.h"),
    _sku("G2 Instance Core running in Americas", "OnDemand", 0, 24856000),
    _sku("G2 Instance Ram running in Americas", "OnDemand", 0, 2912000, unit="GiBy.h"),
    _sku("Nvidia L4 GPU running in Americas", "OnDemand", 0, 560000000),
    _sku("Nvidia Tesla T4 GPU running in Americas", "OnDemand", 0, 350000000),
    _sku("Nvidia Tesla T4 GPU attached to Spot Preemptible VMs running in Americas", "Preemptible", 0, 140000000),
    _sku("Nvidia Tesla V100 GPU running in Americas", "OnDemand", 2, 480000000, regions=("us-central1",)),
    _sku("Balanced PD Capacity", "OnDemand", 0, 100000000, unit="GiBy.mo"),
    _sku("Storage PD Capacity", "OnDemand", 0, 40000000, unit="GiBy.mo"),
    # Distractors the parser must ignore:
    _sku("Commitment v1: N1 Predefined Instance Core running in Americas", "Commit1Yr", 0, 19915000),
    _sku("N1 Custom Instance Core running in Americas", "OnDemand", 0, 33174000),
    _sku("Regional Balanced PD Capacity", "OnDemand", 0, 200000000, unit="GiBy.mo"),
    _sku("N1 Predefined Instance Core running in Sao Paulo", "OnDemand", 9, 0, regions=("southamerica-east1",)),
]


def test_fetcher_parses_skus_into_catalogue_rows():
    fetch = _load_fetcher()
    rows = fetch.parse_skus(SAMPLE_SKUS, ("us-central1", "us-east1"))
    by_key = {(r["kind"], r["name"], r["region"], r["provisioning"]): r for r in rows}
    # 8 vCPU x 0.031611 + 30 GB x 0.004237; commitment and custom SKUs ignored.
    assert by_key[("machine", "n1-standard-8", "us-central1", "on-demand")]["usd_per_hour"] == "0.379998"
    assert by_key[("machine", "n1-standard-8", "us-central1", "spot")]["usd_per_hour"] == "0.084200"
    # g2-standard-4 = 4 x core + 16 GB x RAM + one L4.
    g2 = by_key[("machine", "g2-standard-4", "us-east1", "on-demand")]
    assert (g2["usd_per_hour"], g2["gpu"], g2["gpu_count"]) == ("0.706016", "nvidia-l4", "1")
    assert ("machine", "g2-standard-4", "us-central1", "spot") not in by_key  # no spot G2 SKUs given
    assert ("machine", "a2-highgpu-1g", "us-central1", "on-demand") not in by_key  # no A2 SKUs: no guess
    assert by_key[("gpu", "nvidia-tesla-v100", "us-central1", "on-demand")]["usd_per_hour"] == "2.480000"
    assert ("gpu", "nvidia-tesla-v100", "us-east1", "on-demand") not in by_key  # not in its serviceRegions
    assert by_key[("gpu", "nvidia-tesla-t4", "us-east1", "spot")]["attaches_to"] == "n1"
    assert by_key[("disk", "pd-balanced", "us-central1", "any")]["usd_per_gb_month"] == "0.100000"  # not the regional
    assert not any(r["region"] == "southamerica-east1" for r in rows)


def test_fetcher_output_loads_as_a_catalogue():
    fetch = _load_fetcher()
    text = fetch.render_csv(fetch.parse_skus(SAMPLE_SKUS, ("us-central1",)), date(2025, 7, 1), "test-1")
    catalog = Catalog.from_text(text)
    assert (catalog.version, catalog.fetched) == ("test-1", "2025-07-01")
    inst = catalog.instance("n1-standard-8", "v100", disk_gb=0)
    assert inst.usd_per_hour == Decimal("0.379998") + Decimal("2.48")
    assert catalog.instance("n1-standard-8", "t4", spot=True, disk_gb=0).usd_per_hour == Decimal("0.0842") + Decimal("0.14")


def test_fetcher_main_writes_a_csv_from_a_saved_dump_and_refuses_an_empty_one(tmp_path):
    fetch = _load_fetcher()
    dump, out = tmp_path / "skus.json", tmp_path / "catalog.csv"
    dump.write_text(json.dumps({"skus": SAMPLE_SKUS}))
    assert fetch.main(["--skus-json", str(dump), "--out", str(out), "--regions", "us-central1"]) == 0
    assert Catalog.load(out).find("machine", "g2-standard-4").usd_per_hour == Decimal("0.706016")
    dump.write_text(json.dumps({"skus": SAMPLE_SKUS[-4:]}))  # only distractors: nothing to price
    out.unlink()
    assert fetch.main(["--skus-json", str(dump), "--out", str(out)]) == 1
    assert not out.exists()


# Where Google sells each multi-GPU shape, within the catalogue's regions (its header names the source).
MULTI_GPU = {
    "a2-highgpu-2g": ("us-central1", "us-east1", "us-west1", "europe-west4"), "a2-highgpu-4g": ("us-central1", "us-east1", "us-west1", "europe-west4"),
    "a2-highgpu-8g": ("us-central1", "us-east1", "us-west1", "europe-west4"), "a2-megagpu-16g": ("us-central1", "us-east1", "us-west1", "europe-west4"),
    "a2-ultragpu-2g": ("us-central1", "europe-west4"), "a2-ultragpu-4g": ("us-central1", "europe-west4"), "a2-ultragpu-8g": ("us-central1", "europe-west4"),
    "g2-standard-24": ("us-central1", "us-east1", "us-west1", "europe-west4"), "g2-standard-48": ("us-central1", "us-east1", "us-west1", "europe-west4"),
    "g2-standard-96": ("us-central1", "us-east1", "us-west1", "europe-west4"), "a3-highgpu-8g": ("us-central1", "us-west1", "europe-west4"),
}


def test_multi_gpu_shapes_are_priced_where_they_are_sold_each_row_with_its_source_and_date(catalog):
    text = resources.files("budgetft.money").joinpath("catalog.csv").read_text("utf-8")
    rows = list(csv.DictReader(line for line in text.splitlines() if line.strip() and not line.startswith("#")))
    assert all(r["source"] and date.fromisoformat(r["as_of"]) for r in rows)
    for machine, regions in MULTI_GPU.items():
        assert sorted({r["region"] for r in rows if r["name"] == machine}) == sorted(regions)
        for region in regions:
            for spot in (False, True):
                row = catalog.find("machine", machine, region, spot)
                assert row.gpu_count > 1 and row.usd_per_hour > 0
    estimates = [r for r in rows if r["region"] == "europe-west4" and r["name"].startswith(("a2-", "a3-", "g2-"))]
    assert estimates and all(r["source"].startswith("ESTIMATE") for r in estimates)


def test_a_multi_gpu_shape_is_its_one_gpu_rows_per_sku_rates_times_its_size(catalog):
    def price(machine, spot=False):
        return catalog.find("machine", machine, "us-central1", spot).usd_per_hour

    # A2: vCPU x 0.031611 + GB x 0.004237 + A100, the one-GPU row's own decomposition.
    a100 = price("a2-highgpu-1g") - 12 * Decimal("0.031611") - 85 * Decimal("0.004237")
    assert price("a2-highgpu-8g") == 96 * Decimal("0.031611") + 680 * Decimal("0.004237") + 8 * a100
    assert price("a2-highgpu-8g", spot=True) == (price("a2-highgpu-8g") * Decimal("0.4")).quantize(Decimal("0.000001"), rounding=ROUND_CEILING)
    # G2: 4 GB a vCPU in every shape, so two one-GPU rows give both rates.
    unit = (price("g2-standard-8") - price("g2-standard-4")) / 4
    l4 = price("g2-standard-4") - 4 * unit
    assert price("g2-standard-48") == 48 * unit + 4 * l4
    assert price("a3-highgpu-8g") == 8 * price("a3-highgpu-1g") and price("a3-highgpu-8g", spot=True) == 8 * price("a3-highgpu-1g", spot=True)


def test_the_fetcher_prices_multi_gpu_shapes_from_the_same_skus():
    fetch = _load_fetcher()
    rows = fetch.parse_skus(SAMPLE_SKUS, ("us-central1",))
    g2 = {r["name"]: r for r in rows if r["name"].startswith("g2-")}
    # 48 x core + 192 GB x RAM + 4 L4s, with its source and the fetch date once rendered.
    assert (g2["g2-standard-48"]["usd_per_hour"], g2["g2-standard-48"]["gpu_count"]) == ("3.992192", "4")
    text = fetch.render_csv(rows, date(2026, 12, 1))
    loaded = list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))
    assert all(r["as_of"] == "2026-12-01" and "Billing Catalog API" in r["source"] for r in loaded)
