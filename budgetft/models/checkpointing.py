"""Activation checkpointing: each transformer block keeps only its input during the forward pass
and recomputes the rest in the backward pass (~1/3 more compute, a fraction of the activations).
One switch, used by trials (budgetft.train.trial) and by the memory tracer
(budgetft.planner.memory_trace), so that what is traced is what trains."""

from __future__ import annotations

from typing import Any

from budgetft.models.architecture import base_of


def checkpoint_activations(model: Any) -> bool:
    """Turn on activation checkpointing in the model's blocks (non-reentrant: frozen inputs need
    no gradient trick, and a peft wrapper is left as it is); False where the model has none."""
    base = base_of(model)
    if not getattr(base, "supports_gradient_checkpointing", False):
        return False
    enable = getattr(base, "activation_checkpointing_enable", None)  # transformers >= 5.x's name
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    base.config.use_cache = False
    return True
