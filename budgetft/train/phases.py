"""A phased method's trial, the loop's side (budgetft.methods.phased declares the phases): what
each phase trained, how many phases a model has had applied, the rows a phase trains on, and
the count of what a phased trial trains. A phased model's saved weights are every tensor some
phase trained (budgetft.train.persist)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from budgetft.methods.base import Phase
from budgetft.methods.counting import count_model

TRAINED = "_budgetft_trained_names"  # on the model: every parameter name some phase trained
APPLIED = "_budgetft_phases_applied"  # on the model: how many of its phases have been applied


def remember_trained(model: Any, applied: int) -> None:
    """Add the parameters this phase trains to the model's record of what any phase trained,
    and note that `applied` phases are now on the model (what its weights are saved at)."""
    names = model.__dict__.setdefault(TRAINED, set())
    names.update(n for n, p in model.named_parameters() if p.requires_grad)
    model.__dict__[APPLIED] = applied


def phases_applied(model: Any) -> int | None:
    """How many phases a phased method's model has had applied (None: not a phased trial's)."""
    return model.__dict__.get(APPLIED)


def trained_names(model: Any) -> set[str] | None:
    """Every parameter some phase trained (None: the model's method has a single phase)."""
    return model.__dict__.get(TRAINED)


def rows_for(task: Any, phase: Phase | None) -> Any:
    """The task whose training rows a phase trains on: the trial's, or the same rows under the
    phase's prompt pattern (row i is the same example in each; evaluation stays on the trial's)."""
    if phase is None or phase.pattern == 0:
        return task
    return replace(task, train=task.train.patterns.get(phase.pattern))  # check_patterns vouched for it


def count_trained(model: Any) -> tuple[int, int]:
    """(trainable, total) parameters of a phased method's model as it stands: trainable is every
    parameter some phase trained, counted as count_model counts (a later phase may add what it trains, e.g. mezo_lst's side network), so a trial reports what
    the registry's count_params reports for the method (apply_all makes that union trainable)."""
    names = trained_names(model) or set()
    params = list(model.named_parameters())
    was = [p.requires_grad for _, p in params]
    try:
        for name, param in params:
            param.requires_grad_(name in names)
        return count_model(model)
    finally:
        for (_, param), flag in zip(params, was):
            param.requires_grad_(flag)
