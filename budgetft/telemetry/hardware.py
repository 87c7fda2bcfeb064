"""What this machine is (GPUs, CPU) and what an hour of it costs when nobody says.

The GPU that NVML reports selects the price: a run on an L4 is priced as the Google Cloud
instance that carries an L4, because that is what the same run costs when rented. The choice
and the reason for it are returned together, so the report can say which price was used and why.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from decimal import Decimal

import psutil

from budgetft.money.catalog import DEFAULT_REGION, Catalog, Instance
from budgetft.money.errors import CatalogError, UnknownName
from budgetft.money.gpu_names import nvml_match
from budgetft.money.usd import RATE_RESOLUTION, round_up, usd

# Imported inside functions: torch: importing this module must stay cheap (start-up time); pynvml:
# the [gpu] extra, installed only where needed.

MIB = 2**20  # NVML and psutil report bytes; budgetft reports MiB (written "mb" in field names)


class HardwareError(ValueError):
    """The hardware gives no price (an unknown or mixed GPU); the message says how to give one."""


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str  # as NVML (or torch) reports it, e.g. "NVIDIA L4"
    mem_total_mb: float
    capability: tuple[int, int] | None = None  # CUDA compute capability, e.g. (8, 9) for an L4


@dataclass(frozen=True)
class Hardware:
    gpus: tuple[GpuInfo, ...] = ()
    cpu_model: str = ""
    cpu_count: int = 1  # logical CPUs the OS shows; on a cloud VM, its vCPUs
    mem_total_mb: float = 0.0
    source: str = "none"  # where the GPU list came from: nvml | torch | none
    driver: str | None = None
    note: str = ""  # why no GPU was found, when none was

    @property
    def has_gpu(self) -> bool:
        return bool(self.gpus)

    def to_dict(self) -> dict:
        return {
            "gpus": [
                {"index": g.index, "name": g.name, "mem_total_mb": round(g.mem_total_mb, 1),
                 "capability": list(g.capability) if g.capability else None}
                for g in self.gpus
            ],
            "cpu_model": self.cpu_model,
            "cpu_count": self.cpu_count,
            "mem_total_mb": round(self.mem_total_mb, 1),
            "source": self.source,
            "driver": self.driver,
            "note": self.note,
        }


@dataclass(frozen=True)
class PriceChoice:
    usd_per_hour: Decimal
    source: str  # --price-per-hour | catalogue | local
    reason: str  # a sentence for the report: which price and why
    instance: str | None = None  # the catalogue instance it was priced as, e.g. "g2-standard-8"


# ----------------------------------------------------------------------------- detection


def cpu_model() -> str:
    """The CPU's marketing name ("AMD EPYC 7B13"); platform.processor() is empty on most Linux."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def as_text(value) -> str:
    """NVML strings: bytes from older bindings, str from newer ones."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _nvml_gpus(nvml) -> tuple[list[GpuInfo], str | None]:
    """GPUs through NVML; raises whatever NVML raises (the caller decides what that means)."""
    nvml.nvmlInit()
    try:
        try:
            driver = as_text(nvml.nvmlSystemGetDriverVersion())
        except Exception:  # optional: a stand-in or an old binding may lack it
            driver = None
        gpus = []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            try:
                capability = tuple(int(x) for x in nvml.nvmlDeviceGetCudaComputeCapability(handle))
            except Exception:
                capability = None
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(GpuInfo(i, as_text(nvml.nvmlDeviceGetName(handle)), mem.total / MIB, capability))
        return gpus, driver
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass


def _torch_gpus() -> list[GpuInfo]:
    import torch

    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        out.append(GpuInfo(i, p.name, p.total_memory / MIB, (p.major, p.minor)))
    return out


def _fill_capability(gpus: list[GpuInfo]) -> list[GpuInfo]:
    """NVML without a capability (old driver or binding): ask torch, which knows it."""
    if all(g.capability for g in gpus):
        return gpus
    try:
        known = {g.index: g.capability for g in _torch_gpus()}
    except Exception:
        return gpus
    return [g if g.capability else GpuInfo(g.index, g.name, g.mem_total_mb, known.get(g.index)) for g in gpus]


def detect(nvml=None, use_torch: bool = True) -> Hardware:
    """This machine's GPUs and CPU. NVML first (cheap, and what the sampler uses); torch when
    NVML is missing or lacks the compute capability. Never raises: no GPU is a valid answer,
    and `note` says why none was found. `nvml`: a module standing in for pynvml (tests), or
    False to skip NVML."""
    base = dict(cpu_model=cpu_model(), cpu_count=os.cpu_count() or 1, mem_total_mb=psutil.virtual_memory().total / MIB)
    note = ""
    if nvml is not False:
        try:
            if nvml is None:
                import pynvml as nvml
            gpus, driver = _nvml_gpus(nvml)
            if gpus:
                if use_torch:
                    gpus = _fill_capability(gpus)
                return Hardware(tuple(gpus), source="nvml", driver=driver, **base)
            note = "NVML found no GPU"
        except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, DriverNotLoaded, ...
            note = f"NVML unavailable ({type(exc).__name__}: {exc})"
    if use_torch:
        try:
            gpus = _torch_gpus()
            if gpus:
                return Hardware(tuple(gpus), source="torch", note=note, **base)
            note += "; torch sees no CUDA device" if note else "torch sees no CUDA device"
        except Exception as exc:
            note += f"; torch unavailable ({type(exc).__name__})"
    return Hardware(source="none", note=note or "no GPU", **base)


# ----------------------------------------------------------------------------- pricing

HOW_TO_PRICE = "pass --price-per-hour with what an hour of this machine costs, e.g. --price-per-hour 2.86"


def local_price(
    catalog: Catalog,
    price_per_hour: str | Decimal | None,
    detected: Hardware,
    *,
    region: str = DEFAULT_REGION,
    spot: bool = False,
) -> PriceChoice:
    """The price per hour a local run pays, and why.

    1. An explicit price wins.
    2. GPUs: the catalogue instance carrying that GPU, priced on-demand in `region` (list
       prices; a Spot VM or a discount is cheaper, so this errs toward over-counting). An
       accelerator-optimised machine that includes the GPU (g2 for L4, a2 for A100, a3 for
       H100 and H200, a4 for B200) is preferred; otherwise an N1 machine with the GPU attached
       (T4, P100, V100). Among several shapes, the one whose vCPUs per GPU equal this
       machine's (we are probably on it), else the cheapest. A machine sold only with 8 GPUs
       (a3-ultragpu-8g, a4-highgpu-8g) is priced per GPU: this machine's GPUs' share of it.
       A GPU variant the catalogue does not price (an H100 PCIe) is priced as its nearest
       entry (the SXM H100 Google rents), and the reason says so.
    3. No GPU: the catalogue's local CPU entry ($0/h), saying so and how to set a price.
    An unknown or mixed set of GPUs raises HardwareError asking for --price-per-hour.
    """
    if price_per_hour is not None:
        rate = usd(str(price_per_hour).strip().lstrip("$"))
        if rate < 0:
            raise ValueError(f"--price-per-hour must be >= 0, got {price_per_hour!r}")
        return PriceChoice(rate, "--price-per-hour", f"${_fmt(rate)}/h given with --price-per-hour")

    if not detected.gpus:
        inst = catalog.local()
        rate = inst.usd_per_hour if inst.usd_per_hour != 0 else Decimal(0)  # "0", not "0E-9", in run.json
        return PriceChoice(
            rate, "local",
            f"no GPU detected ({detected.note or 'none found'}); a CPU-only run is priced at ${_fmt(rate)}/h from the "
            "catalogue's local entry, so the budget caps no spending; to budget what this machine costs, "
            "pass --price-per-hour (e.g. 0.38 for an n1-standard-8)",
            inst.label,
        )

    names = sorted({g.name for g in detected.gpus})
    if len(names) > 1:
        raise HardwareError(
            f"this machine has different GPUs ({', '.join(names)}), which the catalogue cannot price as one "
            f"instance; {HOW_TO_PRICE}"
        )
    name, count = names[0], len(detected.gpus)
    try:
        matched = nvml_match(name)
        gpu = matched.gpu
        if gpu not in catalog.gpus():
            raise UnknownName("GPU", gpu, catalog.gpus())
    except UnknownName:
        raise HardwareError(
            f"GPU {name!r} is not in the price catalogue (it prices {', '.join(catalog.gpus())}), so budgetft "
            f"cannot tell what an hour of it costs; {HOW_TO_PRICE}"
        ) from None

    regions = [region] + [r for r in catalog.regions() if r != region]
    for where in regions:
        picked = _pick_instance(catalog, gpu, count, detected.cpu_count, where, spot)
        if picked is not None:
            inst, rate, label, how = picked
            break
    else:
        raise HardwareError(f"the catalogue has no instance with {count}x {gpu}; {HOW_TO_PRICE}")
    elsewhere = f" ({region} has no {gpu}, so priced in {inst.region})" if inst.region != region else ""
    reason = (
        f"detected {count}x {matched.describe()}; priced as {label} ({how}): ${_fmt(rate)}/h {inst.provisioning} in "
        f"{inst.region}{elsewhere}, incl. a {inst.disk_gb} GB {inst.disk_type} disk (catalogue {catalog.version}, "
        f"fetched {catalog.fetched}); pass --price-per-hour if this machine costs something else (Spot, "
        "another region, your own hardware)"
    )
    return PriceChoice(rate, "catalogue", reason, label)


def _fmt(rate: Decimal) -> str:
    """Dollars per hour for prose: 4 decimals (catalogue rates carry 9), plain 0 for free."""
    return "0" if rate == 0 else f"{rate:.4f}"


def _pick_instance(catalog: Catalog, gpu: str, count: int, vcpus: int, region: str, spot: bool):
    """(instance, $/h, label, why) for `count` x `gpu` in `region`, or None if it has none."""
    try:
        single = catalog.instances(regions=[region], spot=spot, gpus=[gpu])
    except CatalogError:
        return None
    built_in = [i for i in single if i.gpus_usd_per_hour == 0]  # g2/a2/a3/a4: the GPU is in the machine
    if built_in:
        # One-GPU shapes where the family has them (several GPUs priced as that many, below), else
        # the smallest shape that holds this machine's GPUs (sold only whole: priced by its share).
        holds = [i for i in built_in if i.gpu_count >= count]
        built_in = ([i for i in built_in if i.gpu_count <= 1]
                    or [i for i in holds if i.gpu_count == min(h.gpu_count for h in holds)] or built_in)
        inst, why = _closest(catalog, built_in, max(1, vcpus // count), region, spot, per_gpu=True)
        what = "the accelerator-optimised machine that includes it"
        if inst.gpu_count <= 1:
            # One-GPU shapes: several GPUs are priced as that many one-GPU machines (Google's
            # larger g2/a2/a3 shapes scale close to linearly).
            label = f"{count}x {inst.label}" if count > 1 else inst.label
            return inst, inst.usd_per_hour * count, label, f"{what}; {why}"
        # Sold only with gpu_count GPUs (A3 Ultra, A4): this machine's GPUs' share of it, plus
        # the whole boot disk. Rounded up: the share must not under-count the machine.
        share = round_up(inst.machine_usd_per_hour * count / inst.gpu_count + inst.disk_usd_per_hour, RATE_RESOLUTION)
        label = inst.label if count == inst.gpu_count else f"{count}/{inst.gpu_count} of {inst.label}"
        return inst, share, label, f"{what}, priced per GPU: {count} of its {inst.gpu_count} GPUs; {why}"
    shapes = []
    for machine in {i.machine for i in single}:  # N1 machines the GPU attaches to
        try:
            shapes.append(catalog.instance(machine, gpu, count, region=region, spot=spot))
        except CatalogError:
            continue  # e.g. too many vCPUs for this GPU count
    if not shapes:
        return None
    inst, why = _closest(catalog, shapes, vcpus, region, spot)
    return inst, inst.usd_per_hour, inst.label, f"an N1 machine with the GPU attached; {why}"


def _closest(catalog: Catalog, options: list[Instance], vcpus: int, region: str, spot: bool, per_gpu: bool = False) -> tuple[Instance, str]:
    """The option whose vCPUs (per GPU, with per_gpu) equal `vcpus`, else the cheapest per GPU."""

    def cpus(inst: Instance) -> int | None:
        total = catalog.find("machine", inst.machine, region, spot).vcpus
        return total // max(1, inst.gpu_count) if per_gpu and total is not None else total

    def price(inst: Instance):
        return inst.usd_per_hour / max(1, inst.gpu_count) if per_gpu else inst.usd_per_hour

    unit = " per GPU" if per_gpu else ""
    same = sorted((i for i in options if cpus(i) == vcpus), key=price)
    if same:
        return same[0], f"its {vcpus} vCPUs{unit} match this machine's"
    cheapest = min(options, key=price)
    return cheapest, f"no shape has this machine's {vcpus} vCPUs{unit}, so the cheapest{unit} that takes the GPU"
