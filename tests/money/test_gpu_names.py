"""GPU names as data (budgetft/money/gpus.csv, gpu_names.csv): every name NVML reports on a current
data-centre GPU selects a priced catalogue entry, and a GPU run on an 8-GPU-only machine type is
priced per GPU."""

from __future__ import annotations

from decimal import Decimal

import pytest

from budgetft.money.errors import UnknownName
from budgetft.money.catalog_store import default_catalog
from budgetft.money.gpu_names import GPU_ALIASES, GPU_LABELS, NVML_NAMES, gpu_for_nvml_name, nvml_match, resolve_gpu
from budgetft.telemetry.hardware import GpuInfo, Hardware, local_price

# (name as NVML reports it, catalogue GPU, exact?) for the GPUs the issue names.
DATA_CENTRE = [
    ("NVIDIA H100 80GB HBM3", "nvidia-h100-80gb", True),
    ("NVIDIA H100 PCIe", "nvidia-h100-80gb", False),
    ("NVIDIA H100 NVL", "nvidia-h100-80gb", False),
    ("NVIDIA H200", "nvidia-h200-141gb", True),
    ("NVIDIA H200 NVL", "nvidia-h200-141gb", False),
    ("NVIDIA B200", "nvidia-b200", True),
    ("NVIDIA A100-SXM4-40GB", "nvidia-tesla-a100", True),
    ("A100-SXM4-40GB", "nvidia-tesla-a100", True),  # drivers before R470: no "NVIDIA " prefix
    ("NVIDIA A100-PCIE-40GB", "nvidia-tesla-a100", False),
    ("NVIDIA A100-SXM4-80GB", "nvidia-a100-80gb", True),
    ("NVIDIA A100 80GB PCIe", "nvidia-a100-80gb", False),
    ("NVIDIA L4", "nvidia-l4", True),
    ("Tesla T4", "nvidia-tesla-t4", True),
    ("Tesla V100-SXM2-16GB", "nvidia-tesla-v100", True),
    ("Tesla V100-SXM2-32GB", "nvidia-tesla-v100", False),
    ("Tesla V100-PCIE-16GB", "nvidia-tesla-v100", False),
]


@pytest.mark.parametrize("nvml, gpu, exact", DATA_CENTRE)
def test_data_centre_gpus_map_to_priced_entries(nvml, gpu, exact):
    found = nvml_match(nvml)
    assert (found.gpu, found.is_exact) == (gpu, exact)
    assert gpu in default_catalog().gpus()
    if not exact:
        assert "nearest catalogue entry" in found.describe() and found.note


def test_names_are_compared_loosely_and_bytes_are_decoded():
    assert gpu_for_nvml_name(b"NVIDIA  h200 ") == "nvidia-h200-141gb"
    assert gpu_for_nvml_name("nvidia a100-sxm4-80gb") == "nvidia-a100-80gb"


def test_unlisted_variants_match_by_whole_model_word():
    # Not in the table: matched by the token rows, 80 GB before the plain A100.
    assert nvml_match("NVIDIA A100-SXM4-80GB-HBM2e").gpu == "nvidia-a100-80gb"
    assert nvml_match("NVIDIA A100-SXM4-40GB-X").gpu == "nvidia-tesla-a100"
    assert nvml_match("NVIDIA H100 80GB HBM3e").match == "token"
    # "L4" is a whole word in "NVIDIA L4" only: an L40S or a GH200 must not borrow a price.
    for name in ("NVIDIA L40S", "NVIDIA GH200 480GB", "NVIDIA GeForce RTX 4090", "NVIDIA RTX A6000"):
        with pytest.raises(UnknownName, match="Tesla T4"):
            nvml_match(name)


def test_aliases_labels_and_catalogue_agree():
    catalog = default_catalog()
    assert set(GPU_LABELS) == set(catalog.gpus())  # every GPU named is priced, every priced GPU named
    assert set(NVML_NAMES.values()) == set(catalog.gpus())
    assert resolve_gpu("h200") == "nvidia-h200-141gb" and resolve_gpu("B200") == "nvidia-b200"
    assert resolve_gpu("NVIDIA H200") == "nvidia-h200-141gb"  # an NVML name works as --gpu too
    assert all(target in GPU_LABELS for target in GPU_ALIASES.values())
    assert GPU_LABELS["nvidia-h200-141gb"] == "H200 141GB"


def test_h200_and_b200_machines_are_priced_with_their_source():
    catalog = default_catalog()
    for machine, gpu in (("a3-ultragpu-8g", "nvidia-h200-141gb"), ("a4-highgpu-8g", "nvidia-b200")):
        inst = catalog.instance(machine)
        assert (inst.gpu, inst.gpu_count) == (gpu, 8)
        spot = catalog.instance(machine, spot=True)
        assert spot.usd_per_hour < inst.usd_per_hour
    meta = catalog.meta
    assert "a3-ultragpu-8g" in meta["hopper"] and "a4-highgpu-8g" in meta["blackwell"] and "ESTIMATE" in meta["blackwell"]


def _one_gpu(name: str, cpus: int = 16) -> Hardware:
    return Hardware((GpuInfo(0, name, 143_000.0, (9, 0)),), "CPU", cpus, 1000.0, "nvml")


def test_one_h200_is_priced_as_an_eighth_of_its_machine():
    catalog = default_catalog()
    choice = local_price(catalog, None, _one_gpu("NVIDIA H200"))
    inst = catalog.instance("a3-ultragpu-8g")
    # 1/8 of the machine plus the whole 50 GB boot disk, rounded up to a billionth of a dollar.
    expected = inst.machine_usd_per_hour / 8 + inst.disk_usd_per_hour
    assert Decimal(0) <= choice.usd_per_hour - expected < Decimal("0.000000001")
    assert choice.instance == "1/8 of a3-ultragpu-8g" and "priced per GPU: 1 of its 8 GPUs" in choice.reason
    two = local_price(catalog, None, Hardware((GpuInfo(0, "NVIDIA H200", 1.0), GpuInfo(1, "NVIDIA H200", 1.0)), "CPU", 32, 1.0, "nvml"))
    assert two.instance == "2/8 of a3-ultragpu-8g" and two.usd_per_hour > choice.usd_per_hour


def test_a_variant_is_priced_as_its_nearest_entry_and_says_so():
    choice = local_price(default_catalog(), None, _one_gpu("NVIDIA H100 PCIe"))
    assert choice.instance == "a3-highgpu-1g"
    assert "nearest catalogue entry, not this exact card" in choice.reason
    exact = local_price(default_catalog(), None, _one_gpu("NVIDIA H100 80GB HBM3"))
    assert "nearest" not in exact.reason and exact.usd_per_hour == choice.usd_per_hour
