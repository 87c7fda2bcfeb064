"""One optimiser step's arithmetic: the batches a trial draws, forward and backward over
micro-batches, AdamW's parameter groups. Tensors arrive through the model and the scoring
functions: this module imports no torch of its own."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

import numpy as np

from budgetft.data.batching import length_grouped_batches
from budgetft.methods.counting import partially_trained
from budgetft.scoring import verbalizer
from budgetft.scoring.rows import scoring_of, virtual_token_offset
from budgetft.task import Task
from budgetft.telemetry.precision import autocast
from budgetft.train.settings import TrialSettings


def batches(task: Task, batch_size: int, seed: int):
    """An endless stream of length-grouped training batches, reshuffled every epoch."""
    rng = np.random.default_rng(seed)
    lengths = task.train.lengths
    while True:
        for idx in length_grouped_batches(lengths, batch_size, rng):
            yield idx


def batch_backward(task: Task, settings: TrialSettings, device, precision) -> Callable[[object], float]:
    """ApplyContext.batch_backward for this trial: batches from a stream of their own with the
    trial's seed (the batches training starts with; the trial's own stream is not advanced)."""
    stream = batches(task, settings.batch_size, settings.seed)
    micro = settings.micro_batch_size or settings.batch_size

    def backward(model) -> float:
        model.to(device)  # the method looks at the data where training will run
        loss, _, _ = accumulate(model, task, next(stream), micro, virtual_token_offset(model), settings.loss, precision)
        return loss

    return backward


def param_groups(model, params: list) -> list:
    """AdamW's parameter groups: one, unless the method trains only some entries of some tensors
    (counting.partially_trained, fish_mask's fixed mask). Those get no weight decay: AdamW's
    decoupled decay shrinks every entry of a tensor, the entries the mask keeps fixed too."""
    names, _ = partially_trained(model)
    if not names:
        return params
    partial = {id(p) for n, p in model.named_parameters() if n in names}
    groups = [{"params": [p for p in params if id(p) not in partial]}, {"params": [p for p in params if id(p) in partial], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def accumulate(
    model, task: Task, idx: np.ndarray, micro: int, offset: int, loss_kind: str = "classes",
    precision=None, scaler=None, backward: bool = True,
):
    """Forward/backward over micro-batches of one batch; the gradients add up to the batch's
    mean loss (per row for "classes", per label token for "lm"). Forward only if not backward
    (zeroth-order methods). Forward passes run under the precision's autocast; the backward
    pass goes through the scaler (which scales only for fp16).
    Returns (loss, tokens, padding tokens)."""
    scoring = scoring_of(model)
    if loss_kind == "lm" and scoring is verbalizer:  # per label token
        denominator = sum(len(task.class_tokens[task.train.labels[i]]) for i in idx)
    else:  # per row (an encoder's "lm" loss is its head's cross-entropy, per row)
        denominator = len(idx)
    loss_sum = 0.0
    tokens = padded = 0
    for start in range(0, len(idx), micro):
        part = idx[start : start + micro]
        prompts = [task.train.prompts[i] for i in part]
        labels = [int(task.train.labels[i]) for i in part]
        with autocast(precision) if precision is not None else nullcontext():
            if loss_kind == "lm":
                total, _ = scoring.label_word_nll(model, prompts, labels, task.class_tokens, task.pad_id, offset)
                lengths = [len(p) + len(task.class_tokens[y]) for p, y in zip(prompts, labels)]
            else:
                total, _ = scoring.class_cross_entropy(model, prompts, labels, task.class_tokens, task.pad_id, offset)
                multi = any(len(t) > 1 for t in task.class_tokens)
                lengths = [len(p) + (max(map(len, task.class_tokens)) if multi else 0) for p in prompts]
        if backward:
            part_loss = total / denominator
            (scaler.scale(part_loss) if scaler is not None else part_loss).backward()
        loss_sum += float(total.detach())
        tokens += max(lengths) * len(lengths)
        padded += max(lengths) * len(lengths) - sum(lengths)
    return loss_sum / denominator, tokens, padded
