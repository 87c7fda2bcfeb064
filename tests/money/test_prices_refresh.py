"""Prices that say how old they are: the stale-catalogue warning of `run`, `plan` and `prices`,
and `budgetft prices --refresh` through Google's own client (google-cloud-billing's
CloudCatalogClient, REST transport) against a fake Cloud Billing Catalog API on 127.0.0.1.
Nothing here reaches the real Google Cloud."""

from __future__ import annotations

import json
import threading
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from typer.testing import CliRunner

from budgetft.cli import app
from budgetft.money.catalog import Catalog
from budgetft.money.catalog_store import default_catalog
from budgetft.money.catalog_store import cached_catalog_path, newest_catalog
from budgetft.money.freshness import MAX_AGE_DAYS, catalog_age_days, stale_catalog_warning
from tests.money.test_catalog import SAMPLE_SKUS, _sku

runner = CliRunner()
SERVICE = "6F81-5844-456A"

# The A3 Ultra and A4 SKUs the parser prices H200 and B200 machines from (names as the A3 ones).
NEW_GPU_SKUS = [
    _sku("A3Ultra Instance Core running in Americas", "OnDemand", 0, 30000000, regions=("us-central1",)),
    _sku("A3Ultra Instance Ram running in Americas", "OnDemand", 0, 2000000, regions=("us-central1",), unit="GiBy.h"),
    _sku("Nvidia H200 141GB GPU running in Americas", "OnDemand", 10, 500000000, regions=("us-central1",)),
]


@pytest.fixture(autouse=True)
def fresh_default_catalog():
    """default_catalog() is cached per process; each test here changes what it should read."""
    default_catalog.cache_clear()
    yield
    default_catalog.cache_clear()


class FakeBilling:
    """cloudbilling v1 services.skus.list, paged by `pageSize`, recording every request."""

    def __init__(self, skus: list[dict], status: int = 200):
        self.skus, self.status = skus, status
        self.requests: list[dict] = []

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                fake.requests.append({"path": url.path, "query": query, "headers": dict(self.headers)})
                if fake.status != 200:
                    return self._reply(fake.status, {"error": {"code": fake.status, "message": "The caller does not have permission", "status": "PERMISSION_DENIED"}})
                if url.path != f"/v1/services/{SERVICE}/skus":
                    return self._reply(404, {"error": {"code": 404, "message": f"no such path {url.path}", "status": "NOT_FOUND"}})
                size = int(query.get("pageSize", 5000))
                start = int(query.get("pageToken") or 0)
                page = {"skus": fake.skus[start:start + size]}
                if start + size < len(fake.skus):
                    page["nextPageToken"] = str(start + size)
                self._reply(200, page)

            def _reply(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def billing(monkeypatch):
    fakes = []

    def make(skus, status=200):
        fake = FakeBilling(skus, status)
        monkeypatch.setenv("BUDGETFT_BILLING_ENDPOINT", fake.start())
        fakes.append(fake)
        return fake

    yield make
    for fake in fakes:
        fake.stop()


# ----------------------------------------------------------------------------- age


def test_todays_bundled_catalogue_is_stale_and_says_how_to_fix_it():
    bundled = Catalog.load()
    assert catalog_age_days(bundled, date(2026, 12, 1)) == 548  # fetched 2025-06-01
    text = stale_catalog_warning(bundled, today=date(2026, 12, 1))
    assert "548 days old" in text and "fetched 2025-06-01" in text and f"older than {MAX_AGE_DAYS} days" in text
    assert "budgetft prices --refresh" in text and "--price-per-hour" in text


def test_fresh_or_undated_catalogues():
    fresh = Catalog(Catalog.load().rows, {"fetched": "2026-11-01", "version": "x"})
    assert stale_catalog_warning(fresh, today=date(2026, 12, 1)) is None
    assert stale_catalog_warning(fresh, today=date(2027, 1, 30)) is None  # 90 days: still fresh
    assert "91 days old" in stale_catalog_warning(fresh, today=date(2027, 1, 31))
    undated = Catalog(fresh.rows, {"fetched": "sometime"})
    assert "does not say when" in stale_catalog_warning(undated)


def test_commands_warn_about_old_prices():
    result = runner.invoke(app, ["prices", "--gpu", "h200"])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "days old" in result.output and "a3-ultragpu-8g" in result.output
    # `plan` and `run` warn before anything else when the price will come from the catalogue
    # (then stop here: this CPU machine has no catalogue price).
    for command in (["plan", "--budget", "1"], ["run", "--budget", "1"]):
        result = runner.invoke(app, command)
        assert "days old" in result.output and "budgetft prices --refresh" in result.output, command
    # A stated price needs no catalogue: no warning.
    result = runner.invoke(app, ["run", "--budget", "1", "--price-per-hour", "1", "--region", "mars-1"])
    assert result.exit_code == 2 and "days old" not in result.output
    assert "unknown region 'mars-1'" in result.output and "europe-west4" in result.output


# ----------------------------------------------------------------------------- refresh


def test_refresh_fetches_through_the_client_writes_the_cache_and_later_commands_use_it(billing):
    fake = billing(SAMPLE_SKUS + NEW_GPU_SKUS)
    from budgetft.cloud import billing as gcb

    gcb.PAGE_SIZE = 5  # several pages: the client must follow nextPageToken
    try:
        result = runner.invoke(app, ["prices", "--refresh", "--gpu", "v100"])
    finally:
        gcb.PAGE_SIZE = 5000
    assert result.exit_code == 0, result.output
    assert "refreshed:" in result.output and "warning:" not in result.output  # today's prices are not stale
    pages = [r for r in fake.requests if r["path"].endswith("/skus")]
    assert len(pages) == 4 and pages[0]["query"]["currencyCode"] == "USD" and pages[1]["query"]["pageToken"] == "5"
    path = cached_catalog_path()
    assert path.is_file() and "google-cloud-billing" in path.read_text()
    refreshed = newest_catalog()
    assert refreshed.fetched == date.today().isoformat()
    # The rows are the SKUs' prices: 8 x 0.031611 + 30 x 0.004237 + a V100, as parse_skus computes.
    assert refreshed.instance("n1-standard-8", "v100", disk_gb=0).usd_per_hour == Decimal("0.379998") + Decimal("2.48")
    h200 = refreshed.instance("a3-ultragpu-8g", disk_gb=0)  # 224 x 0.03 + 2952 x 0.002 + 8 x 10.5
    assert h200.usd_per_hour == Decimal("96.624000") and h200.gpu == "nvidia-h200-141gb"
    # What was printed is the refreshed catalogue, and the next command reads it too.
    today = f"prices of {date.today().isoformat()}"
    assert today in result.output and today in runner.invoke(app, ["prices"]).output
    assert default_catalog().fetched == refreshed.fetched


def test_an_older_refresh_does_not_shadow_a_newer_bundled_catalogue(tmp_path):
    from budgetft.money.billing_skus import parse_skus, render_csv
    from budgetft.money.catalog_store import write_cached_catalog

    write_cached_catalog(render_csv(parse_skus(SAMPLE_SKUS, ("us-central1",)), date(2024, 1, 1)))
    assert newest_catalog().fetched == Catalog.load().fetched  # the bundled one is newer
    write_cached_catalog(render_csv(parse_skus(SAMPLE_SKUS, ("us-central1",)), date(2026, 1, 1)))
    assert newest_catalog().fetched == "2026-01-01"
    cached_catalog_path().write_text("kind,name\n")  # broken: ignored, the bundled prices still work
    assert newest_catalog().fetched == Catalog.load().fetched


def test_refresh_without_credentials_names_the_fix(monkeypatch):
    monkeypatch.delenv("BUDGETFT_BILLING_ENDPOINT", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json")
    result = runner.invoke(app, ["prices", "--refresh"])
    assert result.exit_code == 2
    assert "no Google Cloud credentials" in result.output and "gcloud auth application-default login" in result.output
    assert "GOOGLE_API_KEY" in result.output and not cached_catalog_path().exists()


def test_refresh_refused_by_the_api_or_pricing_nothing_keeps_the_old_prices(billing):
    billing(SAMPLE_SKUS, status=403)
    result = runner.invoke(app, ["prices", "--refresh"])
    assert result.exit_code == 2 and "cloudbilling.googleapis.com" in result.output
    billing(SAMPLE_SKUS[-4:])  # only SKUs that price nothing budgetft knows
    result = runner.invoke(app, ["prices", "--refresh"])
    assert result.exit_code == 2 and "left as it was" in result.output
    assert not cached_catalog_path().exists()


def test_an_api_key_is_sent_instead_of_credentials(billing, monkeypatch):
    from budgetft.cloud.billing import fetch_skus

    fake = billing(NEW_GPU_SKUS)
    monkeypatch.setenv("GOOGLE_API_KEY", "test-key")
    assert len(fetch_skus()) == 3
    assert fake.requests[0]["headers"].get("x-goog-api-key") == "test-key"
