"""The one place budgetft.use reaches into the training side: scoring rows (budgetft.scoring) and
loading a trial's weights (budgetft.train.persist). Everything else in this package goes
through these functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from budgetft.methods.context import context_for
from budgetft import methods
from budgetft.models.loading import load_model
from budgetft.models.placement import placement_for
from budgetft.scoring.class_bias import ATTRIBUTE
from budgetft.scoring.rows import score_rows as trial_score_rows
from budgetft.train.persist import load_trained

# Imported inside functions: torch: importing this module must stay cheap (start-up time).


def score_rows(model: Any, task: Any, encoded: Any, rows: np.ndarray, batch_size: int) -> np.ndarray:
    """(rows, classes) class scores in nats, exactly as evaluation scores them: the label words'
    summed log-probabilities plus the trial's fitted class bias (a decoder), or the head's
    log-softmax (an encoder). `task` needs .class_tokens and .pad_id."""
    return trial_score_rows(model, task, encoded, rows, batch_size)


def class_bias_attribute() -> str:
    """The name of the class-bias parameter a trained decoder carries (not a weight of the
    model itself: exports store it in budgetft_scoring.json instead)."""
    return ATTRIBUTE


def apply_context(job: Any, tokenizer: Any) -> Any:
    """What the trial gave its method when applying it (tokenizer, instruction text, label
    words), so that re-applying it before loading the weights builds the same modules."""
    return context_for(job, tokenizer)


def load_trained_model(resolved: Any, method: str, config: dict, weights: Path, context: Any, seed: int) -> Any:
    """The base model with the trial's method re-applied and its kept weights (and class bias)
    loaded, in eval mode, on the device and in the dtype trials use here (bf16 on a GPU, its
    4-bit base for a QLoRA winner; fp32 on a CPU): budgetft.models.placement."""
    import torch

    # The trial seeded torch before applying its method; anything a method draws at random
    # and does not save is then drawn the same way here.
    torch.manual_seed(seed)
    placement = placement_for(quantization=methods.get(method).quantization)
    return load_trained(load_model(resolved, placement), method, config, weights, context)
