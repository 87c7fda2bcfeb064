"""Which price per hour a local run pays, and why."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation


class PriceError(ValueError):
    """No usable price. The message says how to give one."""


@dataclass(frozen=True)
class PriceChoice:
    usd_per_hour: Decimal
    source: str
    reason: str


def parse_money(text: str, what: str) -> Decimal:
    try:
        value = Decimal(str(text).strip().lstrip("$"))
    except InvalidOperation:
        raise PriceError(f"{what} {text!r} is not a number; write dollars like 1.00") from None
    if not value.is_finite():
        raise PriceError(f"{what} {text!r} is not a finite number; write dollars like 1.00")
    if value <= 0:
        raise PriceError(f"{what} must be more than $0, got {text!r}")
    return Decimal(format(value, "f"))  # plain digits: 1e9 prints as 1000000000, not 1E+9


def local_price(price_per_hour: str | None) -> PriceChoice:
    if price_per_hour is not None:
        return PriceChoice(parse_money(price_per_hour, "--price-per-hour"), "--price-per-hour", "given on the command line")
    try:
        from budgetft.telemetry.hardware import HardwareError, detect, local_price as from_hardware
        from budgetft.money.catalog import default_catalog
    except ImportError:
        detect = None
    if detect is not None:
        try:
            choice = from_hardware(default_catalog(), None, detect())
        except HardwareError as exc:
            raise PriceError(str(exc)) from None
        if choice.usd_per_hour > 0:
            return PriceChoice(choice.usd_per_hour, choice.source, choice.reason)
    raise PriceError(
        "this machine has no catalogue price (a CPU-only run costs whatever your machine costs): "
        "pass --price-per-hour, e.g. --price-per-hour 2.86 to budget as an n1-standard-8 with a V100"
    )
