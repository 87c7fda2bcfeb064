"""The run's spend as trackers show it: the ledger's running total, and its sums by category.

Read by tracking's background threads, never by a paid step. The running total comes from the
ledger's last complete line (its `total_usd`), read from the file's tail: a ledger grows by a
line every few seconds, and reading all of it at every step would cost a trial's thread time
that grows with the run.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path

from budgetft.money.ledger import read_charges

TAIL_BYTES = 4096  # several ledger lines (one is ~250 bytes)


def spent_so_far(ledger: Path) -> float | None:
    """The ledger's running total in dollars (its last complete line), None without one."""
    try:
        with open(ledger, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - TAIL_BYTES))
            tail = fh.read()
    except OSError:
        return None
    for line in reversed(tail.split(b"\n")):
        if not line.strip():
            continue
        try:
            return float(json.loads(line)["total_usd"])
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line, or the cut first line of the tail
    return None


def spend_by_category(ledger: Path) -> dict[str, Decimal]:
    """Dollars by ledger category (training, evaluation, baselines, ...), and "total"."""
    if not ledger.exists():
        return {}
    totals: dict[str, Decimal] = {}
    for charge in read_charges(ledger):
        totals[charge.category] = totals.get(charge.category, Decimal(0)) + charge.amount
    totals["total"] = sum(totals.values(), start=Decimal(0))
    return totals
