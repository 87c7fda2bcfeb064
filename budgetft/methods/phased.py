"""Multi-phase methods: one trial that runs several registered methods in turn (MeZO over every
weight, then backpropagation through the top k blocks), each over its share of the steps with
its own optimiser and schedule, on one model and one stream of batches, under one budget.

A phased method declares `phases(config)` in its `Method`; the trial loop (budgetft.train.trial)
runs them, with budgetft.train.phases keeping what each phase trained. What it saves is every tensor any phase trained (an early phase may touch weights that a
later one freezes), and re-applying it for loading or counting applies every phase's method in
order with that union trainable.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Callable

from budgetft import methods
from budgetft.methods.base import MethodUnsupported, Phase
from budgetft.scoring import ensemble
from budgetft.search_space import parse_param


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


def apply_phase(method: Any, model: Any, config: dict, context: Any, phase: Phase | None = None) -> Any:
    """Apply one phase's method. A phase with an adapter of its own (Phase.adapter) adds it beside
    the earlier phases' adapters, and it joins the model's ensemble (budgetft.scoring.ensemble)."""
    if phase is None or phase.adapter is None:
        return method.apply(model, config, context)

    model = method.apply(model, config, replace(context, adapter=phase.adapter))
    if phase.adapter not in (getattr(model, "peft_config", None) or {}):
        raise ValueError(f"phase method {method.name!r} cannot add an adapter of its own ({phase.adapter!r}); give the phase a peft method such as lora")
    ensemble.join(model, phase.adapter, phase.pattern, phase.generation)
    return model


def patterns_needed(phases: list[Phase]) -> int:
    """How many prompt patterns (the template first) the phases train on."""
    return 1 + max((p.pattern for p in phases), default=0)


def check_data(method: Any, config: dict, available: int, unlabelled: bool) -> None:
    """Refuse, before anything is spent, a phased method whose phases train on more prompt
    patterns than the job has (`available`, the template included), or on rows it labels itself
    where the job has no unlabelled rows (MethodUnsupported, naming the fix)."""
    if method.phases is None:
        return
    phases = method.phases(config)
    if any(p.pseudo_labels > 0 for p in phases) and not unlabelled:
        raise MethodUnsupported(
            f"method {method.name!r} trains its later generations on rows of the job's unlabelled split that it labels itself, "
            "and the job has none: set data.unlabelled_split to a split of rows without labels, apart from the evaluation split "
            "(for BoolQ, --set data.unlabelled_split=test works with the embedded, offline copy only: the hub's google/boolq has no test split)"
        )
    need = patterns_needed(phases)
    if need > available:
        fewer = f", or lower {method.name}'s `patterns` (it is {config['patterns']})" if "patterns" in config else ""
        raise MethodUnsupported(
            f"method {method.name!r} trains on {need} prompt patterns and the job has {available} "
            f"(prompt.template and {available - 1} prompt.patterns); add {need - available} more to prompt.patterns "
            f"(each another wording of the prompt over the same fields, answered by the same label words){fewer}"
        )


# The settings of a phased method that decide how many prompt patterns and generations its
# phases train on: the job-level check reads them at their fewest, the planner at their most.
DATA_SETTINGS = ("patterns", "generations")


def space_bound(raw: Any, pick: Callable[..., Any] = min) -> Any:
    """The least (pick=min) or greatest (max) value a search-space entry allows, where there is one:
    a number, a list or {choice: ...} of values (its numbers only), a range ({randint: [a, b]},
    {uniform: ...}, {loguniform: ...}: a or b). None where it allows no number."""
    def number(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    try:
        param = parse_param("value", raw)
    except ValueError:
        return None
    if param.kind in ("fixed", "choice"):
        found = [v for v in param.values if number(v)]
        return pick(found) if found else None
    return pick(param.values)


def _bounded(method: Any, space: dict, pick: Callable[..., Any]) -> dict:
    """The method's configuration with its pattern and generation counts at `pick` of what the
    space allows (the rest at the method's defaults)."""
    chosen = {}
    for key in DATA_SETTINGS:
        if key in space and key in method.defaults:
            value = space_bound(space[key], pick)
            if value is not None:
                chosen[key] = value
    return method.config(chosen)


def check_job(method: Any, space: dict, available: int, unlabelled: bool) -> None:
    """check_data for a method as a job lists it, at the fewest patterns and generations its
    search space allows (a list's smallest number, a range's low end; the default where the
    space gives none): a job refused here could run no trial of the method. A method without
    phases is let through untouched."""
    if method.phases is None:
        return
    check_data(method, _bounded(method, space, min), available, unlabelled)


def needs_unlabelled(method: Any, space: dict) -> bool:
    """Whether some trial of the method, as the job lists it, labels rows of the unlabelled split
    (iPET at the most generations its space allows)."""
    if method.phases is None:
        return False
    return any(p.pseudo_labels > 0 for p in method.phases(_bounded(method, space, max)))


def trains_on_patterns(method: Any, space: dict) -> bool:
    """Whether some trial of the method, as the job lists it, trains on prompt patterns beyond the
    template (PET)."""
    if method.phases is None:
        return False
    return patterns_needed(method.phases(_bounded(method, space, max))) > 1


def scoring_passes(method: Any, config: dict) -> int:
    """Forward passes an evaluation makes per row: one, or one per member of the ensemble a
    phased method's own adapters make (PET: one per prompt pattern; iPET: its last generation's)."""
    if method.phases is None:
        return 1
    phases = method.phases(config)
    last = max(p.generation for p in phases)
    return max(1, sum(1 for p in phases if p.adapter is not None and p.generation == last))


def apply_all(phases: Callable[[dict], list[Phase]]) -> Callable[..., Any]:
    """An `apply` for a phased method (loading, counting): every phase's method in order, then
    every parameter any of them trained made trainable, as saved."""

    def apply(model, config, context):
        return apply_phases(phases, model, config, context)

    return apply


def apply_phases(phases: Callable[[dict], list[Phase]], model: Any, config: dict, context: Any, count: int | None = None) -> Any:
    """The first `count` phases' methods applied in order (all when None), then every parameter
    any of them trained made trainable. Loading weights saved before the last phase applied
    (a trial whose best evaluation, or ASHA's stop, came in its MeZO phase) must rebuild only
    the phases they were saved at: a later phase adds what those weights never had (LST's side
    network)."""
    trained: set[str] = set()
    for phase in phases(config)[:count]:
        model = apply_phase(methods.get(phase.method), model, phase.config, context, phase)
        trained.update(n for n, p in model.named_parameters() if p.requires_grad)
    for name, param in model.named_parameters():
        param.requires_grad_(name in trained)
    return model


