"""Cloud prices as versioned data, and Google's billing rules.

The prices live in `catalog.csv` next to this file (a comment header says when and where they were
taken); this module only reads it. An instance's price per hour is

    machine  +  GPUs attached to it (N1 only; g2/a2/a3 prices already include theirs)
             +  boot disk ($/GB-month / 730 h per month)

and Compute Engine bills that rate per second with a one-minute minimum per VM run.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path

from budgetft.money.errors import CatalogError, UnknownName
# GPU names people type and NVML reports are data too (gpus.csv, gpu_names.csv: money.gpu_names).
from budgetft.money.gpu_names import resolve_gpu
# Dollar arithmetic has its own home (budgetft.money.usd); the catalogue prices with it.
from budgetft.money.usd import HOURS_PER_MONTH, MINIMUM_BILLED_SECONDS, RATE_RESOLUTION, cost, minutes_per_dollar, round_up, usd

DEFAULT_REGION = "us-central1"
DEFAULT_DISK_TYPE = "pd-balanced"
# Deep Learning VM images need a boot disk of at least 50 GB.
DEFAULT_DISK_GB = 50

KINDS = ("machine", "gpu", "disk", "local")
PROVISIONING = ("on-demand", "spot")
# Disk and local rows cost the same however the VM is provisioned.
ANY_PROVISIONING = "any"
LOCAL_REGION = "local"

# How many vCPUs an N1 machine may have for a given number of attached GPUs (Compute Engine's
# "GPUs on N1" table); e.g. one V100 allows at most 12 vCPUs, so n1-standard-16 + 1 V100 is invalid.
N1_MAX_VCPUS = {
    "nvidia-tesla-t4": {1: 48, 2: 48, 4: 96},
    "nvidia-tesla-p100": {1: 16, 2: 32, 4: 64},
    "nvidia-tesla-v100": {1: 12, 2: 24, 4: 48, 8: 96},
}


# ----------------------------------------------------------------------------- catalogue rows


@dataclass(frozen=True)
class PriceRow:
    """One line of catalog.csv."""

    kind: str  # machine | gpu | disk | local
    name: str  # machine type, GCP accelerator type, disk type, or "cpu" for local runs
    region: str
    provisioning: str  # on-demand | spot | any
    usd_per_hour: Decimal | None  # machines, GPUs, local
    usd_per_gb_month: Decimal | None  # disks
    gpu: str | None = None  # the accelerator a machine includes (g2/a2/a3)
    gpu_count: int = 0
    vcpus: int | None = None
    memory_gb: Decimal | None = None
    attaches_to: tuple[str, ...] = ()  # machine families a GPU row can be attached to ("n1")

    @property
    def family(self) -> str:
        return self.name.split("-", 1)[0]


def _parse_row(raw: dict[str, str], where: str) -> PriceRow:
    def opt(key: str) -> str | None:
        value = (raw.get(key) or "").strip()
        return value or None

    try:
        kind = raw["kind"].strip()
        if kind not in KINDS:
            raise UnknownName("kind", kind, KINDS)
        provisioning = raw["provisioning"].strip()
        if provisioning not in (*PROVISIONING, ANY_PROVISIONING):
            raise UnknownName("provisioning", provisioning, (*PROVISIONING, ANY_PROVISIONING))
        per_hour, per_gb_month = opt("usd_per_hour"), opt("usd_per_gb_month")
        row = PriceRow(
            kind=kind,
            name=raw["name"].strip(),
            region=raw["region"].strip(),
            provisioning=provisioning,
            usd_per_hour=usd(per_hour) if per_hour is not None else None,
            usd_per_gb_month=usd(per_gb_month) if per_gb_month is not None else None,
            gpu=opt("gpu"),
            gpu_count=int(opt("gpu_count") or 0),
            vcpus=int(opt("vcpus")) if opt("vcpus") else None,
            memory_gb=usd(opt("memory_gb")) if opt("memory_gb") else None,
            attaches_to=tuple(x for x in (opt("attaches_to") or "").split(";") if x),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise CatalogError(f"{where}: bad catalogue row {raw!r}: {exc}") from exc
    price = row.usd_per_gb_month if kind == "disk" else row.usd_per_hour
    if price is None or price < 0:
        column = "usd_per_gb_month" if kind == "disk" else "usd_per_hour"
        raise CatalogError(f"{where}: {kind} {row.name!r} needs a {column} >= 0")
    return row


# ----------------------------------------------------------------------------- instances


@dataclass(frozen=True)
class Instance:
    """A priced VM (or the local machine): what one hour of it costs, by part."""

    machine: str
    region: str
    spot: bool
    gpu: str | None
    gpu_count: int
    machine_usd_per_hour: Decimal
    gpus_usd_per_hour: Decimal  # attached GPUs only; a g2/a2/a3 GPU is in machine_usd_per_hour
    disk_type: str | None
    disk_gb: int
    disk_usd_per_hour: Decimal

    @property
    def usd_per_hour(self) -> Decimal:
        total = self.machine_usd_per_hour + self.gpus_usd_per_hour + self.disk_usd_per_hour
        return round_up(total, RATE_RESOLUTION)

    @property
    def minutes_per_dollar(self) -> Decimal | None:
        return minutes_per_dollar(self.usd_per_hour)

    @property
    def provisioning(self) -> str:
        return "spot" if self.spot else "on-demand"

    @property
    def label(self) -> str:
        """e.g. 'n1-standard-8 + nvidia-tesla-v100' or 'g2-standard-8' (its L4 is built in)."""
        if self.gpu and self.gpus_usd_per_hour > 0:
            count = f"{self.gpu_count}x " if self.gpu_count > 1 else ""
            return f"{self.machine} + {count}{self.gpu}"
        return self.machine

    def cost(self, seconds: Decimal | int | float, minimum_seconds: int = MINIMUM_BILLED_SECONDS):
        return cost(self.usd_per_hour, seconds, minimum_seconds)


class Catalog:
    """The rows of one catalogue file plus its header (version, fetched, source)."""

    def __init__(self, rows: list[PriceRow], meta: dict[str, str] | None = None):
        self.rows = list(rows)
        self.meta = dict(meta or {})
        self._index = {(r.kind, r.name, r.region, r.provisioning): r for r in self.rows}

    # -- loading

    @classmethod
    def load(cls, path: str | Path | None = None) -> Catalog:
        """The packaged catalog.csv, or the file at `path`."""
        if path is None:
            text = resources.files("budgetft.money").joinpath("catalog.csv").read_text("utf-8")
            return cls.from_text(text, "budgetft/money/catalog.csv")
        return cls.from_text(Path(path).read_text("utf-8"), str(path))

    @classmethod
    def from_text(cls, text: str, where: str = "<catalogue>") -> Catalog:
        meta: dict[str, str] = {}
        body: list[str] = []
        for line in text.splitlines():
            if line.startswith("#"):
                key, sep, value = line[1:].partition(":")
                # Only "# key: value" lines with a one-word key are metadata; others are prose.
                if sep and re.fullmatch(r"[a-z_]+", key.strip()):
                    meta.setdefault(key.strip(), value.strip())
            elif line.strip():
                body.append(line)
        reader = csv.DictReader(io.StringIO("\n".join(body)))
        rows = [_parse_row(raw, f"{where} row {i}") for i, raw in enumerate(reader, start=1)]
        if not rows:
            raise CatalogError(f"{where}: no price rows")
        return cls(rows, meta)

    @property
    def version(self) -> str:
        return self.meta.get("version", "unknown")

    @property
    def fetched(self) -> str:
        return self.meta.get("fetched", "unknown")

    # -- lookups

    def names(self, kind: str) -> list[str]:
        return sorted({r.name for r in self.rows if r.kind == kind})

    def regions(self, *, include_local: bool = False) -> list[str]:
        return sorted({r.region for r in self.rows if include_local or r.kind != "local"})

    def gpus(self) -> list[str]:
        """Every GPU the catalogue prices: attachable ones and those built into machines."""
        return sorted({r.name for r in self.rows if r.kind == "gpu"} | {r.gpu for r in self.rows if r.gpu})

    def find(self, kind: str, name: str, region: str = DEFAULT_REGION, spot: bool = False) -> PriceRow:
        """The row for `name` in `region`; raises UnknownName listing what is valid."""
        if kind not in KINDS:
            raise UnknownName("kind", kind, KINDS)
        names = self.names(kind)
        if name not in names:
            raise UnknownName(kind if kind != "gpu" else "GPU", name, names)
        if region not in self.regions(include_local=True):
            raise UnknownName("region", region, self.regions())
        wanted = "spot" if spot else "on-demand"
        for provisioning in (wanted, ANY_PROVISIONING):
            row = self._index.get((kind, name, region, provisioning))
            if row is not None:
                return row
        offered = sorted({r.region for r in self.rows if r.kind == kind and r.name == name})
        raise CatalogError(
            f"{kind} {name!r} has no {wanted} price in {region} in this catalogue; "
            f"regions that have it: {', '.join(offered)}"
        )

    def instance(
        self,
        machine: str,
        gpu: str | None = None,
        gpu_count: int | None = None,
        *,
        region: str = DEFAULT_REGION,
        spot: bool = False,
        disk_type: str = DEFAULT_DISK_TYPE,
        disk_gb: int = DEFAULT_DISK_GB,
    ) -> Instance:
        """Price a VM: `machine` (+ `gpu_count` x `gpu` for N1) + a `disk_gb` boot disk."""
        row = self.find("machine", machine, region, spot)
        wanted_gpu = resolve_gpu(gpu) if gpu else None
        gpus_per_hour = Decimal(0)
        if row.gpu:  # accelerator-optimised machine: its GPU is part of its price
            if wanted_gpu not in (None, row.gpu):
                raise CatalogError(f"{machine} comes with {row.gpu_count}x {row.gpu}; it cannot take {wanted_gpu}")
            if gpu_count not in (None, row.gpu_count):
                raise CatalogError(f"{machine} comes with exactly {row.gpu_count} GPU(s), not {gpu_count}")
            gpu_name, count = row.gpu, row.gpu_count
        elif wanted_gpu is not None:
            count = 1 if gpu_count is None else int(gpu_count)
            gpu_row = self.find("gpu", wanted_gpu, region, spot)
            if row.family not in gpu_row.attaches_to:
                raise CatalogError(
                    f"{wanted_gpu} cannot be attached to {machine}; it attaches to "
                    f"{', '.join(f + '-*' for f in gpu_row.attaches_to)}"
                )
            _check_n1_shape(machine, row.vcpus, wanted_gpu, count)
            gpu_name, gpus_per_hour = wanted_gpu, gpu_row.usd_per_hour * count
        else:
            if gpu_count:
                raise CatalogError(f"gpu_count={gpu_count} given without a GPU for {machine}")
            gpu_name, count = None, 0
        if disk_gb < 0:
            raise CatalogError(f"disk_gb must be >= 0, got {disk_gb}")
        disk = self.find("disk", disk_type, region, spot)
        return Instance(
            machine=machine,
            region=region,
            spot=spot,
            gpu=gpu_name,
            gpu_count=count,
            machine_usd_per_hour=row.usd_per_hour,
            gpus_usd_per_hour=gpus_per_hour,
            disk_type=disk_type,
            disk_gb=disk_gb,
            disk_usd_per_hour=disk.usd_per_gb_month * disk_gb / HOURS_PER_MONTH,
        )

    def local(self, price_per_hour: Decimal | int | float | str | None = None) -> Instance:
        """The CPU-only local machine: free unless the user states what an hour of it costs."""
        row = self.find("local", "cpu", LOCAL_REGION)
        rate = row.usd_per_hour if price_per_hour is None else usd(price_per_hour)
        if rate < 0:
            raise CatalogError(f"price per hour must be >= 0, got {price_per_hour!r}")
        return Instance("cpu", LOCAL_REGION, False, None, 0, rate, Decimal(0), None, 0, Decimal(0))

    def instances(
        self,
        *,
        regions: list[str] | None = None,
        spot: bool | None = None,
        gpus: list[str] | None = None,
        disk_type: str = DEFAULT_DISK_TYPE,
        disk_gb: int = DEFAULT_DISK_GB,
    ) -> list[Instance]:
        """Every sensible one-GPU (or no-GPU) instance, cheapest first. `spot=None` lists both
        provisioning models; `gpus` (aliases accepted) keeps only instances with those GPUs."""
        for region in regions or []:
            if region not in self.regions():
                raise UnknownName("region", region, self.regions())
        keep = {resolve_gpu(g) for g in gpus} if gpus else None
        out: list[Instance] = []
        for region in regions or self.regions():
            for is_spot in (False, True) if spot is None else (spot,):
                for row in self._rows("machine", region, is_spot):
                    if row.gpu:
                        options: list[str | None] = [row.gpu]
                    else:
                        attachable = [g.name for g in self._rows("gpu", region, is_spot) if row.family in g.attaches_to]
                        options = [None, *attachable]
                    for gpu in options:
                        if keep is not None and gpu not in keep:
                            continue
                        try:
                            inst = self.instance(
                                row.name, gpu, region=region, spot=is_spot, disk_type=disk_type, disk_gb=disk_gb
                            )
                        except CatalogError:
                            continue  # e.g. n1-standard-16 + 1 V100: not a shape Google offers
                        out.append(inst)
        return sorted(out, key=lambda i: (i.usd_per_hour, i.region, i.label))

    def _rows(self, kind: str, region: str, spot: bool) -> list[PriceRow]:
        wanted = "spot" if spot else "on-demand"
        return [r for r in self.rows if r.kind == kind and r.region == region and r.provisioning == wanted]


def _check_n1_shape(machine: str, vcpus: int | None, gpu: str, count: int) -> None:
    limits = N1_MAX_VCPUS.get(gpu)
    if limits is None:
        return
    if count not in limits:
        raise CatalogError(f"{gpu} attaches in counts of {', '.join(map(str, limits))}, not {count}")
    if vcpus is not None and vcpus > limits[count]:
        raise CatalogError(
            f"{machine} has {vcpus} vCPUs but {count}x {gpu} allows at most {limits[count]}; "
            "attach more GPUs or pick a smaller machine"
        )
