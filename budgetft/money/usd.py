"""Dollar arithmetic: exact and conservative.

Amounts are Decimals, never floats; a charge is rounded UP to a millionth of a dollar, so the
ledger may over-count by less than $0.000001 a charge and never under-counts. Time is billed as
Compute Engine bills a VM: per second, with a one-minute minimum per VM run.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation

# Charges are rounded UP to a millionth of a dollar: the ledger may over-count by < $0.000001 per
# charge, never under-count.
USD_RESOLUTION = Decimal("0.000001")
# Hourly rates (which can carry a non-terminating disk share) are kept to a billionth of a dollar.
RATE_RESOLUTION = Decimal("0.000000001")
SECONDS_PER_HOUR = Decimal(3600)
# Google prices disks per GB-month and prorates with a 730-hour month (365 d x 24 h / 12).
HOURS_PER_MONTH = Decimal(730)
# "All vCPUs, GPUs, and GB of memory are charged a minimum of 1 minute ... after 1 minute,
# instances are charged in 1 second increments" (cloud.google.com/compute/vm-instance-pricing).
MINIMUM_BILLED_SECONDS = 60


class PriceError(ValueError):
    """A dollar amount or price that cannot be used. The message says how to give one."""


def usd(value: Decimal | int | float | str) -> Decimal:
    """A dollar amount as a Decimal. Floats go through their shortest repr, so 0.1 stays 0.1."""
    if isinstance(value, bool):
        raise TypeError("a dollar amount cannot be a bool")
    try:
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, TypeError) as exc:
        raise ValueError(f"not a dollar amount: {value!r}") from exc
    if not amount.is_finite():
        raise ValueError(f"not a finite dollar amount: {value!r}")
    return amount


def parse_money(text: str, what: str) -> Decimal:
    """A positive dollar amount typed by a user (`1.00`, `$0.25`, `1e9`), or PriceError."""
    try:
        value = Decimal(str(text).strip().lstrip("$"))
    except InvalidOperation:
        raise PriceError(f"{what} {text!r} is not a number; write dollars like 1.00") from None
    if not value.is_finite():
        raise PriceError(f"{what} {text!r} is not a finite number; write dollars like 1.00")
    if value <= 0:
        raise PriceError(f"{what} must be more than $0, got {text!r}")
    return Decimal(format(value, "f"))  # plain digits: 1e9 prints as 1000000000, not 1E+9


def round_up(amount: Decimal, resolution: Decimal = USD_RESOLUTION) -> Decimal:
    """Round toward +infinity to `resolution` dollars (a charge is never rounded down)."""
    return amount.quantize(resolution, rounding=ROUND_CEILING)


def billed_seconds(seconds: Decimal | int | float, minimum: int = MINIMUM_BILLED_SECONDS) -> int:
    """Seconds Google bills for a VM that ran `seconds`: whole seconds, rounded up, at least
    `minimum` (60 for a VM's run; pass 0 for time after a run's first minute has been paid)."""
    s = usd(seconds)  # same exact conversion; the unit here is seconds, not dollars
    if s < 0:
        raise ValueError(f"seconds must be >= 0, got {seconds!r}")
    return max(int(minimum), int(s.to_integral_value(rounding=ROUND_CEILING)))


def cost(
    price_per_hour: Decimal | int | float | str,
    seconds: Decimal | int | float,
    minimum_seconds: int = MINIMUM_BILLED_SECONDS,
) -> Decimal:
    """USD for `seconds` at `price_per_hour`, billed per second with a minimum, rounded up to
    USD_RESOLUTION."""
    rate = usd(price_per_hour)
    if rate < 0:
        raise ValueError(f"price per hour must be >= 0, got {price_per_hour!r}")
    return round_up(rate * billed_seconds(seconds, minimum_seconds) / SECONDS_PER_HOUR)


def seconds_to_usd(seconds: float, usd_per_hour: Decimal) -> Decimal:
    """What `seconds` of machine time cost at `usd_per_hour`, rounded up (no billing minimum)."""
    return round_up(usd_per_hour * usd(max(seconds, 0.0)) / SECONDS_PER_HOUR)


def minutes_per_dollar(price_per_hour: Decimal) -> Decimal | None:
    """Minutes of running time $1 buys, rounded DOWN to 0.01 min; None when the price is 0."""
    rate = usd(price_per_hour)
    if rate <= 0:
        return None
    return (Decimal(60) / rate).quantize(Decimal("0.01"), rounding=ROUND_FLOOR)
