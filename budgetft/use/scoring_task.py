"""What scoring a job's rows needs besides the weights: the resolved model, its tokenizer and the
label words' token ids, found exactly as budgetft.task.prepare_task finds them for training, but
without loading (or checking) the job's training and evaluation data.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from budgetft.data.checks import class_token_ids
from budgetft.data.encode import Encoded, encode_prompts
from budgetft.data.patterns import attach
from budgetft.models.loading import detect_architecture, load_tokenizer, resolve_model


@dataclass
class ScoringTask:
    job: Any  # budgetft.spec.JobSpec
    model: Any  # budgetft.models.loading.ResolvedModel, architecture and num_labels filled in
    tokenizer: Any
    class_names: list[str]
    class_tokens: list[list[int]]

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def prompt_budget(self) -> int:
        """The most prompt tokens a row may have: max_length minus the longest label word."""
        return self.job.prompt.max_length - max(len(t) for t in self.class_tokens)

    @property
    def label_words(self) -> dict[str, str]:
        return dict(self.job.prompt.labels)

    def encode(self, rows: list[dict]):
        """The rows' prompts as token ids, through the same code as training and evaluation
        (a too-long row loses words from the end of the job's truncate field). Labels are not
        needed: the returned Encoded has -1 for each. A job with more prompt patterns gets their
        encodings too, for a trial that scores by an ensemble of patterns (PET)."""
        prompts, truncated = encode_prompts(rows, self.job.prompt, self.tokenizer, self.prompt_budget)
        encoded = Encoded(prompts, np.full(len(rows), -1, dtype=np.int64), truncated)
        return attach(encoded, rows, self.job.prompt, self.tokenizer, self.prompt_budget)


def scoring_task(job: Any) -> ScoringTask:
    """Resolve the job's model (local directory, hub id or embedded copy), read its architecture
    from its config, and load its tokenizer. No weights are read."""
    resolved = resolve_model(job.model)
    resolved = replace(resolved, architecture=detect_architecture(resolved, job.model.architecture), num_labels=len(job.prompt.labels))
    tokenizer = load_tokenizer(resolved)
    return ScoringTask(job, resolved, tokenizer, list(job.prompt.labels), class_token_ids(tokenizer, job.prompt.labels))
