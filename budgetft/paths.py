"""Where budgetft keeps things on disk."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """Converted models and tokenized data. BUDGETFT_CACHE overrides ~/.cache/budgetft."""
    root = os.environ.get("BUDGETFT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "budgetft"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
