"""Now, in UTC, as every budgetft record writes it: ISO 8601 with a Z, e.g. 2026-12-01T06:00:00Z."""

from __future__ import annotations

from datetime import datetime, timezone


def utc_now(timespec: str = "seconds") -> str:
    """`timespec` as datetime.isoformat takes it: seconds for records, milliseconds for
    telemetry samples, microseconds for ledger lines."""
    return datetime.now(timezone.utc).isoformat(timespec=timespec).replace("+00:00", "Z")
