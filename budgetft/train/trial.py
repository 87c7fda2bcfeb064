"""One trial: a model, one method configuration, a fixed number of optimiser steps.

run_trial, top to bottom: apply the method (each phase of a phased method in turn); fit the
verbalizer's class bias (decoders); then the loop (budgetft.train.loop): AdamW with linear
warm-up and decay (budgetft.train.schedule), length-grouped batches, loss on the label word
only, gradient accumulation over micro-batches (budgetft.train.steps; halved automatically on a
GPU out-of-memory), an evaluation at the planned steps. Scoring lives in budgetft.scoring.

torch is imported inside run_trial: importing this module must stay cheap for the CLI.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

from budgetft import methods
from budgetft.methods import phased
from budgetft.methods.context import context_for
from budgetft.methods.counting import build_meta_model
from budgetft.models.dropout import set_dropout
from budgetft.models.loading import load_model
from budgetft.models.placement import placement_for
from budgetft.scoring import class_bias
from budgetft.task import Task
from budgetft.telemetry.precision import apply_precision, pick_device, precision_for
from budgetft.train import checkpoint as trial_checkpoint
from budgetft.train import frozen_prefix, memory, phases
from budgetft.train.loop import Loop
from budgetft.train.settings import StepLog, TrialResult, TrialSettings
from budgetft.train.steps import batch_backward

# Imported inside functions: torch: importing this module must stay cheap (start-up time).

__all__ = ["StepLog", "TrialResult", "TrialSettings", "run_trial"]


def run_trial(
    task: Task,
    settings: TrialSettings,
    model=None,
    on_step: Callable[[StepLog], None] | None = None,
    on_eval: Callable[[int, dict], bool | None] | None = None,
    may_continue: Callable[[str], bool] | None = None,
    on_phase: Callable[[str], None] | None = None,
    on_model: Callable[[object], None] | None = None,
    horizon: Callable[[int, float, int], int] | None = None,
    memory_log: dict | None = None,
    checkpoint: tuple[int, Callable] | None = None,
    resume_from: Path | None = None,
) -> tuple[TrialResult, object]:
    """Train and evaluate. `model` is the untuned base model (loaded if not given).
    on_eval may return True to stop the trial early (a scheduler's decision); may_continue is
    asked before every step ("step") and every evaluation ("evaluation"), and, as for an
    evaluation, before each chunk of iPET's labelling and each later PET member's class-bias
    fit; False stops the trial (e.g. the money is spent); on_phase
    hears "training" / "evaluating" / "labelling" (iPET scoring unlabelled rows) as the loop switches; on_model gets the model once the
    method is applied (e.g. to checkpoint it from on_eval), again as each phase of a phased
    method applies its own. horizon(step, seconds per step lately, current last step) is asked
    after each step of the last phase and returns the last step the money buys: on a machine
    slower than its calibration the end moves nearer, and the schedule decays to zero by it
    and the trial evaluates there, instead of being cut mid-schedule before any evaluation; on
    a faster one (and only where the caller allows it) the end moves further, the decay
    stretched from where it stands, so money a pessimistic calibration left idle trains.
    `memory_log`: a dict the loop keeps current with the trial's placement, micro-batch and what out
    of memory shrank (TrialResult.memory is this dict). `checkpoint`: (every so many steps,
    write(step, end, model, optimizer, scheduler, schedule)) for a one-phase method
    (budgetft.train.checkpoint); `resume_from`: a checkpoint's folder to go on from, its
    weights, optimiser state, schedule, data order and random state. Returns the result and the
    trained model."""
    import torch

    torch.manual_seed(settings.seed)
    device = pick_device()
    # A method whose phases train on prompt patterns (PET) or unlabelled rows (iPET) the job
    # lacks is refused before the model loads.
    phased.check_data(methods.get(settings.method), settings.config, len(task.job.prompt.templates), task.unlabelled_count > 0)
    method = methods.get(settings.method)
    # The trial's weights: bf16 (fp16 on 7.x) on a GPU, straight onto it; a 4-bit base for QLoRA.
    placement = placement_for(device, method.quantization)
    if model is None:
        model = memory.loading(lambda: load_model(task.model, placement), placement)
    if settings.dropout is not None:  # the model's own, before the method adds modules of its own
        set_dropout(model, settings.dropout)
    context = context_for(task.job, task.tokenizer)
    if method.phases is not None:  # e.g. MeZO, then the top k blocks
        parts = method.phases(settings.config)
        # Every phase's settings are checked now, on a model without weights (e.g. last_k's k
        # against the blocks), not after the first phase has been paid for.
        for part in parts:
            methods.check_supports(part.method, task.model.architecture)
        method.apply(build_meta_model(model.config, task.model.architecture, num_labels=len(task.class_names)), settings.config, context)
        parts = [(methods.get(p.method), dict(p.config), n, p) for p, n in zip(parts, phased.steps_of(parts, settings.steps))]
    else:
        parts = [(method, settings.config, settings.steps, None)]
    precision = precision_for(device)
    apply_precision(precision)
    context = replace(context, batch_backward=batch_backward(task, settings, device, precision))
    loop = Loop(task, settings, precision, on_step, on_eval, may_continue, on_phase, horizon, memory_log)
    if len(parts) == 1 and checkpoint is not None:
        loop.checkpoint_every, loop.checkpoint = checkpoint
    state = None
    if resume_from is not None:
        if len(parts) != 1:
            raise ValueError(f"a trial of {settings.method} (several phases) cannot go on from a checkpoint")
        state = trial_checkpoint.load(resume_from)
    loop.memory.update(placement=placement.to_dict(), checkpointing=settings.checkpointing)
    rows, generation = task, 0  # the training rows the phases train on, and their generation
    for i, (part, config, steps, phase) in enumerate(parts):
        if phase is not None and phase.generation != generation:  # iPET: the ensemble so far labels rows for the next
            generation = phase.generation
            # Sized on what this generation's first member's steps draw.
            rows = loop.pseudo_label(model, phase.pseudo_labels, generation, examples=steps * settings.batch_size)
            if rows is None:  # not paid for: the model stays the last generation's ensemble
                break
        if i > 0 and not loop.may_fit_bias(phase, i):  # not paid for: the model stays the ensemble of the members so far
            break
        model = phased.apply_phase(part, model, config, context, phase)  # a phase's own adapter joins an ensemble
        placement.move(model)
        placement.prepare_trainable(model)  # fp32 masters; the process's held weights stay as read
        if settings.checkpointing:
            memory.checkpoint_activations(model)
        model.train()
        if state is not None:  # the checkpoint's trained tensors (and class bias): the loop goes on from its step
            trial_checkpoint.restore_parameters(model, state)
            loop.resume = state
        bias = getattr(model, class_bias.ATTRIBUTE, None)
        if bias is not None:  # fitted before the first phase, trained by every phase
            bias.requires_grad_(True)
        if len(parts) > 1:
            phases.remember_trained(model, i + 1)
        frozen = None
        if settings.reuse_frozen_layers and part.train_step is None:
            # States are shared between trials only when every trial's frozen weights are the
            # base model's: not after an earlier phase has moved them.
            folder = Path(settings.frozen_states) if settings.frozen_states and i == 0 else None
            identity = f"{task.model.describe()}@{task.model.revision}|{device}|{precision.to_dict()}|phase {i}"
            frozen = frozen_prefix.attach(model, identity, folder)
        try:
            if loop.result is None:
                loop.start(model, method)
            elif len(parts) > 1:  # a later phase may add what it trains (mezo_lst's side network)
                loop.result.trainable_params, loop.result.total_params = phases.count_trained(model)
                loop.refit_bias(model, phases.rows_for(rows, phase))
            if on_model:
                on_model(model)
            stopped = loop.train(model, part, config, steps, last=i == len(parts) - 1, rows=phases.rows_for(rows, phase))
            if frozen is not None:
                loop.note_frozen(frozen.summary())
        finally:
            if frozen is not None:
                frozen.detach()  # the model handed back is the method's own, with every block
        if stopped:
            break
    return loop.finish(), model


