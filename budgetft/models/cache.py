"""A process reads a model's weights from disk once: the last model loaded is held, and every
later request for it gets a fresh model object on the same weight tensors.

A trial applies its method to the model it is given (adapters, new heads, trainable flags), and
some methods train the base's own tensors (full fine-tuning, BitFit, the top blocks). So the held
model is never handed out itself: each request gets a deep copy of its modules whose parameters
are new Parameter objects on the held tensors (no copy of the weights; tied weights stay tied),
and Placement.prepare_trainable gives every parameter a trial trains a storage of its own before
the first step (copy on train). A worker's second trial of the same model thus reads nothing from
disk, whatever its method did to the first (budgetft.tune.worker), and so do calibration's
methods, its scoring probe, the baselines and the held-out test in the driver.

Only one model is held (the last one): a job of several models, or a 4-bit and a 16-bit base of
one model, holds one at a time, so the cache never doubles a GPU's weights. release() drops it
(the driver does before trials start, so that its copy does not sit in GPU memory beside them).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable

# Imported inside functions: torch: importing this module must stay cheap (start-up time).


@dataclass
class _Held:
    key: tuple
    model: Any  # never handed out: the template of every copy
    seconds: float  # what reading it took
    rng_before: Any = None  # torch's CPU generator state before the read and after it: a model
    rng_after: Any = None  # with freshly drawn weights (an encoder's head) is drawn alike
    fresh_weights: bool = False  # whether the read drew any weight at random (missing from the files)
    shared: set[int] = field(default_factory=set)  # data pointers of the held tensors


_held: _Held | None = None
# Seconds each model's read took in this process, by its location (calibration records them).
LOAD_SECONDS: dict[str, float] = {}
# How many times this process read weights from disk (the tests read it).
READS = {"count": 0}


def key_of(resolved: Any, placement: Any) -> tuple:
    return (resolved.location, resolved.revision, resolved.architecture, resolved.num_labels, placement)


def load(resolved: Any, placement: Any, read: Callable[[Any, Any], Any]) -> Any:
    """A fresh model for (resolved, placement): a copy of the held one when it is that model,
    else read (read(resolved, placement)) and held in place of the last one."""
    import torch

    global _held
    key = key_of(resolved, placement)
    state = torch.get_rng_state()
    if _held is not None and _held.key == key:
        if not _held.fresh_weights or torch.equal(state, _held.rng_before):
            if _held.rng_after is not None and torch.equal(state, _held.rng_before):
                torch.set_rng_state(_held.rng_after)  # as if read again: what follows draws alike
            return _copy(_held)
    release()
    t0 = time.perf_counter()
    model = read(resolved, placement)
    seconds = time.perf_counter() - t0
    READS["count"] += 1
    LOAD_SECONDS[resolved.location] = seconds
    after = torch.get_rng_state()
    held = _Held(key, model, seconds, state, after, fresh_weights=not torch.equal(state, after))
    held.shared = {t.data_ptr() for t in _tensors(model)}
    _held = held
    return _copy(held)


def release() -> None:
    """Drop the held model (and, on a GPU, give its memory back to the device)."""
    global _held
    if _held is None:
        return
    _held = None
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def shares_storage(tensor: Any) -> bool:
    """Whether `tensor` is one of the held model's (a trial must not train it in place)."""
    return _held is not None and tensor.data_ptr() in _held.shared


def held_seconds(location: str) -> float | None:
    """What reading the model at `location` took in this process, if it was read here."""
    return LOAD_SECONDS.get(location)


def _tensors(model: Any) -> list:
    seen: dict[int, Any] = {}
    for t in [*model.parameters(), *model.buffers()]:
        seen.setdefault(id(t), t)
    return list(seen.values())


def _copy(held: _Held) -> Any:
    """The held model's modules copied, their tensors shared: a plain parameter gets a new
    Parameter on the same storage (its trainable flag the held one's), a quantized one
    (bitsandbytes' Params4bit, which carries its quantization state) is shared as it is: it is
    never trained. Buffers are shared."""
    import torch

    model = held.model
    memo: dict[int, Any] = {}
    for param in model.parameters():
        if id(param) in memo:
            continue
        if type(param) is torch.nn.Parameter:
            memo[id(param)] = torch.nn.Parameter(param.data, requires_grad=param.requires_grad)
        else:
            memo[id(param)] = param
    for buffer in model.buffers():
        memo.setdefault(id(buffer), buffer)
    return copy.deepcopy(model, memo)
