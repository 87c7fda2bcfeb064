"""Multi-phase methods: one trial that runs several registered methods in turn (MeZO over every
weight, then backpropagation through the top k blocks), each over its share of the steps with
its own optimiser and schedule, on one model and one stream of batches, under one budget.

A phased method declares `phases(config)` in its `Method`; the trial loop (budgetft.trial) runs
them. What it saves is every tensor any phase trained (an early phase may touch weights that a
later one freezes), and re-applying it for loading or counting applies every phase's method in
order with that union trainable.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from budgetft.methods.base import Phase

TRAINED = "_budgetft_trained_names"  # on the model: every parameter name some phase trained


def steps_of(phases: list[Phase], total: int) -> list[int]:
    """Each phase's steps: its share of `total`, rounded so that they add up to `total`, and at
    least one each while there are steps to give."""
    shares = [max(0.0, float(p.share)) for p in phases]
    weight = sum(shares) or 1.0
    out, given = [], 0
    for i, share in enumerate(shares):
        if i == len(shares) - 1:
            n = total - given
        else:
            n = min(total - given - (len(shares) - 1 - i), max(1, math.floor(total * share / weight)))
        n = max(0, n)
        out.append(n)
        given += n
    return out


def remember_trained(model: Any) -> None:
    """Add the parameters this phase trains to the model's record of what any phase trained."""
    names = model.__dict__.setdefault(TRAINED, set())
    names.update(n for n, p in model.named_parameters() if p.requires_grad)


def trained_names(model: Any) -> set[str] | None:
    """Every parameter some phase trained (None: the model's method has a single phase)."""
    return model.__dict__.get(TRAINED)


def apply_all(phases: Callable[[dict], list[Phase]]) -> Callable[..., Any]:
    """An `apply` for a phased method (loading, counting): every phase's method in order, then
    every parameter any of them trained made trainable, as saved."""

    def apply(model, config, context):
        from budgetft import methods

        trained: set[str] = set()
        for phase in phases(config):
            model = methods.get(phase.method).apply(model, phase.config, context)
            trained.update(n for n, p in model.named_parameters() if p.requires_grad)
        for name, param in model.named_parameters():
            param.requires_grad_(name in trained)
        return model

    return apply
