"""Trainable-parameter counts for a method on a given model, without loading its weights.

Applying the method is the only count that cannot drift from what training does, so that is
what we do: on the meta device (shapes, no storage) a 135M-parameter model is built and
adapted in well under a second and costs no memory.
"""

from __future__ import annotations

import copy
from typing import Any

from budgetft.methods.context import ApplyContext
from budgetft.models.architecture import ENCODER, architecture_from_config
from budgetft.scoring.verbalizer import BIAS_ATTRIBUTE

# Imported inside functions: torch, transformers: importing this module must stay cheap (start-up
# time).

# A method that trains only some entries of some tensors (fish_mask's fixed sparse mask) keeps
# those tensors trainable and records on the model which they are and how many of their entries
# train in all: {"names": [parameter names], "entries": k}. Counting counts those k entries,
# not the tensors; the trial gives those tensors no weight decay (budgetft.train.steps.param_groups).
PARTIAL = "budgetft_partially_trained"


def build_meta_model(model_config: Any, architecture: str = "auto", num_labels: int | None = None) -> Any:
    """A weight-free model as training would load it: a causal LM, or an encoder with a
    classification head of `num_labels` outputs (default: the config's own)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if architecture_from_config(model_config, architecture) == ENCODER:
        if num_labels is not None:
            model_config = copy.deepcopy(model_config)
            model_config.num_labels = num_labels
        auto = AutoModelForSequenceClassification
    else:
        auto = AutoModelForCausalLM
    with torch.device("meta"):
        return auto.from_config(model_config)


def partially_trained(model: Any) -> tuple[set[str], int]:
    """(names of the tensors the method trains only in part, how many of their entries train):
    (empty set, 0) for every method that trains whole tensors. See PARTIAL."""
    record = getattr(model, PARTIAL, None)
    if record is None:
        return set(), 0
    return set(record["names"]), int(record["entries"])


def count_model(model: Any) -> tuple[int, int]:
    """(trainable, total) parameters of a model as it stands, the one count budgetft uses. A tied
    weight is counted once; the verbalizer's class bias (one value per class, budgetft.scoring.
    class_bias) belongs to the trial, not to the method, and is not counted. Tensors a method
    trains only in part (PARTIAL) count as the entries that train."""
    partial, entries = partially_trained(model)
    seen: set[int] = set()
    trainable = total = 0
    for name, param in model.named_parameters():  # deduplicated: tied weights appear once
        if name.split(".")[-1] == BIAS_ATTRIBUTE or id(param) in seen:
            continue
        seen.add(id(param))
        total += param.numel()
        trainable += param.numel() if param.requires_grad and name not in partial else 0
    return trainable + entries, total


def count_params(method: Any, model_or_config: Any, overrides: dict[str, Any] | None = None) -> tuple[int, int]:
    """(trainable, total) after applying `method`. Totals include what the method adds
    (adapters, prompt encoders, BitFit's new biases)."""
    import torch

    # Methods whose initialisation needs real weights (PiSSA's SVD, OLoRA's QR) skip it on
    # the meta device; the shapes, and so the counts, are the same.
    is_model = isinstance(model_or_config, torch.nn.Module)
    model = copy.deepcopy(model_or_config) if is_model else build_meta_model(model_or_config)
    model = method.apply(model, method.config(overrides), ApplyContext())
    return count_model(model)
