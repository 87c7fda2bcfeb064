"""What a data file holds, as `budgetft init` needs to know it: its fields, which of them are
text, which one is the label, and whether the file can train a classifier at all.

A field is text when nearly every row has a string there that reads like prose (spaces, or a
dozen characters and more) and the strings mostly differ: a review, a passage, a question. The
label is the field `--label` names or, failing that, the first of the usual names (LABEL_NAMES)
that is not text, or else the one non-text field with a few repeated values. A file that cannot
train a classifier is refused with a DataError that names why and the fix: no rows, too few
labelled rows, no text field, no label field, a label with one class, or with too many values to
be classes (a score or an id).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from budgetft.data import DataError
from budgetft.data.sources import read_rows
from budgetft.spec import label_key

# The names a label field usually goes by, in the order they are looked for.
LABEL_NAMES = ("label", "labels", "answer", "target", "class", "category", "sentiment", "polarity", "stance", "intent", "topic", "y", "gold")
# Fields that say which split a row belongs to, and the split names they may hold.
SPLIT_NAMES = ("split", "set", "fold", "partition")
TRAIN_SPLITS = ("train", "training")
EVAL_SPLITS = ("validation", "valid", "val", "dev", "eval", "evaluation", "test")
ID_NAMES = ("id", "idx", "uuid", "guid", "index", "key")
# A classifier's classes are few: each needs a label word a model scores, and rows to learn from.
# More distinct values than this is a score, an id or free text, not a set of classes.
MAX_CLASSES = 50
MIN_ROWS = 20  # labelled rows: fewer cannot be split into rows to train on and rows to evaluate on
TEXT_SHARE = 0.9  # of a field's rows that must hold a string for it to be text
TEXT_MIN_CHARS = 12  # mean length of a text field's values, unless most contain spaces
TEXT_DISTINCT = 0.3  # a text field's distinct values per row: below it, it is a category
# Fields are profiled on a seeded sample of this many rows (a file sorted by label is sampled
# across its classes all the same); class counts are always taken over every row.
PROFILE_ROWS = 5000


@dataclass
class FieldProfile:
    name: str
    present: int = 0  # rows with a value (not null, not "")
    strings: int = 0
    numbers: int = 0
    booleans: int = 0
    chars: int = 0  # total length of its string values
    spaced: int = 0  # string values with whitespace inside
    counts: Counter = field(default_factory=Counter)  # value (label_key) -> rows of the sample

    @property
    def distinct(self) -> int:
        return len(self.counts)

    @property
    def mean_chars(self) -> float:
        return self.chars / self.strings if self.strings else 0.0

    @property
    def is_text(self) -> bool:
        if not self.present or self.strings < TEXT_SHARE * self.present:
            return False
        prose = self.spaced >= 0.5 * self.strings or self.mean_chars >= TEXT_MIN_CHARS
        return prose and self.distinct >= TEXT_DISTINCT * self.present

    @property
    def is_id(self) -> bool:
        return self.name.lower() in ID_NAMES or (self.present > 1 and self.distinct == self.present and not self.is_text)


@dataclass
class DataProfile:
    path: Path
    rows: list[dict]
    fields: dict[str, FieldProfile]

    def text_fields(self, exclude: tuple[str, ...] = ()) -> list[str]:
        """Text fields, the longest first (a passage before its question)."""
        found = [f for f in self.fields.values() if f.is_text and f.name not in exclude]
        return [f.name for f in sorted(found, key=lambda f: -f.mean_chars)]

    def split_field(self) -> str | None:
        """A field saying which split each row is in (train, validation, test, ...), if any."""
        for f in self.fields.values():
            values = {str(v).lower() for v in f.counts}
            if f.name.lower() in SPLIT_NAMES and values and values <= set(TRAIN_SPLITS + EVAL_SPLITS) and values & set(TRAIN_SPLITS):
                return f.name
        return None


def profile_file(path: Path | str) -> DataProfile:
    """Read a JSONL/JSON/CSV/Parquet file and profile every field."""
    path = Path(path)
    rows = read_rows(str(path))
    if not rows:
        raise DataError(f"{path} holds no rows; give a file with one row per example (JSONL, CSV or Parquet)")
    fields: dict[str, FieldProfile] = {name: FieldProfile(name) for name in rows[0]}  # in the file's order
    sample = rows if len(rows) <= PROFILE_ROWS else random.Random(0).sample(rows, PROFILE_ROWS)
    for row in sample:
        for name, value in row.items():
            profile = fields.setdefault(name, FieldProfile(name))
            if value is None or value == "":
                continue
            profile.present += 1
            if isinstance(value, bool):
                profile.booleans += 1
            elif isinstance(value, (int, float)):
                profile.numbers += 1
            elif isinstance(value, str):
                profile.strings += 1
                profile.chars += len(value)
                profile.spaced += any(c.isspace() for c in value.strip())
            profile.counts[label_key(value) if isinstance(value, (str, bool, int, float)) else repr(value)[:200]] += 1
    return DataProfile(path, rows, fields)


def find_label(profile: DataProfile, wanted: str | None = None) -> str:
    """The label field: `wanted` if given, else the one the file's names and values point to."""
    names = list(profile.fields)
    if wanted is not None:
        if wanted not in profile.fields:
            raise DataError(f"--label {wanted!r}: {profile.path} has no such field; its fields: {', '.join(names)}")
        return wanted
    split = profile.split_field()
    named = [f for f in profile.fields.values() if f.name != split and not f.is_text]
    for name in LABEL_NAMES:  # by its name (an empty one too: the check then says it is empty)
        for f in named:
            if f.name.lower() == name:
                return f.name
    candidates = [f for f in named if 2 <= f.distinct <= MAX_CLASSES and not f.is_id]
    if candidates:  # a yes/no field first, then the one with fewest values (labels are few)
        return min(candidates, key=lambda f: (f.booleans < f.present, f.distinct, -names.index(f.name))).name
    raise DataError(
        f"{profile.path}: no field looks like a label (a field with 2 to {MAX_CLASSES} values repeated across rows; "
        f"fields: {', '.join(names)}); name it with --label FIELD"
    )


def check_usable(profile: DataProfile, label: str) -> tuple[list[str], Counter]:
    """(the text fields, the class counts) of a file that can train a classifier on `label`;
    DataError with the reason and the fix otherwise."""
    where = profile.path
    info = profile.fields[label]
    counts = Counter(label_key(r[label]) for r in profile.rows if r.get(label) not in (None, ""))
    labelled = sum(counts.values())
    if labelled == 0:
        raise DataError(f"{where}: no row has a value in the label field {label!r}; name the field that holds the labels with --label")
    if info.is_text or len(counts) > MAX_CLASSES:
        kind = "numbers (a score to predict, not classes)" if info.numbers >= 0.9 * info.present else "values"
        raise DataError(
            f"{where}: the label field {label!r} has {len(counts):,} different {kind} across {labelled:,} rows; a classifier needs "
            f"2 to {MAX_CLASSES} classes, each on many rows: name another field with --label, or map these values to a few classes first"
        )
    if len(counts) < 2:
        only, n = next(iter(counts.items()))
        raise DataError(f"{where}: the label field {label!r} has one class only ({only!r}, {n:,} rows); a classifier needs rows of two or more classes to learn from")
    if labelled < MIN_ROWS:
        raise DataError(f"{where}: only {labelled} rows have a label; budgetft needs at least {MIN_ROWS} (rows to train on, and rows to evaluate on that training never sees)")
    texts = profile.text_fields(exclude=(label, profile.split_field() or ""))
    if not texts:
        shown = ", ".join(f"{f.name} ({_kind(f)})" for f in profile.fields.values() if f.name != label)
        raise DataError(
            f"{where}: no text field to classify (its other fields: {shown or 'none'}); budgetft fine-tunes language models on text: "
            "add a column with each example's text"
        )
    return texts, counts


def _kind(f: FieldProfile) -> str:
    if f.booleans >= f.present > 0:
        return "true/false"
    if f.numbers >= 0.9 * f.present > 0:
        return "numbers"
    if f.strings:
        return f"short text, {f.distinct} values" if f.distinct < TEXT_DISTINCT * f.present else "short codes"
    return "empty" if not f.present else "other values"
