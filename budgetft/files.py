"""Files written whole or not at all, and JSON read and written that way.

Every file budgetft replaces while something may read it (a report on a live run, a resumed run,
another trial sharing a cache, a VM's copy of the ledger) is written by `atomic_write`: into a
temporary file in the same directory, flushed, fsynced when it must survive a crash, then renamed
over the target. A reader sees the old file or the new one, never half of either; a writer that
fails or is killed leaves only its temporary file, which is removed where it can be.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable


def atomic_write(path: Path | str, write: Callable[[IO[bytes]], Any], durable: bool = True) -> Path:
    """Replace `path` by what `write(binary file)` writes. durable: fsync the file before the
    rename (a record that must survive a power cut); a cache that can be computed again skips it.
    Raises what `write` or the disk raises (OSError "No space left on device" included), with
    the target untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
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
