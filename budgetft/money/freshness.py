"""How old the prices are, and the warning `run`, `plan` and `prices` print when they are old.

A cap is only as good as its prices: list prices change a few times a year (Spot prices up to
every 30 days), so a catalogue older than MAX_AGE_DAYS is reported with the way to refresh it.
"""

from __future__ import annotations

from datetime import date

from budgetft.money.catalog import Catalog
from budgetft.money.catalog_store import default_catalog

# A quarter: Google announces list-price changes ahead, and rarely more often than that.
MAX_AGE_DAYS = 90


def catalog_age_days(catalog: Catalog, today: date | None = None) -> int | None:
    """Whole days since the catalogue's prices were fetched; None when its date is unknown."""
    try:
        fetched = date.fromisoformat(catalog.fetched)
    except ValueError:
        return None
    return ((today or date.today()) - fetched).days


def stale_catalog_warning(catalog: Catalog | None = None, today: date | None = None, max_age_days: int = MAX_AGE_DAYS) -> str | None:
    """A sentence saying the prices are old and how to refresh them, or None when they are not.
    `catalog` defaults to the one commands use (the newest of bundled and refreshed)."""
    if catalog is None:
        catalog = default_catalog()
    age = catalog_age_days(catalog, today)
    fix = ("refresh them with `budgetft prices --refresh` (needs Google Cloud credentials), "
           "or give what an hour costs with --price-per-hour")
    if age is None:
        return f"the price catalogue does not say when its prices were fetched ({catalog.fetched!r}); {fix}"
    if age <= max_age_days:
        return None
    return (f"the price catalogue's prices are {age} days old (fetched {catalog.fetched}, version {catalog.version}; "
            f"older than {max_age_days} days): list prices may have changed since; {fix}")
