"""The price per hour a local run pays, and why: the one chooser (budgetft.telemetry.hardware.
local_price) with the rule a capped run adds: a machine the catalogue prices at $0 (a CPU) has
no cap to enforce, so the user must say what an hour of it costs."""

from __future__ import annotations

from budgetft.money.catalog_store import default_catalog
from budgetft.money.usd import PriceError, parse_money
from budgetft.telemetry.hardware import HardwareError, PriceChoice, detect, local_price


def run_price(price_per_hour: str | None):
    """PriceChoice for a local run: --price-per-hour if given, else the detected GPU's catalogue
    instance; PriceError (naming the fix) when neither gives a price above $0."""
    if price_per_hour is not None:
        rate = parse_money(price_per_hour, "--price-per-hour")
        return PriceChoice(rate, "--price-per-hour", "given on the command line")
    try:
        choice = local_price(default_catalog(), None, detect())
    except HardwareError as exc:
        raise PriceError(str(exc)) from None
    if choice.usd_per_hour > 0:
        return choice
    raise PriceError(
        "this machine has no catalogue price (a CPU-only run costs whatever your machine costs): "
        "pass --price-per-hour, e.g. --price-per-hour 2.86 to budget as an n1-standard-8 with a V100"
    )
