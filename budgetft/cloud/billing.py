"""`budgetft prices --refresh`: today's Compute Engine list prices from Google's Cloud Billing
Catalog API, through Google's client library (google-cloud-billing, CloudCatalogClient).

The SKUs are turned into catalogue rows by budgetft/money/billing_skus.py (the same code as the
offline scripts/fetch_prices.py) and written to budgetft's cache (money/catalog_store.py), where
every later command finds them. The catalogue is public list prices: any Google credentials do
(`gcloud auth application-default login`), or an API key in GOOGLE_API_KEY.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from budgetft.cloud.errors import CloudError, NoCredentials, first_line
from budgetft.money.billing_skus import COMPUTE_ENGINE_SERVICE, DEFAULT_REGIONS, parse_skus, render_csv
from budgetft.money.catalog_store import default_catalog, write_cached_catalog

# Imported inside functions: google: the [gcp] extra, installed only where needed.

# BUDGETFT_BILLING_ENDPOINT points the client elsewhere (a fake Billing API in tests), as
# BUDGETFT_GCP_ENDPOINT does for Compute; anonymous credentials are used then.
ENDPOINT_ENV = "BUDGETFT_BILLING_ENDPOINT"
API_KEY_ENV = "GOOGLE_API_KEY"
# Read-only access to the billing catalogue is all this needs.
SCOPES = ["https://www.googleapis.com/auth/cloud-billing.readonly"]
PAGE_SIZE = 5000  # the API's maximum: Compute Engine has a few thousand SKUs, so a few pages


@dataclass(frozen=True)
class Refreshed:
    path: Path
    rows: int
    machines: int
    fetched: str
    skus: int


def _client(endpoint: str | None = None, credentials: Any = None):
    from google.api_core.client_options import ClientOptions
    from google.cloud import billing_v1

    endpoint = endpoint if endpoint is not None else os.environ.get(ENDPOINT_ENV) or None
    api_key = os.environ.get(API_KEY_ENV) or None
    options: dict[str, Any] = {}
    if endpoint:
        options["api_endpoint"] = endpoint
    if credentials is None and api_key:
        options["api_key"] = api_key  # the client sends it as x-goog-api-key; no credentials then
    elif credentials is None and endpoint:
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()
    elif credentials is None:
        credentials = _default_credentials()
    return billing_v1.CloudCatalogClient(
        credentials=credentials, transport="rest", client_options=ClientOptions(**options) if options else None
    )


def _default_credentials():
    import google.auth
    from google.auth import exceptions as auth_exc

    try:
        return google.auth.default(scopes=SCOPES)[0]
    except auth_exc.DefaultCredentialsError as exc:
        raise NoCredentials(
            f"{first_line(exc)}; `budgetft prices --refresh` reads Google's public price list and works with any "
            f"Google account's credentials, or with an API key in {API_KEY_ENV}"
        ) from None


def fetch_skus(endpoint: str | None = None, credentials: Any = None, currency: str = "USD") -> list[dict]:
    """Every Compute Engine SKU as the REST API's JSON (camelCase keys), all pages."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc
    from google.cloud import billing_v1

    client = _client(endpoint, credentials)
    request = billing_v1.ListSkusRequest(parent=f"services/{COMPUTE_ENGINE_SERVICE}", currency_code=currency, page_size=PAGE_SIZE)
    try:
        # The pager follows nextPageToken itself. to_json writes the REST shape that
        # billing_skus.parse_skus reads (int64 `units` as strings, as the API sends them).
        return [json.loads(billing_v1.Sku.to_json(sku)) for sku in client.list_skus(request=request)]
    except (gexc.Unauthenticated, auth_exc.RefreshError, auth_exc.DefaultCredentialsError) as exc:
        raise NoCredentials(first_line(exc)) from None
    except (gexc.PermissionDenied, gexc.Forbidden) as exc:  # gRPC and REST spellings of 403
        raise CloudError(
            f"the Cloud Billing API refused to list prices ({first_line(exc)}). Fix: enable it with "
            "`gcloud services enable cloudbilling.googleapis.com` in your credentials' quota project, then try again"
        ) from None
    except gexc.GoogleAPIError as exc:
        raise CloudError(f"the Cloud Billing API failed ({type(exc).__name__}: {first_line(exc)}); try again later") from None


def refresh_catalog(
    regions: tuple[str, ...] | None = None,
    *,
    endpoint: str | None = None,
    credentials: Any = None,
    today: date | None = None,
) -> Refreshed:
    """Fetch, parse and write the refreshed catalogue to the cache. Nothing is written when no
    machine could be priced (a partial answer must not replace working prices)."""
    skus = fetch_skus(endpoint, credentials)
    rows = parse_skus(skus, tuple(regions or DEFAULT_REGIONS))
    machines = sum(1 for r in rows if r["kind"] == "machine")
    if not machines:
        raise CloudError(
            f"the Cloud Billing API answered with {len(skus)} SKUs, none of which prices a machine budgetft knows; "
            "the cached catalogue was left as it was (the bundled prices are still used)"
        )
    fetched = today or date.today()
    text = render_csv(rows, fetched, how="budgetft prices --refresh (google-cloud-billing CloudCatalogClient)")
    path = write_cached_catalog(text)

    default_catalog.cache_clear()  # this process's next lookup reads the new file
    return Refreshed(path, len(rows), machines, fetched.isoformat(), len(skus))
