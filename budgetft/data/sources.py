"""Load the train and evaluation rows a job names: local file, hub data set or embedded copy."""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

from budgetft.data import DataError
from budgetft.data.embedded import EMBEDDED_DATA
from budgetft.hub import hub_reachable
from budgetft.spec import DataSpec

# Imported inside functions: datasets, pyarrow: importing this module must stay cheap (start-up
# time).

FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


@dataclass
class Splits:
    train: list[dict]
    eval: list[dict]
    origin: str  # where the rows came from, for reports
    # Where each split (train, eval) came from, when they differ: for messages about one split.
    split_origins: tuple[str, str] | None = None

    def origin_of(self, index: int) -> str:
        return self.split_origins[index] if self.split_origins else self.origin


def resolve_source(spec: DataSpec) -> str:
    if spec.source != "auto":
        return spec.source
    if spec.files or spec.name.lower().endswith(FILE_SUFFIXES) or Path(spec.name).exists():
        return "file"
    if spec.name in EMBEDDED_DATA and not hub_reachable():
        return "embedded"
    return "hub"


def load_splits(spec: DataSpec, seed: int = 0) -> Splits:
    """The train and evaluation rows. data.unlabelled_split's rows are read apart, and only for a
    method that labels rows itself (load_unlabelled; budgetft.data.unlabelled)."""
    return _labelled_splits(spec, seed)


def load_unlabelled(spec: DataSpec) -> list[dict]:
    """The rows of data.unlabelled_split, from where the job's other splits come from."""
    name, source = spec.unlabelled_split, resolve_source(spec)
    if source == "file":
        files = dict(spec.files or {})
        if name not in files:
            raise DataError(f"data.unlabelled_split {name!r} names no file in data.files ({', '.join(files) or 'none'}); add `{name}: <file>` to data.files")
        return read_rows(files[name])
    if source == "embedded":
        return EMBEDDED_DATA[spec.name](name)
    return _hub_split(spec, name)


def _labelled_splits(spec: DataSpec, seed: int = 0) -> Splits:
    source = resolve_source(spec)
    if source == "file":
        return _from_files(spec, seed)
    if source == "embedded":
        loader = EMBEDDED_DATA.get(spec.name)
        if loader is None:
            raise DataError(
                f"data.name {spec.name!r} has no embedded copy (embedded: {', '.join(EMBEDDED_DATA)}); "
                "use source: hub or a local file"
            )
        return Splits(loader(spec.train_split), loader(spec.eval_split), f"embedded:{spec.name}")
    return _from_hub(spec)


def _from_hub(spec: DataSpec) -> Splits:
    if not hub_reachable():
        raise DataError(
            f"data set {spec.name!r} needs the Hugging Face hub, which is not reachable from here "
            "(or HF_HUB_OFFLINE is set); give a local .jsonl/.csv/.parquet file as data.name instead"
        )
    return Splits(_hub_split(spec, spec.train_split), _hub_split(spec, spec.eval_split), f"hub:{spec.name}")


def _hub_split(spec: DataSpec, name: str) -> list[dict]:
    import datasets

    try:
        return datasets.load_dataset(spec.name, spec.subset, split=name).to_list()
    except ValueError as exc:  # unknown split names land here
        raise DataError(f"data set {spec.name!r}: cannot load split {name!r}: {exc}") from None


def _from_files(spec: DataSpec, seed: int) -> Splits:
    files = dict(spec.files or {spec.train_split: spec.name})
    if spec.train_split not in files:
        raise DataError(
            f"data.files names splits {sorted(files)} but not the train split {spec.train_split!r}; "
            "add it or set data.train_split"
        )
    train = read_rows(files[spec.train_split])
    if spec.eval_split in files:
        return Splits(
            train, read_rows(files[spec.eval_split]), f"file:{files[spec.train_split]}",
            (f"file:{files[spec.train_split]}", f"file:{files[spec.eval_split]}"),
        )
    # One file: hold out a seeded share of it for evaluation, so no row is in both.
    rows = list(train)
    random.Random(seed).shuffle(rows)
    n_eval = max(1, round(len(rows) * spec.eval_fraction)) if rows else 0
    return Splits(rows[n_eval:], rows[:n_eval], f"file:{files[spec.train_split]} (held out {spec.eval_fraction:.0%})")


def _json_lines(text: str, path: Path) -> list:
    """One JSON value per line; a bad line is named by its line number in the file."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(f"data file {path}, line {number}, column {exc.colno}: not valid JSON ({exc.msg}); fix or remove that line") from None
    return rows


def read_rows(path_text: str) -> list[dict]:
    path = Path(path_text).expanduser()
    if path.is_dir():
        raise DataError(f"data file {path} is a directory; give one .jsonl/.csv/.parquet file (data.name, or data.files per split)")
    if not path.is_file():
        raise DataError(f"data file not found: {path}; check data.name / data.files in the job (paths are relative to {Path.cwd()})")
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise DataError(f"data file {path}: unsupported type {suffix!r}; use one of {', '.join(FILE_SUFFIXES)}")
    try:
        if suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as fh:
                return list(csv.DictReader(fh))
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        text = path.read_text(encoding="utf-8")
        if suffix == ".json" and text.lstrip().startswith("["):
            rows = json.loads(text)
        else:
            rows = _json_lines(text, path)
    except (json.JSONDecodeError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"data file {path} could not be parsed: {exc}") from None
    except DataError:
        raise  # already names the file, the line and the fix
    except Exception as exc:  # pyarrow raises its own error types
        raise DataError(f"data file {path} could not be read: {exc}") from None
    if rows and not all(isinstance(r, dict) for r in rows):
        raise DataError(f"data file {path}: every row must be an object of fields")
    return rows
