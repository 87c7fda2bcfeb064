"""Rows without labels (data.unlabelled_split), for a method that labels rows itself (iPET:
budgetft.methods.ipet), checked and encoded as the job's other rows are, under every pattern.

They are kept apart from the evaluation split by content as well as by name: a row that is also
an evaluation row (same prompt fields) is dropped, since training on it, under any label, would
leak the selection and held-out test rows into the trial.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from budgetft.data import DataError
from budgetft.data.encode import Encoded, encode_prompts
from budgetft.data.patterns import attach
from budgetft.spec import PromptSpec


def _key(row: dict, fields: list[str]) -> tuple[str, ...]:
    return tuple(str(row.get(f)).strip() for f in fields)


def apart_from(rows: list[dict], others: list[dict], fields: list[str]) -> list[dict]:
    """`rows` without those whose prompt fields are those of a row of `others`."""
    taken = {_key(r, fields) for r in others}
    return [r for r in rows if _key(r, fields) not in taken]


def encode_unlabelled(rows: list[dict], eval_rows: list[dict], prompt: PromptSpec, tokenizer: Any, budget: int) -> tuple[Encoded | None, int]:
    """(the unlabelled rows encoded, with every pattern to hand and -1 for each label; None when
    there are none), and how many were dropped as evaluation rows."""
    if not rows:
        return None, 0
    fields = prompt.fields
    for i, row in enumerate(rows):
        missing = [f for f in fields if row.get(f) is None]
        if missing:
            raise DataError(f"unlabelled row {i} has no field(s) {', '.join(map(repr, missing))} (its fields: {', '.join(map(str, row))}); "
                            "every pattern's fields must be in data.unlabelled_split's rows")
    kept = apart_from(rows, eval_rows, fields)
    if not kept:
        return None, len(rows)
    prompts, truncated = encode_prompts(kept, prompt, tokenizer, budget)
    encoded = Encoded(prompts, np.full(len(kept), -1, dtype=np.int64), truncated)
    return attach(encoded, kept, prompt, tokenizer, budget), len(rows) - len(kept)
