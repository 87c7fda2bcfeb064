"""The cost meter: VM time at one hourly price, paid into the ledger BEFORE the work runs.

A meter lives as long as one VM run (or one local run). It keeps two numbers: the seconds of VM
time paid for so far and the dollars it has charged for them. Each `charge_for(seconds, ...)`
extends the paid time and charges the difference between the bill for the new total and what was
already charged, so per-charge rounding never accumulates: after any sequence of charges the
meter has charged exactly `cost(price, paid_seconds)`, the amount Google would bill for that much
uptime.

The one-minute minimum is applied once per meter, i.e. once per VM run, because that is how
Compute Engine bills: a VM that runs 30 s costs a minute, a VM that runs 90 s costs 90 s. Applying
it per unit of work would overstate the cost of every short unit (an evaluation of 10 s would be
charged 60 s) and, for a sweep with hundreds of short units, spend much of a $1 budget on
seconds no one is billed for. The first charge of a run pays for the minimum, later units covered
by it are recorded at $0.

`reconcile(actual_seconds)` compares the VM's real uptime with the paid time and charges the
shortfall (boot, overruns, anything unmetered). It never refunds when the work ran shorter:
prepaid-but-unused seconds stay paid, so the ledger can only over-state the bill.
"""

from __future__ import annotations

import time
from decimal import ROUND_FLOOR, Decimal
from typing import Callable

from budgetft.money.ledger import BudgetExceeded, Charge, Ledger
from budgetft.money.usd import MINIMUM_BILLED_SECONDS, SECONDS_PER_HOUR, USD_RESOLUTION, cost, usd


class Meter:
    """Charges `ledger` for seconds of an instance that costs `usd_per_hour`."""

    def __init__(
        self,
        ledger: Ledger,
        usd_per_hour: Decimal | int | float | str,
        *,
        minimum_seconds: int = MINIMUM_BILLED_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.ledger = ledger
        self.usd_per_hour = usd(usd_per_hour)
        if self.usd_per_hour < 0:
            raise ValueError(f"price per hour must be >= 0, got {usd_per_hour!r}")
        self.minimum_seconds = minimum_seconds
        self._clock = clock
        self._started = clock()  # the VM run starts when its meter does
        self.paid_seconds = Decimal(0)  # uptime paid for (unbilled fractions included)
        self.charged = Decimal(0)  # USD this meter has put into the ledger

    def elapsed(self) -> Decimal:
        """Seconds since the meter (the VM run) started, by the meter's clock."""
        return usd(self._clock() - self._started)

    def quote(self, seconds: Decimal | int | float) -> Decimal:
        """What `charge_for(seconds)` would charge now, without charging."""
        total = self.paid_seconds + usd(seconds)
        return cost(self.usd_per_hour, total, self.minimum_seconds) - self.charged

    def charge_for(
        self,
        seconds: Decimal | int | float,
        category: str,
        description: str,
        *,
        trial: str | None = None,
        key: str | None = None,
        node: str | None = None,
    ) -> Charge:
        """Pay in advance for `seconds` more of VM time. Raises BudgetExceeded (and pays for
        nothing) if the cap would be passed. A `key` already in the ledger returns that charge
        and pays nothing: the unit was paid for before (e.g. before a resume); a unit that is
        really run again must use a new key."""
        extra = usd(seconds)
        if extra < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        if key is not None and (existing := self.ledger.find(key)) is not None:
            return existing
        amount = self.quote(extra)
        record, new = self.ledger.charge_once(amount, category, description, trial=trial, key=key, node=node)
        if not new:
            return record  # another process recorded this key first; nothing was charged
        self.paid_seconds += extra
        self.charged += record.amount
        return record

    def charge_shared(self, seconds: Decimal | int | float, shares: list[dict]) -> list[Charge]:
        """Pay in advance for `seconds` of VM time shared by several units of work (trials that
        run at once), one ledger line each: the slice's bill (cost(total) - charged, as
        charge_for) is split in equal dollars, any indivisible millionths going to the first, so
        per-second rounding never makes one trial look free and another dear. Each share is a
        dict of charge_for's keyword arguments (category, description, trial, key). The whole
        bill is checked against the cap first: all shares are paid, or none (BudgetExceeded)."""
        extra = usd(seconds)
        if extra < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        total = self.quote(extra)
        self.ledger.refresh()
        if self.ledger.spent + total > self.ledger.cap:
            raise BudgetExceeded(self.ledger.cap, self.ledger.spent, total, f"{extra} s shared by {len(shares)}")
        n = len(shares)
        each = (total / n).quantize(USD_RESOLUTION, rounding=ROUND_FLOOR)
        amounts = [total - each * (n - 1)] + [each] * (n - 1)
        records = []
        for amount, share in zip(amounts, shares):
            record, new = self.ledger.charge_once(amount, share["category"], share["description"], trial=share.get("trial"), key=share.get("key"),
                                                  node=share.get("node"))
            if new:
                self.charged += record.amount
            records.append(record)
        self.paid_seconds += extra
        return records

    def reconcile(
        self,
        actual_seconds: Decimal | int | float | None = None,
        *,
        category: str = "overhead",
        description: str = "uptime beyond prepaid time",
        trial: str | None = None,
    ) -> Charge | None:
        """Charge for uptime the meter has not been paid for. `actual_seconds` is the VM's real
        uptime so far (default: `elapsed()`). Returns None when nothing was owed. No refunds."""
        actual = self.elapsed() if actual_seconds is None else usd(actual_seconds)
        shortfall = actual - self.paid_seconds
        if shortfall <= 0:
            return None
        return self.charge_for(shortfall, category, description, trial=trial)

    def affordable_seconds(self) -> int | None:
        """The most seconds `charge_for` could still pay for under the cap; None if free."""
        if self.usd_per_hour == 0:
            return None
        # Dollars this meter may have charged in all once the remaining budget is spent.
        ceiling = self.charged + self.ledger.remaining
        # cost() rounds up to the ledger's resolution and `ceiling` lies on that grid, so
        # round_up(rate * s / 3600) <= ceiling  <=>  s <= ceiling * 3600 / rate.
        max_billed = (ceiling * SECONDS_PER_HOUR / self.usd_per_hour).to_integral_value(rounding=ROUND_FLOOR)
        if max_billed < self.minimum_seconds:
            return 0  # not even the run's first (minimum) minute fits
        return max(0, int((max_billed - self.paid_seconds).to_integral_value(rounding=ROUND_FLOOR)))
