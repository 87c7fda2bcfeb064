"""What a method's `apply` may need besides the model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ApplyContext:
    """What a method may need besides the model: the tokenizer (for text-initialised prompts),
    the task's instruction text, and the label words (the verbalizer's answers, e.g. " yes",
    " no"), which prompt tuning can start from."""

    tokenizer: Any = None
    init_text: str = ""
    label_words: tuple[str, ...] = ()
