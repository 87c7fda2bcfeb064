"""Trainable-parameter counts for a method on a given model, without loading its weights.

Applying the method is the only count that cannot drift from what training does, so that is
what we do: on the meta device (shapes, no storage) a 135M-parameter model is built and
adapted in well under a second and costs no memory.
"""

from __future__ import annotations

import copy
from typing import Any


def build_meta_model(model_config: Any, architecture: str = "auto", num_labels: int | None = None) -> Any:
    """A weight-free model as training would load it: a causal LM, or an encoder with a
    classification head of `num_labels` outputs (default: the config's own)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from budgetft.models.loading import architecture_from_config

    if architecture_from_config(model_config, architecture) == "encoder":
        if num_labels is not None:
            model_config = copy.deepcopy(model_config)
            model_config.num_labels = num_labels
        auto = AutoModelForSequenceClassification
    else:
        auto = AutoModelForCausalLM
    with torch.device("meta"):
        return auto.from_config(model_config)


def count_params(method: Any, model_or_config: Any, overrides: dict[str, Any] | None = None) -> tuple[int, int]:
    """(trainable, total) after applying `method`. Totals include what the method adds
    (adapters, prompt encoders, BitFit's new biases), and a tied weight is counted once."""
    import torch

    from budgetft.methods.base import ApplyContext

    # Methods whose initialisation needs real weights (PiSSA's SVD, OLoRA's QR) skip it on
    # the meta device; the shapes, and so the counts, are the same.
    is_model = isinstance(model_or_config, torch.nn.Module)
    model = copy.deepcopy(model_or_config) if is_model else build_meta_model(model_or_config)
    model = method.apply(model, method.config(overrides), ApplyContext())
    params = list(model.parameters())  # deduplicated: tied weights appear once
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return trainable, sum(p.numel() for p in params)
