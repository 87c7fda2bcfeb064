"""What a method's `apply` may need besides the model."""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class ApplyContext:
    """What a method may need besides the model: the tokenizer (for text-initialised prompts),
    the task's instruction text, and the label words (the verbalizer's answers, e.g. " yes",
    " no"), which prompt tuning can start from.

    batch_backward, for a method that looks at training data before step 1 (fish_mask's Fisher
    information): batch_backward(model) runs the forward and backward pass of the next training
    batch, with the trial's loss, micro-batches and precision, on the device the trial trains
    on (it moves the model there), leaves the gradient of the batch's mean loss in every
    trainable tensor's .grad and returns that loss (nats). The trial fills it in; it is None
    where there is no data (counting parameters, loading saved weights)."""

    tokenizer: Any = None
    init_text: str = ""
    label_words: tuple[str, ...] = ()
    batch_backward: Callable[[Any], float] | None = None
    # The name of an adapter a phase trains beside the earlier phases' (Phase.adapter: PET's one
    # per prompt pattern): a peft method given one adds it under that name to a model that has
    # adapters already, instead of wrapping the model anew. None: wrap as usual.
    adapter: str | None = None


def template_words(template: str) -> str:
    """The template's fixed text, e.g. "Question: ? Answer:" — a task instruction for
    initialising soft prompts."""
    return " ".join(literal.strip() for literal, *_ in string.Formatter().parse(template) if literal.strip())


def context_for(job, tokenizer) -> ApplyContext:
    """What a trial gives its method when applying it: the tokenizer, the instruction text (the
    job's prompt.init_text, else the template's words) and the label words. Re-applying a method
    to load its weights must build the same modules, so training and loading both use this."""
    init_text = job.prompt.init_text or template_words(job.prompt.template)
    return ApplyContext(tokenizer, init_text, tuple(job.prompt.labels.values()))
