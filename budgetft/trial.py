"""One trial: a model, one method configuration, a fixed number of optimiser steps.

The loop, top to bottom: apply the method; fit the verbalizer's class bias (decoders); AdamW
with linear warm-up and decay; length-grouped batches; loss on the label word only; gradient
accumulation over micro-batches (halved automatically on a GPU out-of-memory); an evaluation at
the planned steps. Scoring lives in budgetft.scoring; this module is the loop alone.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from budgetft import methods
from budgetft.data.batching import length_grouped_batches
from budgetft.methods._peft import virtual_token_offset
from budgetft.methods.context import context_for
from budgetft.methods.counting import count_model, partially_trained
from budgetft.planner.rates import mean_step_tokens
from budgetft.scoring import class_bias, verbalizer
from budgetft.scoring.rows import evaluate, scoring_of
from budgetft.task import Task
from budgetft.telemetry.precision import pick_device, precision_for


@dataclass
class TrialSettings:
    method: str
    config: dict
    steps: int
    batch_size: int = 8
    micro_batch_size: int | None = None
    warmup_ratio: float = 0.06
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    eval_every: int = 50
    eval_batch_size: int = 16
    seed: int = 0
    # Evaluate at exactly these steps (e.g. ASHA's rungs); None: every eval_every and the last.
    eval_steps: list[int] | None = None
    loss: str = "classes"  # see TrainSpec.loss
    class_bias: str = "fit"  # see TrainSpec.class_bias
    reuse_frozen_layers: bool = True  # see TrainSpec.reuse_frozen_layers
    dropout: float | None = None  # see TrainSpec.dropout
    # Where frozen blocks' states are shared between the trials of a run (None: this trial only).
    frozen_states: str | None = None

    def is_eval_step(self, step: int) -> bool:
        if self.eval_steps is not None:
            return step in self.eval_steps
        return step % self.eval_every == 0 or step == self.steps

    @classmethod
    def from_job(cls, task: Task, method: str, config: dict, steps: int | None = None) -> "TrialSettings":
        t = task.job.train
        methods.check_supports(method, task.model.architecture)
        return cls(
            method=methods.get(method).name,
            config=config,
            steps=steps or t.max_steps,
            batch_size=t.batch_size,
            micro_batch_size=t.micro_batch_size,
            warmup_ratio=t.warmup_ratio,
            weight_decay=t.weight_decay,
            max_grad_norm=t.max_grad_norm,
            eval_every=t.eval_every,
            eval_batch_size=task.job.eval.batch_size,
            seed=task.job.seed,
            loss=t.loss,
            class_bias=t.class_bias,
            reuse_frozen_layers=t.reuse_frozen_layers,
            dropout=t.dropout,
        )


@dataclass
class StepLog:
    step: int
    loss: float  # mean label-token NLL of this step's batch, nats
    examples_per_s: float  # over the trial so far
    lr: float
    seconds: float = 0.0  # wall-clock of this step
    tokens: int = 0  # tokens processed in this step, padding included


@dataclass
class TrialResult:
    method: str
    config: dict
    steps: int
    examples: int
    trainable_params: int
    total_params: int
    train_seconds: float
    eval_seconds: float
    examples_per_s: float
    padded_share: float  # share of processed tokens that were padding
    losses: list[tuple[int, float]] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    stop_reason: str = ""
    precision: dict = field(default_factory=dict)
    class_bias: list[float] | None = None  # the fitted per-class bias before training, nats
    class_bias_seconds: float = 0.0  # what fitting it took
    # Frozen blocks served from stored states (budgetft.methods.frozen_prefix): the lowest
    # trained block, and how many rows' states this trial computed and how many it reused.
    frozen_prefix: dict | None = None
    # iPET: what labelling rows for each later generation did (budgetft.scoring.pseudo_labels:
    # rows scored and added, chunks, seconds), and the seconds it took in all (not training's).
    pseudo_labels: list[dict] = field(default_factory=list)
    labelling_seconds: float = 0.0

    @property
    def final(self) -> dict:
        return self.evals[-1] if self.evals else {}


# The pace a trial's end is judged by: seconds per token over its last PACE_STEPS steps, times
# the data's mean tokens per step (a step's time follows its batch's length, and length-grouped
# batches vary: a README run's first 200 steps ran at 0.89 s a step, its whole trial at 0.69),
# once it has PACE_MIN_STEPS of them; a phase's first step is left out (allocation, caches, a
# store's first visits).
PACE_STEPS = 50
PACE_MIN_STEPS = 30


@dataclass
class _Schedule:
    """Linear warm-up, then linear decay to zero at `total` steps (of a phase). The end may move
    while the phase runs (a machine slower or faster than calibrated: run_trial's `horizon`):
    from the step where it moved, the factor then falls linearly from where it stood to zero at
    the new end, so the trial still ends decayed, without a jump."""

    warmup: int
    total: int
    cut_at: int | None = None  # the step the end moved at
    cut_factor: float = 0.0  # the factor there

    def factor(self, step: int) -> float:
        if self.cut_at is not None and step >= self.cut_at:
            return max(0.0, self.cut_factor * (self.total - step) / max(1, self.total - self.cut_at))
        if step < self.warmup:
            return (step + 1) / self.warmup
        return max(0.0, (self.total - step) / max(1, self.total - self.warmup))

    def end_at(self, step: int, total: int) -> None:
        """Decay from `step` (the next to run, counted in the phase) to zero at `total`."""
        self.cut_factor = self.factor(step)
        self.cut_at, self.total = step, total


def _pace(recent, mean_tokens: float) -> float:
    """Seconds a mean step takes at the recent rate: recent seconds per token (padding
    included) times the data's mean tokens per step; the plain mean of the recent steps where
    their tokens are unknown."""
    seconds = sum(s for s, _ in recent)
    tokens = sum(t for _, t in recent)
    if tokens <= 0 or mean_tokens <= 0:
        return seconds / len(recent)
    return seconds / tokens * mean_tokens


def _batches(task: Task, batch_size: int, seed: int):
    """An endless stream of length-grouped training batches, reshuffled every epoch."""
    rng = np.random.default_rng(seed)
    lengths = task.train.lengths
    while True:
        for idx in length_grouped_batches(lengths, batch_size, rng):
            yield idx


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
    Returns the result and the trained model."""
    import torch

    from budgetft.methods import phased
    from budgetft.models.loading import load_model
    from budgetft.telemetry.precision import apply_precision

    torch.manual_seed(settings.seed)
    device = pick_device()
    # A method whose phases train on prompt patterns (PET) or unlabelled rows (iPET) the job
    # lacks is refused before the model loads.
    phased.check_data(methods.get(settings.method), settings.config, len(task.job.prompt.templates), task.unlabelled_count > 0)
    if model is None:
        model = load_model(task.model)
    if settings.dropout is not None:  # the model's own, before the method adds modules of its own
        from budgetft.models.dropout import set_dropout

        set_dropout(model, settings.dropout)
    method = methods.get(settings.method)
    context = context_for(task.job, task.tokenizer)
    if method.phases is not None:  # e.g. MeZO, then the top k blocks
        parts = method.phases(settings.config)
        # Every phase's settings are checked now, on a model without weights (e.g. last_k's k
        # against the blocks), not after the first phase has been paid for.
        from budgetft.methods.counting import build_meta_model

        for part in parts:
            methods.check_supports(part.method, task.model.architecture)
        method.apply(build_meta_model(model.config, task.model.architecture, num_labels=len(task.class_names)), settings.config, context)
        parts = [(methods.get(p.method), dict(p.config), n, p) for p, n in zip(parts, phased.steps_of(parts, settings.steps))]
    else:
        parts = [(method, settings.config, settings.steps, None)]
    precision = precision_for(device)
    apply_precision(precision)
    context = replace(context, batch_backward=_batch_backward(task, settings, device, precision))
    loop = _Loop(task, settings, precision, on_step, on_eval, may_continue, on_phase, horizon)
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
        model.to(device)
        model.train()
        bias = getattr(model, class_bias.ATTRIBUTE, None)
        if bias is not None:  # fitted before the first phase, trained by every phase
            bias.requires_grad_(True)
        if len(parts) > 1:
            phased.remember_trained(model, i + 1)
        frozen = None
        if settings.reuse_frozen_layers and part.train_step is None:
            from budgetft.methods import frozen_prefix

            # States are shared between trials only when every trial's frozen weights are the
            # base model's: not after an earlier phase has moved them.
            folder = Path(settings.frozen_states) if settings.frozen_states and i == 0 else None
            identity = f"{task.model.describe()}@{task.model.revision}|{device}|{precision.to_dict()}|phase {i}"
            frozen = frozen_prefix.attach(model, identity, folder)
        try:
            if loop.result is None:
                loop.start(model, method)
            elif len(parts) > 1:  # a later phase may add what it trains (mezo_lst's side network)
                loop.result.trainable_params, loop.result.total_params = phased.count_trained(model)
                loop.refit_bias(model, phased.rows_for(rows, phase))
            if on_model:
                on_model(model)
            stopped = loop.train(model, part, config, steps, last=i == len(parts) - 1, rows=phased.rows_for(rows, phase))
            if frozen is not None:
                loop.note_frozen(frozen.summary())
        finally:
            if frozen is not None:
                frozen.detach()  # the model handed back is the method's own, with every block
        if stopped:
            break
    return loop.finish(), model


class _Loop:
    """The training loop of one trial, across its phases: one stream of batches, one step count,
    one result; each phase brings its own optimiser and learning-rate schedule."""

    def __init__(self, task: Task, settings: TrialSettings, precision, on_step, on_eval, may_continue, on_phase, horizon=None):
        self.task, self.settings, self.precision = task, settings, precision
        self.on_step, self.on_eval, self.may_continue, self.on_phase = on_step, on_eval, may_continue, on_phase
        self.horizon = horizon
        self.batches = _batches(task, settings.batch_size, settings.seed)
        self.micro = settings.micro_batch_size or settings.batch_size
        self.result: TrialResult | None = None
        self.step = 0
        self.tokens = self.padded = 0
        self.t_train = 0.0

    def start(self, model, method) -> None:
        """Count what trains, fit the verbalizer's class bias: once, before the first step."""
        trainable, total = count_model(model)
        if trainable == 0:
            raise RuntimeError(f"method {method.name} left no trainable parameters on this model")
        settings = self.settings
        bias, bias_seconds = None, 0.0
        if settings.class_bias == "fit" and scoring_of(model) is verbalizer:
            if self.on_phase:
                self.on_phase("training")  # fitting the classifier's bias is training, paid as such
            t0 = time.perf_counter()
            bias = class_bias.fit_on_training_rows(model, self.task, settings.seed, self.precision, batch_size=settings.eval_batch_size)
            class_bias.attach(model, bias)
            bias_seconds = time.perf_counter() - t0
        self.result = TrialResult(method.name, dict(settings.config), 0, 0, trainable, total, 0.0, 0.0, 0.0, 0.0, precision=self.precision.to_dict())
        self.result.class_bias = None if bias is None else [round(float(b), 6) for b in bias]
        self.result.class_bias_seconds = bias_seconds

    def pseudo_label(self, model, factor: float, generation: int, examples: int | None = None) -> Task | None:
        """The trial's task with its training rows (those a member drawing `examples` rows can
        use) plus `factor` times as many unlabelled rows labelled by the model as it stands (the
        last generation's ensemble: budgetft.scoring.pseudo_labels), from which the batches of
        the generation's phases are then drawn; None
        when may_continue refuses the work (the trial's stop_reason says so). The rows are
        scored in chunks of as many rows as an evaluation scores, by as many members, each
        paid for as an evaluation is: may_continue("evaluation") before it."""
        from budgetft.scoring.pseudo_labels import pseudo_labelled

        def before_chunk(k: int, chunks: int) -> bool:
            if self.may_continue is not None and not self.may_continue("evaluation"):
                self.result.stop_reason = "stopped before labelling rows for generation %d (part %d of %d): not paid for" % (generation, k + 1, chunks)
                return False
            if self.on_phase:
                self.on_phase("labelling")  # scoring rows: paid as an evaluation, not timed as one
            return True

        t0 = time.perf_counter()
        seed = self.settings.seed + generation
        try:
            rows, info = pseudo_labelled(model, self.task, factor, seed, self.settings.eval_batch_size, self.precision,
                                         chunk_rows=len(self.task.eval), before_chunk=before_chunk, examples=examples)
        finally:
            if self.on_phase:
                self.on_phase("training")
        seconds = time.perf_counter() - t0
        self.result.labelling_seconds += seconds
        self.result.pseudo_labels.append({"generation": generation, **info, "seconds": round(seconds, 3)})
        if rows is None:
            return None
        self.batches = _batches(rows, self.settings.batch_size, seed)
        return rows

    def may_fit_bias(self, phase, index: int) -> bool:
        """Before a phase whose adapter joins an ensemble (PET's later members) is applied: its
        member will need a class bias of its own (refit_bias), paid for now, before the member
        joins, as an evaluation is (FIT_ROWS rows scored by one member: no more than an
        evaluation by the members so far). False, with the trial's stop_reason, when may_continue
        refuses it: the model then stays the ensemble of the members so far."""
        if phase is None or phase.adapter is None or self.result is None or self.result.class_bias is None or self.may_continue is None:
            return True
        if self.may_continue("evaluation"):
            return True
        self.result.stop_reason = "stopped before phase %d (%s) after step %d: fitting its class bias is not paid for" % (index + 1, phase.adapter, self.step)
        return False

    def refit_bias(self, model, rows: Task) -> None:
        """A later phase whose method put the class bias away (a new member of an ensemble of
        adapters: budgetft.methods.ensemble) gets its own, fitted as the first phase's was, on
        its own encoding of the training rows (`rows`): each member has its pattern's prior.
        Paid for before the member joined (may_fit_bias)."""
        if self.result.class_bias is None or getattr(model, class_bias.ATTRIBUTE, None) is not None:
            return
        if self.on_phase:
            self.on_phase("training")
        t0 = time.perf_counter()
        bias = class_bias.fit_on_training_rows(model, rows, self.settings.seed, self.precision, batch_size=self.settings.eval_batch_size)
        class_bias.attach(model, bias)
        self.result.class_bias_seconds += time.perf_counter() - t0

    def note_frozen(self, summary: dict) -> None:
        old = self.result.frozen_prefix
        if old is not None:  # a second phase with a frozen prefix: add up the rows
            summary = {**summary, "rows_computed": old["rows_computed"] + summary["rows_computed"], "rows_reused": old["rows_reused"] + summary["rows_reused"]}
        self.result.frozen_prefix = summary

    def train(self, model, method, config: dict, steps: int, last: bool = True, rows: Task | None = None) -> bool:
        """`steps` optimiser steps of `method` (one phase); True if the trial stopped early.
        In the trial's last phase, `horizon` may move its end (see run_trial). rows: the
        task whose training rows the phase trains on (the same rows under the phase's prompt
        pattern: budgetft.methods.phased.rows_for); evaluation stays on the trial's task."""
        import torch

        from budgetft.telemetry.precision import grad_scaler

        settings, task, precision, result = self.settings, self.task, self.precision, self.result
        train_task = rows if rows is not None else task
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(_param_groups(model, params), lr=float(config["learning_rate"]), weight_decay=settings.weight_decay)
        schedule = _Schedule(math.ceil(settings.warmup_ratio * steps), steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule.factor)
        offset = virtual_token_offset(model)
        scaler = grad_scaler(precision)  # scales only for fp16
        start, end = self.step, self.step + steps
        recent: deque[tuple[float, int]] = deque(maxlen=PACE_STEPS)  # (seconds, tokens) of recent steps
        mean_tokens = mean_step_tokens(train_task, settings.batch_size) if self.horizon is not None else 0.0
        while self.step < end:
            step = self.step + 1
            if self.may_continue is not None and not self.may_continue("step"):
                result.stop_reason = "stopped before step %d: not paid for" % step
                return True
            idx = next(self.batches)
            t0 = time.perf_counter()
            while True:
                try:
                    if method.train_step is not None:  # its own update, e.g. MeZO: forward passes only
                        micro = self.micro
                        batch_loss = lambda: _accumulate(model, train_task, idx, micro, offset, settings.loss, precision, backward=False)  # noqa: E731
                        lr = scheduler.get_last_lr()[0]
                        loss, step_tokens, step_padded = method.train_step(model, params, batch_loss, lr, config)
                    else:
                        loss, step_tokens, step_padded = _accumulate(model, train_task, idx, self.micro, offset, settings.loss, precision, scaler)
                    break
                except torch.OutOfMemoryError:
                    if self.micro == 1:
                        raise
                    self.micro = max(1, self.micro // 2)  # gradient accumulation takes up the slack
                    optimizer.zero_grad(set_to_none=True)
                    torch.cuda.empty_cache()
            if method.train_step is None:
                scaler.unscale_(optimizer)  # clip the true gradients, not fp16-scaled ones
                torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                if method.after_step is not None:  # e.g. AdaLoRA's rank allocation, reads the gradients
                    method.after_step(model, step, start + schedule.total)  # the phase's end, moved nearer if cut
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step_seconds = time.perf_counter() - t0
            self.step = step
            self.t_train += step_seconds
            self.tokens += step_tokens
            self.padded += step_padded
            result.steps = step
            result.examples += len(idx)
            result.losses.append((step, loss))
            if self.on_step:
                self.on_step(StepLog(step, loss, result.examples / self.t_train, scheduler.get_last_lr()[0], step_seconds, step_tokens))
            if step > start + 1:
                recent.append((step_seconds, step_tokens))
            if last and self.horizon is not None and len(recent) >= PACE_MIN_STEPS and step < end:
                new_end = max(step, int(self.horizon(step, _pace(recent, mean_tokens), end)))
                if new_end != end:
                    end = new_end
                    schedule.end_at(scheduler.last_epoch, end - start)
                    for group, base in zip(optimizer.param_groups, scheduler.base_lrs):  # the next step's rate, already set
                        group["lr"] = base * schedule.factor(scheduler.last_epoch)
            planned = start + steps
            # A moved end is evaluated, and the planned one no longer is (the rungs before both stay).
            evaluate_now = settings.is_eval_step(step) if end == planned else (step == end or (settings.is_eval_step(step) and step < min(end, planned)))
            if evaluate_now:
                if self.may_continue is not None and not self.may_continue("evaluation"):
                    result.stop_reason = "stopped before the evaluation at step %d: not paid for" % step
                    return True
                t1 = time.perf_counter()
                if self.on_phase:
                    self.on_phase("evaluating")
                metrics = evaluate(model, task, settings.eval_batch_size)
                if self.on_phase:
                    self.on_phase("training")
                result.eval_seconds += time.perf_counter() - t1
                metrics["step"] = step
                since = result.evals[-1]["step"] if result.evals else 0
                metrics["train_loss"] = float(np.mean([loss for s, loss in result.losses if s > since]))
                result.evals.append(metrics)
                if self.on_eval and self.on_eval(step, metrics):
                    return True
        return False

    def finish(self) -> TrialResult:
        result = self.result
        result.train_seconds = self.t_train
        result.examples_per_s = result.examples / self.t_train if self.t_train else 0.0
        result.padded_share = self.padded / self.tokens if self.tokens else 0.0
        return result


def _batch_backward(task: Task, settings: TrialSettings, device, precision) -> Callable[[object], float]:
    """ApplyContext.batch_backward for this trial: batches from a stream of their own with the
    trial's seed (the batches training starts with; the trial's own stream is not advanced)."""
    batches = _batches(task, settings.batch_size, settings.seed)
    micro = settings.micro_batch_size or settings.batch_size

    def backward(model) -> float:
        model.to(device)  # the method looks at the data where training will run
        loss, _, _ = _accumulate(model, task, next(batches), micro, virtual_token_offset(model), settings.loss, precision)
        return loss

    return backward


def _param_groups(model, params: list) -> list:
    """AdamW's parameter groups: one, unless the method trains only some entries of some tensors
    (counting.partially_trained, fish_mask's fixed mask). Those get no weight decay: AdamW's
    decoupled decay shrinks every entry of a tensor, the entries the mask keeps fixed too."""
    names, _ = partially_trained(model)
    if not names:
        return params
    partial = {id(p) for n, p in model.named_parameters() if n in names}
    groups = [{"params": [p for p in params if id(p) not in partial]}, {"params": [p for p in params if id(p) in partial], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _accumulate(
    model, task: Task, idx: np.ndarray, micro: int, offset: int, loss_kind: str = "classes",
    precision=None, scaler=None, backward: bool = True,
):
    """Forward/backward over micro-batches of one batch; the gradients add up to the batch's
    mean loss (per row for "classes", per label token for "lm"). Forward only if not backward
    (zeroth-order methods). Forward passes run under the precision's autocast; the backward
    pass goes through the scaler (which scales only for fp16).
    Returns (loss, tokens, padding tokens)."""
    from contextlib import nullcontext

    from budgetft.telemetry.precision import autocast

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
