"""An ensemble of adapters on one base model. A phased method whose phases each train an adapter of
their own (Phase.adapter: PET trains one per prompt pattern) leaves a model whose members are
those adapters, each with the prompt pattern it trained on and the class bias it trained with.
The model scores a row as the mean over its members of each class's score, each member reading
the row under its own pattern (budgetft.scoring.rows.score_rows): uniform weights, PET's
unweighted ensemble.

The member that trains now is the model as it stands: its adapter active and alone trainable,
its class bias in the verbalizer's place (budgetft.scoring.class_bias). When the next member
joins, the previous member's class bias is put away with it, and the trial fits the new member's
on its own pattern's rows before its first step (budgetft.train.trial), as every trial fits its first.
A member scores with its own bias: each was fitted to, and trained with, its own pattern's prior.

What a saved ensemble needs besides its adapters' tensors (which members, on which patterns,
with which class biases) goes in its saved manifest (budgetft.train.persist: `describe`,
`restore`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from budgetft.scoring.verbalizer import BIAS_ATTRIBUTE

# Imported inside functions: torch: importing this module must stay cheap (start-up time).

MEMBERS = "_budgetft_members"  # in the model's __dict__: [(adapter, pattern)], in training order
BIASES = "_budgetft_member_biases"  # in the model's __dict__: adapter -> its class bias, once put away
GENERATION = "_budgetft_generation"  # in the model's __dict__: the members' generation (iPET)


def members(model: Any) -> list[tuple[str, int]]:
    """(adapter, pattern) of each member, in the order they trained; [] for a model that is no
    ensemble."""
    return list(model.__dict__.get(MEMBERS, ()))


def _belongs(name: str, adapter: str) -> bool:
    return f".{adapter}." in name  # peft names an adapter's tensors ...lora_A.<adapter>.weight


def join(model: Any, adapter: str, pattern: int, generation: int = 0) -> None:
    """Make `adapter` (just added by its phase's method) the member that trains: the previous
    member, done, keeps its class bias aside, and only the new adapter's tensors train (peft
    leaves the earlier adapters trainable). The first member of a new generation (iPET) retires
    the earlier generation's members instead: the ensemble is the latest generation's."""
    record = model.__dict__.setdefault(MEMBERS, [])
    if record and generation != model.__dict__.get(GENERATION, generation):
        _retire(model, record)
    elif record:
        _put_bias_away(model, record[-1][0])
    model.__dict__[GENERATION] = generation
    record.append((adapter, int(pattern)))
    for name, param in model.named_parameters():
        param.requires_grad_(_belongs(name, adapter))


def _retire(model: Any, record: list) -> None:
    """Remove every member so far: their adapters, their class biases (the live one's too: the
    next member gets its own fitted)."""
    for adapter, _ in record:
        model.delete_adapter(adapter)
    record.clear()
    model.__dict__[BIASES] = {}
    if getattr(model, BIAS_ATTRIBUTE, None) is not None:
        delattr(model, BIAS_ATTRIBUTE)


def _put_bias_away(model: Any, adapter: str) -> None:
    bias = getattr(model, BIAS_ATTRIBUTE, None)
    if bias is None:  # the trial fits no class bias (train.class_bias: none)
        return
    model.__dict__.setdefault(BIASES, {})[adapter] = bias.detach().clone()
    delattr(model, BIAS_ATTRIBUTE)


def member_bias(model: Any, adapter: str) -> Any:
    """The member's class bias (a tensor), or None where the trial fitted none."""
    live = members(model)[-1][0]
    if adapter == live:
        return getattr(model, BIAS_ATTRIBUTE, None)
    return model.__dict__.get(BIASES, {}).get(adapter)


@contextmanager
def acting(model: Any, adapter: str) -> Iterator[None]:
    """The model scoring as one member: its adapter active, its class bias in the verbalizer's
    place; afterwards as it was (the training member active, the same tensors trainable), so an
    evaluation in the middle of a phase leaves the phase's training as it found it."""
    import torch

    live = members(model)[-1][0]
    if adapter == live:
        yield
        return
    flags = [(param, param.requires_grad) for param in model.parameters()]
    live_bias = getattr(model, BIAS_ATTRIBUTE, None)
    stored = member_bias(model, adapter)
    model.set_adapter(adapter)
    if stored is not None:
        device = next(model.parameters()).device
        setattr(model, BIAS_ATTRIBUTE, torch.nn.Parameter(stored.to(device), requires_grad=False))
    elif live_bias is not None:
        delattr(model, BIAS_ATTRIBUTE)
    try:
        yield
    finally:
        model.set_adapter(live)
        if live_bias is not None:
            setattr(model, BIAS_ATTRIBUTE, live_bias)  # the very tensor the optimiser trains
        elif getattr(model, BIAS_ATTRIBUTE, None) is not None:
            delattr(model, BIAS_ATTRIBUTE)
        for param, flag in flags:
            param.requires_grad_(flag)


def describe(model: Any) -> list[dict] | None:
    """The members for a saved manifest: adapter, pattern and class bias (None: none fitted), in
    training order; None for a model that is no ensemble."""
    found = members(model)
    if not found:
        return None
    out = []
    for adapter, pattern in found:
        bias = member_bias(model, adapter)
        out.append({"adapter": adapter, "pattern": pattern,
                    "class_bias": None if bias is None else [float(b) for b in bias.detach().cpu()]})
    return out


def restore(model: Any, described: list[dict]) -> None:
    """The saved members' class biases, on a model its method was re-applied to (as many phases
    as the weights were saved at: budgetft.train.persist), whose members must be the saved
    ones. The live member's bias is the manifest's class_bias, which persist attaches as for
    any method."""
    import torch

    saved = [(str(d["adapter"]), int(d["pattern"])) for d in described]
    if members(model) != saved:
        raise ValueError(f"the saved ensemble's members {saved} are not those the re-applied method builds: {members(model)}")
    model.__dict__[BIASES] = {adapter: torch.tensor(d["class_bias"], dtype=torch.float32)
                              for (adapter, _), d in zip(saved[:-1], described[:-1]) if d.get("class_bias") is not None}
