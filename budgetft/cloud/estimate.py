"""What a VM's life costs, and how long the budget lets it live.

A cloud run's VM goes through: boot -> install -> GPU ready -> data prepared -> the run itself
(metered by `budgetft run` on the VM, into the same ledger) -> last upload -> shutdown. Everything
but the run is overhead we estimate here and charge to the ledger BEFORE the VM is created; the
run then spends what is left. The on-VM helper (`budgetft.cloud.vm_boot`) charges any boot time
beyond the estimate before the run starts, so the run plans with what is really left.

The cloud enforces the end: `max_run_duration` = all the time the remaining budget buys, minus
the shutdown allowance (the instance is billed while it stops). Rounded down to whole seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from budgetft.money.catalog import DEFAULT_DISK_GB, Instance
from budgetft.money.usd import cost, usd

# Seconds, each a deliberate upper-middle estimate (timed by hand on n1/g2 VMs with a Deep
# Learning VM image; the on-VM helper replaces boot+install+gpu with the measured time).
BOOT_SECONDS = 90  # instance RUNNING -> our start-up script running (kernel, guest agent, DLVM first boot)
INSTALL_SECONDS = 120  # venv + pip install of budgetft and the libraries the image lacks (ray, peft, ...)
GPU_READY_SECONDS = 15  # the default image has its NVIDIA driver baked in; nvidia-smi answering
PREPARE_SECONDS = 45  # model and data download + tokenizing, which `budgetft run` does before its meter starts
UPLOAD_SECONDS = 30  # the last upload of the run directory (logs, JSON, small adapters)
SHUTDOWN_SECONDS = 60  # guest shutdown and deletion: billed until the instance has stopped
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
    return boot_seconds() + PREPARE_SECONDS + UPLOAD_SECONDS + SHUTDOWN_SECONDS


def disk_gb_for(model_params: float) -> int:
    need = IMAGE_GB + 3 * model_params * 4 / 1e9 + SCRATCH_GB  # fp32 weights: 4 bytes per parameter
    return max(DEFAULT_DISK_GB, int(math.ceil(need / 10.0)) * 10)


def max_run_seconds(remaining_usd: Decimal, usd_per_hour: Decimal) -> int:
    """The VM's hard lifetime: whole seconds the remaining money buys at this price, rounded down,
    less the shutdown allowance. Negative when the money does not even cover the shutdown."""
    rate = usd(usd_per_hour)
    if rate <= 0:
        raise ValueError(f"an instance price must be > 0 $/h, got {usd_per_hour}")
    seconds = (usd(remaining_usd) * 3600 / rate).to_integral_value(rounding=ROUND_FLOOR)
    return int(seconds) - SHUTDOWN_SECONDS


@dataclass(frozen=True)
class Line:
    category: str  # ledger category
    what: str
    seconds: int
    usd: Decimal


@dataclass(frozen=True)
class VmEstimate:
    usd_per_hour: Decimal
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
        buys = max(0, self.max_run_seconds + SHUTDOWN_SECONDS)
        return (
            f"${self.remaining_usd} buys {buys} s of {instance.label} at ${instance.usd_per_hour}/h; "
            f"the VM's boot, install, upload and shutdown take ~{overhead_seconds()} s, leaving "
            f"{max(0, self.run_seconds)} s for the run (at least {MIN_RUN_SECONDS} s needed). "
            f"Raise --budget to at least ${minimum_budget(instance.usd_per_hour)}, or use --spot or a cheaper --gpu"
        )


def minimum_budget(usd_per_hour: Decimal) -> Decimal:
    seconds = overhead_seconds() + MIN_RUN_SECONDS
    return (usd(usd_per_hour) * seconds / 3600).quantize(Decimal("0.01"), rounding="ROUND_CEILING")


def estimate(remaining_usd: Decimal, instance: Instance) -> VmEstimate:
    """Split the remaining money into the VM's overheads and its run."""
    rate = instance.usd_per_hour
    lifetime = max_run_seconds(remaining_usd, rate)
    before_run = boot_seconds() + PREPARE_SECONDS
    run = lifetime - before_run - UPLOAD_SECONDS
    lines = (
        # The boot line carries Compute Engine's one-minute minimum; the rest are billed per second.
        Line("boot", f"boot {BOOT_SECONDS} s + install {INSTALL_SECONDS} s + GPU ready {GPU_READY_SECONDS} s", boot_seconds(), cost(rate, boot_seconds())),
        Line("overhead", "model and data download, tokenizing", PREPARE_SECONDS, cost(rate, PREPARE_SECONDS, 0)),
        Line("upload", "last upload of the run directory", UPLOAD_SECONDS, cost(rate, UPLOAD_SECONDS, 0)),
        Line("teardown", "shutdown and deletion", SHUTDOWN_SECONDS, cost(rate, SHUTDOWN_SECONDS, 0)),
    )
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
