"""A split's rows under each of the job's prompt patterns (prompt.template, then prompt.patterns),
for the methods that train or score with several wordings of the prompt (PET: budgetft.methods.pet).

Row i of every pattern's encoding is row i of the split, with the same label, so one row index
picks the same example in each. Encoded on first use: a job may list patterns that none of the
trials of a run uses, and encoding BoolQ's 9,427 training rows takes ~4 s a pattern on 2 cores.
Labelled rows go through the tokenization cache (budgetft.data.encode.cached_encode) like the
template's, so the next trial of the run reads them from disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from budgetft.data import DataError
from budgetft.data.encode import Encoded, _tokenize, cached_encode, encode_prompts, render
from budgetft.spec import PromptSpec, pattern_name, template_fields


def pattern_prompt(prompt: PromptSpec, index: int) -> PromptSpec:
    """The prompt spec of pattern `index` alone (0: the template): its template, the same label
    words, truncate field and length."""
    return prompt.model_copy(update={"template": prompt.templates[index], "patterns": []})


@dataclass
class PatternEncodings:
    """The rows of one Encoded (get(0)) under every pattern, each encoded when first asked for."""

    rows: list[dict]
    prompt: PromptSpec
    label_field: str | None  # None: rows without labels (budgetft predict, data.unlabelled_split)
    tokenizer: Any
    budget: int  # the most prompt tokens a row may have, as for the template
    fingerprint: str | None  # the tokenizer's, for the cache; None: no cache (budgetft predict)
    done: dict[int, Encoded] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.prompt.templates)

    def get(self, index: int) -> Encoded:
        if not 0 <= index < len(self):
            raise IndexError(f"prompt pattern {index} asked for; the job has {len(self)} (prompt.template and {len(self) - 1} prompt.patterns)")
        if index not in self.done:
            one = pattern_prompt(self.prompt, index)
            if self.fingerprint is None:
                prompts, truncated = encode_prompts(self.rows, one, self.tokenizer, self.budget)
                self.done[index] = Encoded(prompts, np.asarray(self.done[0].labels), truncated)
            else:
                self.done[index] = cached_encode(self.rows, one, self.label_field, self.tokenizer, self.budget, self.fingerprint)[0]
        return self.done[index]


def check_fits(prompt: PromptSpec, tokenizer: Any, budget: int) -> None:
    """Refuse, before anything is spent, a prompt pattern whose own words (every field empty) take
    more than the `budget` prompt tokens that fit in prompt.max_length: no row could be shortened
    to fit it. Encoding finds this too, but only when a trial first asks for the pattern, mid-run."""
    for i, template in enumerate(prompt.templates):
        empty = {f: "" for f in template_fields(template, pattern_name(i))}
        tokens = len(_tokenize(tokenizer, [render(template, empty)])[0])
        if tokens > budget:
            raise DataError(
                f"{pattern_name(i)} has {tokens} tokens of its own (every field empty), over the {budget} prompt tokens "
                f"that fit in prompt.max_length={prompt.max_length} with the longest label word; shorten the pattern or raise prompt.max_length"
            )


def attach(encoded: Encoded, rows: list[dict], prompt: PromptSpec, tokenizer: Any, budget: int,
           label_field: str | None = None, fingerprint: str | None = None) -> Encoded:
    """`encoded` (the rows under the template) with its other patterns' encodings to hand, when the
    job has more than one pattern; as it is otherwise."""
    if prompt.patterns:
        encoded.patterns = PatternEncodings(list(rows), prompt, label_field, tokenizer, budget, fingerprint, {0: encoded})
    return encoded


@dataclass
class DerivedPatterns:
    """Rows made from other encodings' rows (a sample of them, or two joined: e.g. the rows a model
    labelled, budgetft.scoring.pseudo_labels), under every pattern of the rows they were made
    from: pattern `index`'s encoding is `build(index)`, made when first asked for."""

    count: int
    build: Callable[[int], Encoded]
    done: dict[int, Encoded] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.count

    def get(self, index: int) -> Encoded:
        if index not in self.done:
            self.done[index] = self.build(index)
        return self.done[index]


def _take(encoded: Encoded, picked: np.ndarray) -> Encoded:
    # `truncated` stays the whole's count: which of its rows were shortened is not kept.
    return Encoded([encoded.prompts[i] for i in picked], np.asarray(encoded.labels)[picked], encoded.truncated)


def subset(encoded: Encoded, picked: np.ndarray) -> Encoded:
    """The rows of `encoded` at `picked`, in that order, with every pattern's encoding to hand
    when `encoded` has them."""
    picked = np.asarray(picked, dtype=np.int64)
    out = _take(encoded, picked)
    if encoded.patterns is not None:
        out.patterns = DerivedPatterns(len(encoded.patterns), lambda i: _take(encoded.patterns.get(i), picked), {0: out})
    return out


def _concat(first: Encoded, second: Encoded, picked: np.ndarray, labels: np.ndarray) -> Encoded:
    # `truncated` counts the first's rows only: the second's count is of all its rows, not of those picked.
    prompts = list(first.prompts) + [second.prompts[i] for i in picked]
    return Encoded(prompts, np.concatenate([first.labels, np.asarray(labels, dtype=np.int64)]), first.truncated)


def joined(first: Encoded, second: Encoded, picked: np.ndarray, labels: np.ndarray) -> Encoded:
    """`first`'s rows, then `second`'s rows at `picked` labelled `labels`, with every pattern's
    encoding to hand when `first` has them (`second` must then have the same patterns)."""
    picked, labels = np.asarray(picked), np.asarray(labels)
    out = _concat(first, second, picked, labels)
    if first.patterns is not None:
        out.patterns = DerivedPatterns(len(first.patterns), lambda i: _concat(first.patterns.get(i), second.patterns.get(i), picked, labels), {0: out})
    return out
