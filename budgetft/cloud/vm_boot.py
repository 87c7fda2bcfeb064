"""On the VM, run by the start-up script just before `budgetft run`: charge the boot time that
went beyond the launcher's estimate, so the ledger covers every second the VM has been up.

    python -m budgetft.cloud.vm_boot --run-dir DIR --cap 1.00 --price-per-hour 2.87 \
        --estimate-s 225 --uptime-file /proc/uptime --session 1

/proc/uptime counts from kernel start, which is within seconds of when Compute Engine starts
billing the instance (RUNNING). The charge is capped at what is left: the run then sees a spent
budget and refuses to start, rather than the ledger refusing a true record.
"""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal
from pathlib import Path

from budgetft.money.usd import cost, usd
from budgetft.money.ledger import Ledger


def charge_boot(run_dir: Path, cap: Decimal, price_per_hour: Decimal, estimate_s: float, uptime_s: float, session: int) -> Decimal:
    """Charge the excess of `uptime_s` over `estimate_s`; returns the amount charged."""
    extra = uptime_s - estimate_s
    if extra <= 0:
        return Decimal(0)
    with Ledger(run_dir, cap) as ledger:
        amount = min(cost(price_per_hour, extra, 0), ledger.remaining)
        if amount <= 0:
            return Decimal(0)
        charge = ledger.charge(
            amount,
            "boot",
            f"VM boot took {uptime_s:.0f} s, {extra:.0f} s more than the {estimate_s:.0f} s charged at launch",
            key=f"vm{session}:boot-extra",
        )
        return charge.amount


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m budgetft.cloud.vm_boot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--cap", required=True)
    parser.add_argument("--price-per-hour", required=True)
    parser.add_argument("--estimate-s", type=float, required=True)
    parser.add_argument("--uptime-file", type=Path, default=Path("/proc/uptime"))
    parser.add_argument("--session", type=int, default=1)
    args = parser.parse_args(argv)
    uptime = float(args.uptime_file.read_text().split()[0])
    charged = charge_boot(args.run_dir, usd(args.cap), usd(args.price_per_hour), args.estimate_s, uptime, args.session)
    print(f"budgetft: VM up {uptime:.0f} s (estimate {args.estimate_s:.0f} s); extra boot charge ${charged}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
