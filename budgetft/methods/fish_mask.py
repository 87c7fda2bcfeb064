"""FISH Mask: sparse fine-tuning with a fixed mask chosen by Fisher information (Sung, Nair &
Raffel, NeurIPS 2021, "Training Neural Networks with Fixed Sparse Masks").

Before step 1 each weight entry's empirical Fisher information is estimated as the mean, over a
few training batches, of the squared gradient of the batch's loss (the trial's own loss, with the
true labels); the top `density` share of the model's entries, ranked together across all tensors,
is the mask. Only those entries train: a hook zeroes every other entry's gradient, so AdamW's
moments stay zero there and its update is exactly zero; its decoupled weight decay, which would
shrink every entry, is turned off for these tensors (counting.PARTIAL, budgetft.train.steps.param_groups). The
mask never changes. An encoder's fresh classification head is not ranked: it trains whole, as
under every method.

How it differs from diff pruning (Guo, Rush & Kim, ACL 2021), its learned-mask relative: diff
pruning adds a task-specific difference vector with a relaxed L0 penalty (hard-concrete gates)
and learns which entries to keep during training, then prunes it to a target sparsity and
fine-tunes again; FISH Mask adds no parameters and no penalty, and chooses the mask once, from
gradients at the pre-trained weights, before training starts.

Ours (no library ships it). Departures from the paper: it squares per-example gradients over
1,024 examples; we square per-batch gradients of a few batches (`fisher_batches`, 8 by default:
64 rows at batch size 8, the cost of 8 training steps), a coarser but cheaper estimate of the
same ranking.

Counting (`budgetft methods`, on a model without weights): the trainable count is
max(1, round(density x the ranked entries)), plus an encoder's head, which is what the mask
keeps once it is chosen (exactly that many entries, ties broken by topk). Saving writes every
ranked tensor in full (trainable.safetensors, as `full` does): loading onto a fresh base is
exact and needs no Fisher; the file is the model's size, not the mask's.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from budgetft.methods.arch import freeze_all, head_modules, make_head_trainable
from budgetft.methods.base import Method
from budgetft.methods.counting import PARTIAL

# Imported inside functions: torch: importing this module must stay cheap (start-up time).

# The mask's buffer on the module that owns each ranked tensor (not saved: loading is exact
# from the saved tensors, and exported models carry no masks).
MASK_PREFIX = "fish_mask_"


def check_config(config: dict) -> tuple[float, int]:
    """(density, Fisher batches), refused with the fix before anything is computed."""
    density, batches = config["density"], config["fisher_batches"]
    if not _is_number(density) or math.isnan(float(density)) or not 0 < float(density) <= 1:
        raise ValueError(f"fish_mask: density is {density!r}; give the share of the model's weight entries that train, "
                         "in (0, 1] (the paper trains 0.005, i.e. 0.5%)")
    if not _is_number(batches) or not math.isfinite(float(batches)) or float(batches) != int(batches) or int(batches) < 1:
        raise ValueError(f"fish_mask: fisher_batches is {batches!r}; give a whole number of training batches, 1 or more")
    return float(density), int(batches)


def _is_number(value: Any) -> bool:
    """A real number (numpy's too, as search spaces draw them), not a bool or a string."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def kept_entries(density: float, total: int) -> int:
    """How many entries the mask keeps out of `total`: at least one."""
    return min(total, max(1, round(density * total)))


def ranked_tensors(model: Any) -> list[tuple[str, Any]]:
    """(name, parameter) of every tensor the Fisher ranks: all of the model's but an encoder's
    classification head (tied weights once, as named_parameters lists them)."""
    head = {id(p) for module in head_modules(model) for p in module.parameters()}
    return [(n, p) for n, p in model.named_parameters() if id(p) not in head]


def empirical_fisher(model: Any, params: list[Any], batch_backward: Any, batches: int) -> list[Any]:
    """Per entry of each tensor in `params`: the mean over `batches` calls of batch_backward of
    the squared gradient it leaves (nats^2 per unit weight^2), in float32. The model runs in
    eval mode (no dropout: the Fisher of the model itself, not of a dropped-out copy)."""
    import torch

    was_training = model.training
    model.eval()
    fisher = None
    try:
        for _ in range(batches):
            model.zero_grad(set_to_none=True)
            batch_backward(model)
            if fisher is None:  # allocated after the first pass: batch_backward may move the model
                fisher = [torch.zeros_like(p, dtype=torch.float32) for p in params]
            for f, p in zip(fisher, params):
                if p.grad is not None:  # None: the batches never reach it (e.g. an unused embedding)
                    f.add_(p.grad.float().square())
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return [f.div_(batches) for f in fisher]


def top_entries(scores: list[Any], k: int) -> list[Any]:
    """Boolean masks shaped as `scores`, true at the k largest entries of all of them together."""
    import torch

    flat = torch.cat([s.flatten() for s in scores])
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[torch.topk(flat, k, sorted=False).indices] = True
    return [part.view_as(s).clone() for part, s in zip(keep.split([s.numel() for s in scores]), scores)]


def _owner(model: Any, name: str) -> tuple[Any, str]:
    path, _, attr = name.rpartition(".")
    return (model.get_submodule(path) if path else model), attr


def _masked_gradient(owner: Any, buffer: str):
    def hook(grad):
        import torch

        # where, not a product: an inf gradient outside the mask must not become nan
        return torch.where(getattr(owner, buffer), grad, torch.zeros((), dtype=grad.dtype, device=grad.device))

    return hook


def _no_mask(grad):
    raise RuntimeError("fish_mask: this model was applied without training batches (to count parameters or to load "
                       "saved weights), so it has no Fisher mask to train with; train it in a trial (budgetft.train.trial.run_trial), "
                       "which gives the method its batches")


def attach_masks(model: Any, ranked: list[tuple[str, Any]], masks: list[Any]) -> None:
    """Each mask as a buffer beside its tensor (it follows the model across devices) and a hook
    that keeps only the mask's entries of the tensor's gradient."""
    for (name, param), mask in zip(ranked, masks):
        owner, attr = _owner(model, name)
        buffer = MASK_PREFIX + attr
        owner.register_buffer(buffer, mask, persistent=False)
        param.register_hook(_masked_gradient(owner, buffer))


def masks_of(model: Any) -> dict[str, Any]:
    """{ranked tensor's name: its mask} of a model fish_mask was applied to with data."""
    found = {}
    for name, _ in ranked_tensors(model):
        owner, attr = _owner(model, name)
        mask = getattr(owner, MASK_PREFIX + attr, None)
        if mask is not None:
            found[name] = mask
    return found


def apply(model, config, context):
    density, batches = check_config(config)
    ranked = ranked_tensors(model)
    freeze_all(model)
    for _, param in ranked:
        param.requires_grad_(True)  # whole tensors train; the mask decides which entries move
    make_head_trainable(model)
    k = kept_entries(density, sum(p.numel() for _, p in ranked))
    setattr(model, PARTIAL, {"names": [n for n, _ in ranked], "entries": k})
    if context.batch_backward is None or any(p.is_meta for _, p in ranked):
        for _, param in ranked:  # counting or loading: no data, no mask, so no training either
            param.register_hook(_no_mask)
        return model
    fisher = empirical_fisher(model, [p for _, p in ranked], context.batch_backward, batches)
    attach_masks(model, ranked, top_entries(fisher, k))
    return model


METHOD = Method(
    name="fish_mask",
    summary="fixed sparse mask: the top `density` share of weight entries by Fisher information train "
            "(counted as density x the model's weights, plus an encoder's head)",
    # density 0.005: the paper's GLUE setting (0.5% of BERT-large's parameters matched full
    # fine-tuning). fisher_batches 8: 64 rows at batch size 8 against the paper's 1,024
    # examples, so that the mask costs about 8 training steps before step 1. Learning rate
    # between full fine-tuning's and BitFit's here, as last_k's: not tuned on BoolQ.
    defaults={"density": 0.005, "fisher_batches": 8, "learning_rate": 1e-4},
    default_space={"density": [0.002, 0.005, 0.02], "learning_rate": {"loguniform": [3e-5, 1e-3]}},
    apply=apply,
    uses_peft=False,
    aliases=("fish", "fisher_mask"),
)
