"""Out of memory, met where it happens: a trial's load, its class-bias fit, its evaluations and
its steps. A batch that does not fit is halved (gradient accumulation keeps a step's rows; scoring
is the same in smaller batches) and the trial goes on, saying what shrank; a model that does not
load ends the trial with a message that names the fix (the run goes on: budgetft.tune.worker,
budgetft.stages.calibrate). The memory plan (budgetft.planner.memory_plan) chooses what should
fit; this is for what a prediction missed.
"""

from __future__ import annotations

from typing import Any, Callable

from budgetft.models.checkpointing import checkpoint_activations  # noqa: F401 - trials turn it on through here

# Imported inside functions: torch: importing this module must stay cheap (start-up time).


class OutOfMemoryAtLoad(RuntimeError):
    """The model's weights do not fit on the device. The message names the fix."""


def is_out_of_memory(exc: BaseException) -> bool:
    """A GPU's out of memory (torch.OutOfMemoryError), or the host's (MemoryError)."""
    import torch

    return isinstance(exc, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def free_cached() -> None:
    """Give the caching allocator's free blocks back, so that a smaller retry can use them."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def loading(load: Callable[[], Any], placement: Any) -> Any:
    """load(), with out of memory turned into an error a user can act on."""
    try:
        return load()
    except BaseException as exc:
        if not is_out_of_memory(exc):
            raise
        free_cached()
        fix = "use a 4-bit base (the qlora method), a GPU with more memory, or a smaller model"
        raise OutOfMemoryAtLoad(f"out of memory loading the model ({placement.describe()}): {fix}") from exc


def shrinking(run: Callable[[int], Any], batch: int, what: str, shrunk: list, at: int | None = None) -> tuple[Any, int]:
    """(run(batch), the batch that fitted): on out of memory the batch is halved and run again,
    down to 1; each halving is appended to `shrunk` ({"what", "at", "from", "to"})."""
    while True:
        try:
            return run(batch), batch
        except BaseException as exc:
            if not is_out_of_memory(exc) or batch <= 1:
                raise
            smaller = max(1, batch // 2)
            shrunk.append({"what": what, "at": at, "from": batch, "to": smaller})
            free_cached()
            batch = smaller
