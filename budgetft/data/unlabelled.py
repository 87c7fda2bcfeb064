"""Rows without labels (data.unlabelled_split), for a method that labels rows itself (iPET:
budgetft.methods.ipet), checked and encoded as the job's other rows are, under every pattern.

They are kept apart from the evaluation split by content as well as by name: a row that is also
an evaluation row (the same prompt fields, up to case and whitespace) is dropped, since training
on it, under any label, would leak the selection and held-out test rows into the trial.

Nothing is read before a method needs it: the split's rows are loaded (and the evaluation rows
dropped) when a job lists a method that labels rows, or when a trial of one first counts them,
and encoded, through the tokenization cache, when a trial first scores them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from budgetft.data import DataError
from budgetft.data.encode import Encoded, cached_encode
from budgetft.data.patterns import attach
from budgetft.data.sources import load_unlabelled
from budgetft.spec import DataSpec, PromptSpec


def _normal(value: Any) -> str:
    """A field's text as rows are compared: case and runs of whitespace ignored (as
    budgetft.data.embedded matches BoolQ's rows across its files)."""
    return " ".join(str(value).split()).lower()


def _key(row: dict, fields: list[str]) -> tuple[str, ...]:
    return tuple(_normal(row.get(f)) for f in fields)


def apart_from(rows: list[dict], others: list[dict], fields: list[str]) -> list[dict]:
    """`rows` without those whose prompt fields are those of a row of `others` (up to case and
    whitespace)."""
    taken = {_key(r, fields) for r in others}
    return [r for r in rows if _key(r, fields) not in taken]


def keep_apart(rows: list[dict], eval_rows: list[dict], prompt: PromptSpec) -> tuple[list[dict], int]:
    """(the rows that are no evaluation row, how many were dropped as evaluation rows); every row
    must have every pattern's fields."""
    fields = prompt.fields
    for i, row in enumerate(rows):
        missing = [f for f in fields if row.get(f) is None]
        if missing:
            raise DataError(f"unlabelled row {i} has no field(s) {', '.join(map(repr, missing))} (its fields: {', '.join(map(str, row))}); "
                            "every pattern's fields must be in data.unlabelled_split's rows")
    kept = apart_from(rows, eval_rows, fields)
    return kept, len(rows) - len(kept)


@dataclass
class UnlabelledRows:
    """The job's unlabelled rows apart from its evaluation split: loaded when first counted
    (`len`, `rows`), encoded when first asked for (`encoded`: -1 for each label, every pattern to
    hand), through the tokenization cache (budgetft.data.encode.cached_encode)."""

    data: DataSpec
    eval_rows: list[dict]  # the whole evaluation split: selection, held-out test and the rest
    prompt: PromptSpec
    tokenizer: Any
    budget: int  # the most prompt tokens a row may have, as for the labelled rows
    fingerprint: str  # the tokenizer's, for the cache
    loaded: list[dict] | None = None  # the rows, once read and checked (apart from evaluation rows)
    dropped: int = 0  # rows dropped as evaluation rows
    _encoded: Encoded | None = field(default=None, repr=False)

    def rows(self) -> list[dict]:
        if self.loaded is None:
            self.loaded, self.dropped = keep_apart(load_unlabelled(self.data), self.eval_rows, self.prompt)
        return self.loaded

    def __len__(self) -> int:
        return len(self.rows())

    def encoded(self) -> Encoded | None:
        """The rows encoded (None when there are none)."""
        if self._encoded is None and self.rows():
            encoded, _ = cached_encode(self.rows(), self.prompt, None, self.tokenizer, self.budget, self.fingerprint)
            self._encoded = attach(encoded, self.rows(), self.prompt, self.tokenizer, self.budget, None, self.fingerprint)
        return self._encoded
