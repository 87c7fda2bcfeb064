"""One live driver per run directory.

A driver holds an exclusive `flock` on `<run>/driver.lock` for as long as it lives. The kernel
drops the lock when the process ends, however it ends (a kill -9 or a power cut included), so a
lock is never left behind and nothing has to guess whether an old lock is stale. The file holds
its owner (PID, host, start time), written once the lock is held, so that a second driver is
refused at once with a line naming the first.

Why it matters: two drivers on one directory both pay the meter for the same seconds, both
number their trials from the same t00N, mark each other's live trial "interrupted", and leave
whichever report was written last (issue 27).

The lock file stays in the directory after its owner ends (only the flock matters, never the
file's presence): removing it would let a third driver lock a new file while a second still
holds the old one.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

LOCK_FILE = "driver.lock"


class RunDirBusy(ValueError):
    """The run directory is held by another live driver; the message names it and the fix."""


class RunDirUnwritable(ValueError):
    """The run directory cannot be created or written; the message names the fix."""


def describe_owner(owner: dict | None) -> str:
    """'PID 1234 on host, since 21:03:15 UTC', or what is known of it."""
    if not owner or "pid" not in owner:
        return "a process that has not written its PID yet"
    since = time.strftime("%H:%M:%S UTC", time.gmtime(owner["started"])) if owner.get("started") else None
    return f"PID {owner['pid']}" + (f" on {owner['host']}" if owner.get("host") else "") + (f", since {since}" if since else "")


class RunLock:
    """The lock of one run directory, held from acquire() to release() (or the process's end)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.path = self.root / LOCK_FILE
        self._fd = -1
        self._created: list[Path] = []  # directories acquire() made, removed by release(clean=True)

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def acquire(self, resuming: bool = False) -> "RunLock":
        """Take the lock, creating the directory if needed (which also proves that it can be
        written, before any work). Raises RunDirBusy naming the live owner, or RunDirUnwritable."""
        if self.held:
            return self
        if self.root.exists() and not self.root.is_dir():
            raise RunDirUnwritable(f"--out {self.root} is a file, not a directory; give a new directory for the run's files")
        try:
            self._created = _make_dirs(self.root)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise RunDirUnwritable(
                f"{self.root} cannot be written ({why}): a run continues where it was written; make it writable, "
                "or copy it somewhere writable and resume the copy" if resuming
                else f"--out {self.root} cannot be written ({why}): give a directory you can write to"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            pid = (owner or {}).get("pid")
            stop = f"stop it (kill -INT {pid}, or Ctrl-C in its terminal) and then " if pid else "stop it and then "
            fix = (f"wait for it to finish, or {stop}continue with `budgetft run --resume {self.root}`" if resuming
                   else "choose another --out, or wait for it and continue it with --resume")
            raise RunDirBusy(f"{self.root} is in use by a running budgetft driver ({describe_owner(owner)}): {fix}; "
                             "a second driver on one run would pay for the same seconds twice") from None
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "argv": sys.argv[1:]}
        data = (json.dumps(owner) + "\n").encode("utf-8")
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
        except OSError:
            pass  # the lock is what counts; the owner's name is a courtesy (a full disk may refuse it)
        self._fd = fd
        return self

    def release(self, clean: bool = False) -> None:
        """Let go of the lock. clean: also remove what acquire() created when nothing else was
        written there (a run refused before it began leaves no trace)."""
        if not self.held:
            return
        fd, self._fd = self._fd, -1
        if clean and self._created and all(p.name == LOCK_FILE for p in self.root.iterdir()):
            self.path.unlink(missing_ok=True)
            for folder in reversed(self._created):
                try:
                    folder.rmdir()
                except OSError:
                    break
        os.close(fd)  # closing drops the flock

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def owner_of(root: Path | str) -> dict | None:
    """The live driver holding `root`, or None when no live process holds it."""
    path = Path(root) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_owner(fd) or {}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_owner(fd: int) -> dict | None:
    try:
        data = os.pread(fd, 4096, 0)
        owner = json.loads(data.decode("utf-8")) if data.strip() else None
        return owner if isinstance(owner, dict) else None
    except (OSError, ValueError):
        return None


def _make_dirs(root: Path) -> list[Path]:
    """mkdir -p `root`; returns the directories it created, outermost first."""
    missing = []
    folder = root
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    root.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))
