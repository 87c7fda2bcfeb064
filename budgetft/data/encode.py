"""Render prompts and tokenize them once, with an on-disk cache.

A row too long for max_length loses words from the end of its truncate field (the passage),
never from the question, the template or the answer slot.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from budgetft.data import DataError
from budgetft.data.checks import class_lookup, class_of
from budgetft.paths import cache_root
from budgetft.spec import PromptSpec, template_fields
from budgetft.files import atomic_write

CACHE_VERSION = 1


@dataclass
class Encoded:
    """Token ids of each row's prompt (without the label word) and its class index."""

    prompts: list[np.ndarray]
    labels: np.ndarray
    truncated: int  # rows whose truncate field was shortened
    # The same rows under each of the job's prompt patterns, the template first (budgetft.data.
    # patterns.PatternEncodings, encoded on first use); None where the job has one pattern, or
    # where this is itself one pattern's encoding.
    patterns: Any = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(p) for p in self.prompts), dtype=np.int64, count=len(self.prompts))


def render(template: str, row: dict) -> str:
    return template.format_map({k: str(v) for k, v in row.items()})


def _tokenize(tokenizer, texts: list[str]) -> list[list[int]]:
    out = tokenizer(texts, add_special_tokens=True)["input_ids"]
    eos = tokenizer.eos_token_id
    # Some tokenizers append EOS; the label word must follow the prompt directly.
    return [ids[:-1] if eos is not None and ids and ids[-1] == eos and len(ids) > 1 else ids for ids in out]


def encode_rows(rows: list[dict], prompt: PromptSpec, label_field: str | None, tokenizer, budget: int) -> Encoded:
    """budget: the most prompt tokens a row may have (max_length minus the longest label).
    label_field None: rows without labels (data.unlabelled_split), -1 for each."""
    if label_field is None:
        labels = np.full(len(rows), -1, dtype=np.int64)
    else:
        lookup = class_lookup(prompt.labels)
        labels = np.array([class_of(r[label_field], lookup) for r in rows], dtype=np.int64)
    prompts, truncated = encode_prompts(rows, prompt, tokenizer, budget)
    return Encoded(prompts, labels, truncated)


def encode_prompts(rows: list[dict], prompt: PromptSpec, tokenizer, budget: int) -> tuple[list[np.ndarray], int]:
    """Each row's prompt token ids, no label needed (training, evaluation and `budgetft predict`
    all encode through here), and how many rows had their truncate field shortened."""
    ids = _tokenize(tokenizer, [render(prompt.template, r) for r in rows])
    truncated = 0
    for i, tokens in enumerate(ids):
        if len(tokens) > budget:
            ids[i] = _fit(rows[i], prompt, tokenizer, budget, len(tokens))
            truncated += 1
    return [np.asarray(t, dtype=np.int32) for t in ids], truncated


def _fit(row: dict, prompt: PromptSpec, tokenizer, budget: int, length: int) -> list[int]:
    field = prompt.truncate_field
    if field is None:
        raise DataError(
            f"a row has {length} prompt tokens, over the {budget} that fit in prompt.max_length={prompt.max_length}; "
            "set prompt.truncate_field to the long field (e.g. passage) or raise prompt.max_length"
        )
    field_ids = tokenizer(str(row[field]), add_special_tokens=False)["input_ids"]
    keep = len(field_ids) - (length - budget)
    # Re-tokenising the shortened text can merge or split tokens at the cut, so shave a few
    # more tokens until the whole prompt fits.
    while keep > 0:
        text = tokenizer.decode(field_ids[:keep], skip_special_tokens=True)
        tokens = _tokenize(tokenizer, [render(prompt.template, {**row, field: text})])[0]
        if len(tokens) <= budget:
            return tokens
        keep -= max(1, len(tokens) - budget)
    tokens = _tokenize(tokenizer, [render(prompt.template, {**row, field: ""})])[0]
    if len(tokens) > budget:
        raise DataError(
            f"even with an empty {field!r} a prompt has {len(tokens)} tokens, over the {budget} that fit; "
            "raise prompt.max_length or shorten the template"
        )
    return tokens


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.sha256(f"{type(tokenizer).__name__}|{text}".encode()).hexdigest()[:16]


def cache_path(rows: list[dict], prompt: PromptSpec, label_field: str | None, budget: int, tok_fp: str):
    """Where cached_encode keeps these rows' encoding: named by everything that decides it. The
    rows' fields in the key are the template's own (what encode_rows renders), not those of the
    job's other prompt patterns (PromptSpec.fields): each pattern is encoded, and keyed, alone
    (budgetft.data.patterns), and a job's patterns leave its template's cache entries as they were."""
    digest = hashlib.sha256()
    digest.update(json.dumps([CACHE_VERSION, tok_fp, prompt.template, prompt.labels, prompt.truncate_field, budget, label_field]).encode())
    used = [*template_fields(prompt.template), *([label_field] if label_field is not None else [])]
    for row in rows:
        digest.update(json.dumps([row.get(f) for f in used], default=str).encode())
    return cache_root() / "tokenized" / f"{digest.hexdigest()[:24]}.npz"


def cached_encode(
    rows: list[dict], prompt: PromptSpec, label_field: str | None, tokenizer, budget: int, tok_fp: str
) -> tuple[Encoded, bool]:
    """encode_rows, memoised on disk by everything that decides the result (cache_path). Returns
    (encoded, hit)."""
    path = cache_path(rows, prompt, label_field, budget, tok_fp)
    if path.is_file():
        try:
            with np.load(path) as z:
                offsets = z["offsets"]
                flat = z["tokens"]
                prompts = [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
                return Encoded(prompts, z["labels"], int(z["truncated"])), True
        except (OSError, KeyError, ValueError):
            path.unlink(missing_ok=True)  # a damaged cache entry is rebuilt, never trusted
    encoded = encode_rows(rows, prompt, label_field, tokenizer, budget)
    path.parent.mkdir(parents=True, exist_ok=True)
    offsets = np.concatenate([[0], np.cumsum(encoded.lengths)]).astype(np.int64)
    flat = np.concatenate(encoded.prompts) if encoded.prompts else np.zeros(0, np.int32)
    # Trials that start together (packed, or one per GPU) tokenize the same rows at once: each
    # writes a temporary file of its own and the last rename wins, with the same bytes.
    atomic_write(path, lambda fh: np.savez(fh, tokens=flat, offsets=offsets, labels=encoded.labels, truncated=encoded.truncated), durable=False)
    return encoded, False
