#!/usr/bin/env python3
"""Refresh budgetft/money/catalog.csv from Google's Cloud Billing Catalog API (offline tool).

    python scripts/fetch_prices.py --key "$GOOGLE_API_KEY"            # fetch and rewrite the CSV
    python scripts/fetch_prices.py --skus-json skus.json --out new.csv  # parse a saved dump

Never imported by budgetft at run time. Needs an API key with the Cloud Billing API enabled (any
project; the catalogue is public list prices). Users refresh their own copy with
`budgetft prices --refresh` instead, which goes through Google's client library and writes to
budgetft's cache; both turn SKUs into rows with the same code, budgetft/money/billing_skus.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.parse
import urllib.request
from datetime import date
from pathlib import Path

# The mapping from SKUs to rows is the package's, so the script and `prices --refresh` agree.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from budgetft.money.billing_skus import (  # noqa: E402
    COMPUTE_ENGINE_SERVICE,
    DEFAULT_REGIONS,
    classify,
    parse_skus,
    render_csv,
    unit_price,
)

__all__ = ["classify", "fetch_skus", "main", "parse_skus", "render_csv", "unit_price"]

API = f"https://cloudbilling.googleapis.com/v1/services/{COMPUTE_ENGINE_SERVICE}/skus"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "budgetft" / "money" / "catalog.csv"


def fetch_skus(api_key: str, currency: str = "USD") -> list[dict]:
    """Every Compute Engine SKU, following pagination (thousands of SKUs, a few requests)."""
    skus: list[dict] = []
    token = ""
    while True:
        query = {"key": api_key, "currencyCode": currency, "pageSize": "5000"}
        if token:
            query["pageToken"] = token
        with urllib.request.urlopen(f"{API}?{urllib.parse.urlencode(query)}", timeout=60) as response:
            page = json.load(response)
        skus.extend(page.get("skus", []))
        token = page.get("nextPageToken", "")
        if not token:
            return skus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--key", default=os.environ.get("GOOGLE_API_KEY"), help="API key (default: $GOOGLE_API_KEY)")
    parser.add_argument("--skus-json", type=Path, help="parse this saved SKU list instead of calling the API")
    parser.add_argument("--regions", default=",".join(DEFAULT_REGIONS), help="comma-separated regions")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"CSV to write (default: {DEFAULT_OUT})")
    parser.add_argument("--version", dest="catalog_version", help="catalogue version (default: the date)")
    args = parser.parse_args(argv)
    if args.skus_json:
        loaded = json.loads(args.skus_json.read_text())
        skus = loaded["skus"] if isinstance(loaded, dict) else loaded
    elif args.key:
        skus = fetch_skus(args.key)
    else:
        parser.error("give --key (or set GOOGLE_API_KEY) or --skus-json")
    rows = parse_skus(skus, tuple(r.strip() for r in args.regions.split(",") if r.strip()))
    if not any(r["kind"] == "machine" for r in rows):
        print("no machine could be priced from these SKUs; not writing", file=sys.stderr)
        return 1
    args.out.write_text(render_csv(rows, date.today(), args.catalog_version))
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
