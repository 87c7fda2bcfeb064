"""A full disk, as one error that says what to do.

Every write a run makes can meet a full disk (ENOSPC) or a full quota (EDQUOT): a record
(budgetft.files), a ledger line (budgetft.money.ledger), a trial's weights. Each turns it into
DiskFull, which names the directory, the free space and the fix, so that the run stops with one
clear line and its own exit code instead of a trial failing after another (issue 27). DiskFull
is an OSError with errno ENOSPC: code that already handles OSError still does.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
MIB = 1024 * 1024
DISK_FULL_WORDS = "the disk is full"  # how every DiskFull message about a failed write begins


class DiskFull(OSError):
    """No room left where the run writes. str() is the message a user reads."""

    def __init__(self, where: Path | str, what: str = "", needed: int | None = None, free: int | None = None, reason: str | None = None):
        self.where = Path(where)
        self.what, self.reason = what, reason
        self.free = free_bytes(self.where) if free is None else free
        self.needed = needed
        need = f"; about {size_text(needed)} needed" if needed else ""
        head = reason or (DISK_FULL_WORDS + (f" (writing {what})" if what else ""))
        self.message = f"{head}: {size_text(self.free)} free under {self.where}{need}"
        super().__init__(errno.ENOSPC, self.message)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # raised in a Ray worker, read in the driver: pickled by its fields
        return (type(self), (self.where, self.what, self.needed, self.free, self.reason))


# How libraries that do not raise OSError say it (safetensors' Rust writer: "... (os error 28)").
DISK_FULL_TEXTS = ("No space left on device", "Disk quota exceeded", "os error 28", "os error 122")


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, DiskFull) or (isinstance(exc, OSError) and exc.errno in DISK_ERRNOS):
        return True
    return isinstance(exc, Exception) and not isinstance(exc, OSError) and any(t in str(exc) for t in DISK_FULL_TEXTS)


def as_disk_full(exc: BaseException, where: Path | str, what: str = "") -> BaseException:
    """`exc` as DiskFull when the disk (or quota) is full, else `exc` itself."""
    if isinstance(exc, DiskFull) or not is_disk_full(exc):
        return exc
    return DiskFull(where, what)


def free_bytes(path: Path | str) -> int:
    """Free bytes for an unprivileged writer on the filesystem holding `path` (or its nearest
    existing parent, for a directory not made yet)."""
    path = Path(path).absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    try:
        return int(shutil.disk_usage(path).free)
    except OSError:
        return 0


def size_text(n: int | float | None) -> str:
    if n is None:
        return "an unknown amount"
    n = float(n)
    if n >= 1024 * MIB:
        return f"{n / (1024 * MIB):.1f} GiB"
    if n >= MIB:
        return f"{n / MIB:.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.0f} KiB"
    return f"{n:.0f} bytes"


def fault_seam(where: Path | str) -> None:
    """Fail as a full disk does (OSError ENOSPC) when BUDGETFT_DISK_FULL names `where` or one
    of its parents: the tests' and benchmarks' way to meet a full disk without mounting one."""
    target = os.environ.get("BUDGETFT_DISK_FULL")
    if not target:
        return
    path, full = Path(where).absolute(), Path(target).absolute()
    if path == full or full in path.parents:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(where))
