"""What a VM's life costs, and how long the budget lets it live.

A cloud run's VM goes through: boot -> install -> GPU ready -> data prepared -> the run itself
(metered by `budgetft run` on the VM, into the same ledger) -> last upload -> shutdown. Everything
but the run is overhead we estimate here and charge to the ledger BEFORE the VM is created; the
run then spends what is left. The on-VM helper (`budgetft.cloud.vm_boot`) charges any boot time
beyond the estimate before the run starts, so the run plans with what is really left.

The cloud enforces the end: `max_run_duration` = all the time the remaining budget buys, minus
the shutdown allowance (the instance is billed while it stops) and the lag of Compute Engine's
own deletion past the duration. Rounded down to whole seconds. The rate is the catalogue price
plus the run's side costs (budgetft.cloud.side_costs: the external address, storage operations,
cross-region traffic), whose one-off terms are overheads too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from budgetft.cloud.side_costs import SideCosts
from budgetft.money.catalog import DEFAULT_DISK_GB, Instance
from budgetft.money.usd import RATE_RESOLUTION, cost, round_up, usd

# Seconds, each a deliberate upper-middle estimate (timed by hand on n1/g2 VMs with a Deep
# Learning VM image; the on-VM helper replaces boot+install+gpu with the measured time).
BOOT_SECONDS = 90  # instance RUNNING -> our start-up script running (kernel, guest agent, DLVM first boot)
INSTALL_SECONDS = 120  # venv + pip install of budgetft and the libraries the image lacks (ray, peft, ...)
GPU_READY_SECONDS = 15  # the default image has its NVIDIA driver baked in; nvidia-smi answering
PREPARE_SECONDS = 45  # model and data download + tokenizing, which `budgetft run` does before its meter starts
UPLOAD_SECONDS = 30  # the last upload of the run directory (logs, JSON, small adapters)
SHUTDOWN_SECONDS = 60  # guest shutdown and deletion: billed until the instance has stopped
# "The automatic termination can take up to 30 seconds longer than the specified duration"
# (cloud.google.com/compute/docs/instances/limit-vm-runtime, Limitations): billed too.
DELETE_LAG_SECONDS = 30
RESERVE_SECONDS = SHUTDOWN_SECONDS + DELETE_LAG_SECONDS  # kept out of maxRunDuration, charged up front
# A launch is refused when the run itself would get less than this: baselines, calibration and
# one short trial of a ~100M-parameter model need a few minutes even on a GPU.
MIN_RUN_SECONDS = 300

# Boot disk: the Deep Learning VM image itself uses ~35 GB and needs a >= 50 GB disk; a job adds
# its model three times over (download, converted copy, checkpoints) plus ~5 GB of data, caches
# and pip downloads. Rounded up to 10 GB.
IMAGE_GB = 35
SCRATCH_GB = 5


def boot_seconds() -> int:
    return BOOT_SECONDS + INSTALL_SECONDS + GPU_READY_SECONDS


def overhead_seconds() -> int:
    """Every second of the VM's life that is not the run itself."""
    return boot_seconds() + PREPARE_SECONDS + UPLOAD_SECONDS + RESERVE_SECONDS


def disk_gb_for(model_params: float) -> int:
    need = IMAGE_GB + 3 * model_params * 4 / 1e9 + SCRATCH_GB  # fp32 weights: 4 bytes per parameter
    return max(DEFAULT_DISK_GB, int(math.ceil(need / 10.0)) * 10)


def max_run_seconds(remaining_usd: Decimal, usd_per_hour: Decimal) -> int:
    """The VM's hard lifetime: whole seconds the remaining money buys at this price, rounded down,
    less the shutdown allowance and Compute Engine's deletion lag. Negative when the money does
    not even cover those."""
    rate = usd(usd_per_hour)
    if rate <= 0:
        raise ValueError(f"an instance price must be > 0 $/h, got {usd_per_hour}")
    seconds = (usd(remaining_usd) * 3600 / rate).to_integral_value(rounding=ROUND_FLOOR)
    return int(seconds) - RESERVE_SECONDS


@dataclass(frozen=True)
class Line:
    category: str  # ledger category
    what: str
    seconds: int  # 0 for a one-off side cost, which is not time
    usd: Decimal
    name: str = ""  # the ledger key's last part (default: the category)

    @property
    def key_part(self) -> str:
        return self.name or self.category


@dataclass(frozen=True)
class VmEstimate:
    usd_per_hour: Decimal  # the catalogue price plus the hourly side costs: what the VM's meter charges
    remaining_usd: Decimal
    max_run_seconds: int  # scheduling.maxRunDuration
    run_seconds: int  # what is left for `budgetft run` itself
    overheads: tuple[Line, ...]  # charged before launch
    run_usd: Decimal  # at most, metered on the VM

    @property
    def overhead_usd(self) -> Decimal:
        return sum((line.usd for line in self.overheads), Decimal(0))

    @property
    def total_usd(self) -> Decimal:
        return self.overhead_usd + self.run_usd

    @property
    def enough(self) -> bool:
        return self.run_seconds >= MIN_RUN_SECONDS

    def refusal(self, instance: Instance) -> str:
        buys = max(0, self.max_run_seconds + RESERVE_SECONDS)
        return (
            f"${self.remaining_usd} buys {buys} s of {instance.label} at ${self.usd_per_hour}/h (with its address and storage); "
            f"the VM's boot, install, upload and shutdown take ~{overhead_seconds()} s, leaving "
            f"{max(0, self.run_seconds)} s for the run (at least {MIN_RUN_SECONDS} s needed). "
            f"Raise --budget to at least ${minimum_budget(self.usd_per_hour, self.one_off_usd)}, or use --spot or a cheaper --gpu"
        )

    @property
    def one_off_usd(self) -> Decimal:
        return sum((line.usd for line in self.overheads if line.seconds == 0), Decimal(0))


def minimum_budget(usd_per_hour: Decimal, one_off_usd: Decimal = Decimal(0)) -> Decimal:
    seconds = overhead_seconds() + MIN_RUN_SECONDS
    return (usd(usd_per_hour) * seconds / 3600 + one_off_usd).quantize(Decimal("0.01"), rounding="ROUND_CEILING")


def vm_rate(instance: Instance, side: SideCosts | None = None) -> Decimal:
    """What an hour of the VM costs in all: its catalogue price and the hourly side costs."""
    extra = side.usd_per_hour if side is not None else Decimal(0)
    return round_up(instance.usd_per_hour + extra, RATE_RESOLUTION)


def estimate(remaining_usd: Decimal, instance: Instance, side: SideCosts | None = None) -> VmEstimate:
    """Split the remaining money into the VM's overheads (its fixed seconds at the full rate, and
    the side costs' one-off terms) and its run."""
    rate = vm_rate(instance, side)
    one_offs = tuple(Line(t.category, t.what, 0, t.usd, f"side{i + 1}") for i, t in enumerate(side.one_offs if side else ()))
    lifetime = max_run_seconds(usd(remaining_usd) - sum((line.usd for line in one_offs), Decimal(0)), rate)
    before_run = boot_seconds() + PREPARE_SECONDS
    run = lifetime - before_run - UPLOAD_SECONDS
    lines = (
        # The boot line carries Compute Engine's one-minute minimum; the rest are billed per second.
        Line("boot", f"boot {BOOT_SECONDS} s + install {INSTALL_SECONDS} s + GPU ready {GPU_READY_SECONDS} s", boot_seconds(), cost(rate, boot_seconds())),
        Line("overhead", "model and data download, tokenizing", PREPARE_SECONDS, cost(rate, PREPARE_SECONDS, 0)),
        Line("upload", "last upload of the run directory", UPLOAD_SECONDS, cost(rate, UPLOAD_SECONDS, 0)),
        Line("teardown", f"shutdown {SHUTDOWN_SECONDS} s + deletion lag past maxRunDuration {DELETE_LAG_SECONDS} s", RESERVE_SECONDS, cost(rate, RESERVE_SECONDS, 0)),
    ) + one_offs
    spent_before = sum((line.usd for line in lines), Decimal(0))
    run_usd = max(Decimal(0), usd(remaining_usd) - spent_before)
    return VmEstimate(rate, usd(remaining_usd), lifetime, run, lines, run_usd)


def money(amount: Decimal) -> str:
    """1.000000 -> '1.00', 0.123400 -> '0.1234': as many places as the amount needs, at least 2."""
    text = format(amount.normalize(), "f")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def duration_text(seconds: int) -> str:
    """1195 -> '19 min 55 s'."""
    sign = "-" if seconds < 0 else ""
    seconds = abs(int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{sign}{hours} h {minutes} min {secs} s"
    return f"{sign}{minutes} min {secs} s"
