"""Files written whole or not at all, and JSON read and written that way.

Every file budgetft replaces while something may read it (a report on a live run, a resumed run,
another trial sharing a cache, a VM's copy of the ledger) is written by `atomic_write`: into a
temporary file in the same directory, flushed, fsynced when it must survive a crash, then renamed
over the target. A reader sees the old file or the new one, never half of either; a writer that
fails or is killed leaves only its temporary file, which is removed where it can be. A full disk
(or quota) is raised as budgetft.disk.DiskFull, naming the file and the free space.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

from budgetft.disk import as_disk_full, fault_seam


def atomic_write(path: Path | str, write: Callable[[IO[bytes]], Any], durable: bool = True) -> Path:
    """Replace `path` by what `write(binary file)` writes. durable: fsync the file before the
    rename (a record that must survive a power cut); a cache that can be computed again skips it.
    Raises what `write` or the disk raises (a full disk as DiskFull), with the target untouched."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fault_seam(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise as_disk_full(exc, path.parent, path.name) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise as_disk_full(exc, path.parent, path.name) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_dir(path: Path | str, write: Callable[[Path], Any], what: str = "") -> Path:
    """Replace the directory `path` by what `write(folder)` writes into a new folder beside it:
    the old directory stays whole until the new one is (a trial's kept weights, overwritten at
    each better evaluation, survive a full disk or a kill mid-write). A full disk is raised as
    DiskFull (so is a library's own "No space left on device" error), the old directory kept."""
    path = Path(path)
    fresh, old = path.with_name(f".{path.name}.new"), path.with_name(f".{path.name}.old")
    shutil.rmtree(fresh, ignore_errors=True)
    try:
        fault_seam(fresh)
        write(fresh)
    except Exception as exc:
        shutil.rmtree(fresh, ignore_errors=True)
        raise as_disk_full(exc, path.parent, what or path.name) from None
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)  # the only moment without `path`: two renames, no copying
    os.replace(fresh, path)
    shutil.rmtree(old, ignore_errors=True)
    return path


def write_text(path: Path | str, text: str, durable: bool = True) -> Path:
    """`text` as UTF-8, atomically (atomic_write)."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda fh: fh.write(data), durable)


def write_json(path: Path | str, data: Any) -> Path:
    """`data` as indented JSON, atomically and durably: readers never see half a record. A
    pydantic model is written as its JSON dump; other objects json cannot encode, as text."""
    if hasattr(data, "model_dump"):
        data = data.model_dump(mode="json")
    return write_text(path, json.dumps(data, indent=2, default=str))


def read_json(path: Path | str, default: Any = None) -> Any:
    """The JSON document at `path`, or `default` when there is no such file."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
