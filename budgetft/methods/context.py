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


def template_words(template: str) -> str:
    """The template's fixed text, e.g. "Question: ? Answer:" — a task instruction for
    initialising soft prompts."""
    import string

    return " ".join(literal.strip() for literal, *_ in string.Formatter().parse(template) if literal.strip())


def context_for(job, tokenizer) -> ApplyContext:
    """What a trial gives its method when applying it: the tokenizer, the instruction text (the
    job's prompt.init_text, else the template's words) and the label words. Re-applying a method
    to load its weights must build the same modules, so training and loading both use this."""
    init_text = job.prompt.init_text or template_words(job.prompt.template)
    return ApplyContext(tokenizer, init_text, tuple(job.prompt.labels.values()))
