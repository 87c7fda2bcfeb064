"""Which code a run ran: the git commit of the checkout budgetft was imported from, if any.

Recorded in run.json ("code") so that a result can be tied to the code that produced it
(benchmarks/results.md). An installed package, or a machine without git, records nothing.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]


def code_version() -> str | None:
    """`<short commit>`, with `+dirty` when budgetft/ has uncommitted edits; None outside a checkout."""
    if not (CHECKOUT / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(CHECKOUT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(CHECKOUT), "status", "--porcelain", "--", "budgetft"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if commit.returncode != 0:
        return None
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
