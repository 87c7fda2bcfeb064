"""Rows for `budgetft predict`: a JSONL, JSON, CSV or Parquet file with the job's fields (read by
the same reader as the job's data), or standard input, as JSON lines or, for a template with one
field, plain text, one row a line.

Everything is checked here, before the model loads: the file exists and has a type we read,
there is at least one row, and every row has every field the job's template uses.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from budgetft.data import DataError
from budgetft.data.sources import FILE_SUFFIXES, read_rows
from budgetft.use import UseError

STDIN = "-"
TEXT_SUFFIXES = (".txt",)


@dataclass
class InputRows:
    rows: list[dict]
    origin: str  # the file, or "standard input"


def read_input(source: str | None, fields: list[str], stdin: IO[str] | None = None) -> InputRows:
    """The rows to score from `source` (a path, "-" or None for standard input), checked
    against the template's `fields`."""
    if source in (None, STDIN):
        stream = stdin if stdin is not None else sys.stdin
        if stream.isatty():
            raise UseError(
                "no rows to score: give a FILE (.jsonl, .json, .csv or .parquet with the fields "
                f"{', '.join(fields)}), or pipe rows into standard input, e.g. `cat rows.jsonl | budgetft predict RUN_DIR -`"
            )
        found = InputRows(_lines(stream.read(), fields, "standard input"), "standard input")
    else:
        found = InputRows(_file_rows(Path(source).expanduser(), fields), str(source))
    if not found.rows:
        raise UseError(f"{found.origin} holds no rows; give one row per line (or per CSV record)")
    check_fields(found, fields)
    return found


def _file_rows(path: Path, fields: list[str]) -> list[dict]:
    if path.is_dir():
        raise UseError(f"{path} is a directory; give one file of rows")
    if not path.is_file():
        raise UseError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return _lines(path.read_text(encoding="utf-8"), fields, str(path))
    if suffix not in FILE_SUFFIXES:
        valid = ", ".join([*FILE_SUFFIXES, *TEXT_SUFFIXES])
        raise UseError(f"{path}: budgetft predict reads {valid} files, not {suffix or 'files without a suffix'}; "
                       "convert it, or pipe JSON lines into standard input with FILE set to -")
    try:
        return read_rows(str(path))
    except DataError as exc:
        raise UseError(str(exc)) from None


def _lines(text: str, fields: list[str], origin: str) -> list[dict]:
    """JSON lines (every non-empty line an object), or with a one-field template, plain text."""
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = [_json_object(line) for line in lines]
    if lines and all(p is not None for p in parsed):
        return parsed  # type: ignore[return-value]
    if len(fields) == 1:
        return [{fields[0]: line} for line in lines]
    bad = next((i for i, p in enumerate(parsed) if p is None), 0)
    raise UseError(
        f"{origin}, line {bad + 1}: not a JSON object; the job's template uses {len(fields)} fields "
        f"({', '.join(fields)}), so each line must be an object with them, e.g. "
        + json.dumps({f: "..." for f in fields})
        + " (plain text lines work only for a template with one field)"
    )


def _json_object(line: str) -> dict | None:
    if not line.lstrip().startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def check_fields(found: InputRows, fields: list[str]) -> None:
    for i, row in enumerate(found.rows):
        missing = [f for f in fields if row.get(f) is None]
        if missing:
            have = ", ".join(map(str, row)) or "none"
            raise UseError(
                f"{found.origin}, row {i + 1}: no field {', '.join(map(repr, missing))} (its fields: {have}); "
                f"the job's template needs {', '.join(fields)}: add the field, or rename a column to it"
            )
