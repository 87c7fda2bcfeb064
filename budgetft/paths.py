"""Where budgetft keeps things on disk."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(create: bool = True) -> Path:
    """Converted models and tokenized data. BUDGETFT_CACHE overrides ~/.cache/budgetft.
    create=False: only say where it is (a reader that finds nothing there writes nothing)."""
    root = os.environ.get("BUDGETFT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "budgetft"
    path = Path(root)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path
