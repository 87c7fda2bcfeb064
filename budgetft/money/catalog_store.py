"""Where price catalogues live, and which one a run uses.

The package ships budgetft/money/catalog.csv, which cannot be rewritten in an installed package;
`budgetft prices --refresh` writes its catalogue to the user's cache instead
(`<cache>/prices/catalog.csv`, see budgetft.paths.cache_root). Every command then uses whichever
of the two was fetched later, so a refresh takes effect at once and a newer package (with a newer
bundled file) is not shadowed by an old refresh.
"""

from __future__ import annotations

import functools
import logging
from datetime import date
from pathlib import Path

from budgetft.files import write_text
from budgetft.money.catalog import Catalog
from budgetft.money.errors import CatalogError
from budgetft.paths import cache_root

log = logging.getLogger(__name__)

CACHED_NAME = "catalog.csv"


def cached_catalog_path() -> Path:
    """Where `budgetft prices --refresh` writes (the file may not exist)."""
    return cache_root(create=False) / "prices" / CACHED_NAME


def fetched_date(catalog: Catalog) -> date | None:
    """The catalogue's `# fetched:` date, or None when it is missing or not a date."""
    try:
        return date.fromisoformat(catalog.fetched)
    except ValueError:
        return None


def cached_catalog() -> Catalog | None:
    """The refreshed catalogue in the cache, or None when there is none or it cannot be read
    (a broken file is skipped with a log line: the bundled prices still work)."""
    path = cached_catalog_path()
    if not path.is_file():
        return None
    try:
        return Catalog.load(path)
    except (CatalogError, OSError, UnicodeDecodeError) as exc:
        log.warning("ignoring the refreshed price catalogue %s: %s", path, exc)
        return None


def newest_catalog() -> Catalog:
    """The bundled catalogue or the refreshed one, whichever was fetched later (the refreshed one
    on a tie: it was fetched on purpose). A catalogue without a readable date never wins."""
    bundled = Catalog.load()
    cached = cached_catalog()
    if cached is None:
        return bundled
    mine, theirs = fetched_date(cached), fetched_date(bundled)
    if mine is not None and (theirs is None or mine >= theirs):
        return cached
    return bundled


def write_cached_catalog(text: str) -> Path:
    """Check that `text` parses as a catalogue, then replace the cached file atomically (a reader
    never sees half a file). Returns its path."""
    path = cached_catalog_path()
    Catalog.from_text(text, str(path))  # refuse to write what could not be read back
    return write_text(path, text)


@functools.lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    """The newest catalogue: the packaged one, or one `budgetft prices --refresh` wrote to the
    cache, whichever was fetched later. Parsed once per process."""
    return newest_catalog()
