"""The training loop of one trial across its phases (Loop): one stream of batches, one step
count, one result; each phase brings its own optimiser and learning-rate schedule. Before every
step and evaluation it asks may_continue (the payment protocol's hook); in the last phase it asks
horizon where the money ends, and moves the schedule's end there.

torch is imported inside the methods that step: importing this module must stay cheap.
"""

from __future__ import annotations

import math
import time
from collections import deque

import numpy as np

from budgetft.methods.counting import count_model
from budgetft.planner.rates import mean_step_tokens
from budgetft.scoring import class_bias, verbalizer
from budgetft.scoring import pseudo_labels
from budgetft.scoring.rows import evaluate, scoring_of, virtual_token_offset
from budgetft.task import Task
from budgetft.telemetry.precision import grad_scaler
from budgetft.train import checkpoint, memory, steps
from budgetft.train.schedule import PACE_MIN_STEPS, PACE_STEPS, Schedule, pace
from budgetft.train.settings import StepLog, TrialResult, TrialSettings

# Imported inside functions: torch: importing this module must stay cheap (start-up time).


class Loop:
    """The training loop of one trial, across its phases: one stream of batches, one step count,
    one result; each phase brings its own optimiser and learning-rate schedule."""

    def __init__(self, task: Task, settings: TrialSettings, precision, on_step, on_eval, may_continue, on_phase, horizon=None,
                 memory: dict | None = None):
        self.task, self.settings, self.precision = task, settings, precision
        self.on_step, self.on_eval, self.may_continue, self.on_phase = on_step, on_eval, may_continue, on_phase
        self.horizon = horizon
        self.batches = steps.batches(task, settings.batch_size, settings.seed)
        self.micro = settings.micro_batch_size or settings.batch_size
        self.result: TrialResult | None = None
        self.step = 0
        self.tokens = self.padded = 0
        self.t_train = 0.0
        self.score_batch = settings.eval_batch_size  # halved for good when a scoring pass runs out of memory
        # Where the trial's weights live, its micro-batch, the longest batch it met and what out of
        # memory shrank (TrialResult.memory); the caller's dict when it gives one (a worker's
        # trial.json shows it while the trial runs).
        self.memory: dict = memory if memory is not None else {}
        self.memory.setdefault("shrunk", [])
        self.memory["micro_batch"] = self.micro
        self.label_tokens = max(map(len, task.class_tokens)) if task.class_tokens else 0
        # Checkpoints (budgetft.train.checkpoint): every `checkpoint_every` steps of the last
        # phase, `checkpoint(step, end, model, optimizer, scheduler, schedule)` writes one; `resume`,
        # a checkpoint's state, is where the first train() goes on from.
        self.checkpoint_every: int | None = None
        self.checkpoint = None
        self.resume: dict | None = None

    def start(self, model, method) -> None:
        """Count what trains, fit the verbalizer's class bias: once, before the first step."""
        trainable, total = count_model(model)
        if trainable == 0:
            raise RuntimeError(f"method {method.name} left no trainable parameters on this model")
        settings = self.settings
        bias, bias_seconds = None, 0.0
        if settings.class_bias == "fit" and scoring_of(model) is verbalizer and getattr(model, class_bias.ATTRIBUTE, None) is None:  # (a checkpoint's is restored)
            if self.on_phase:
                self.on_phase("training")  # fitting the classifier's bias is training, paid as such
            t0 = time.perf_counter()
            bias = self._fit_bias(model, self.task)
            class_bias.attach(model, bias)
            bias_seconds = time.perf_counter() - t0
        self.result = TrialResult(method.name, dict(settings.config), 0, 0, trainable, total, 0.0, 0.0, 0.0, 0.0, precision=self.precision.to_dict())
        self.result.memory = self.memory
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
            rows, info = pseudo_labels.pseudo_labelled(model, self.task, factor, seed, self.settings.eval_batch_size, self.precision,
                                         chunk_rows=len(self.task.eval), before_chunk=before_chunk, examples=examples)
        finally:
            if self.on_phase:
                self.on_phase("training")
        seconds = time.perf_counter() - t0
        self.result.labelling_seconds += seconds
        self.result.pseudo_labels.append({"generation": generation, **info, "seconds": round(seconds, 3)})
        if rows is None:
            return None
        self.batches = steps.batches(rows, self.settings.batch_size, seed)
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
        adapters: budgetft.scoring.ensemble) gets its own, fitted as the first phase's was, on
        its own encoding of the training rows (`rows`): each member has its pattern's prior.
        Paid for before the member joined (may_fit_bias)."""
        if self.result.class_bias is None or getattr(model, class_bias.ATTRIBUTE, None) is not None:
            return
        if self.on_phase:
            self.on_phase("training")
        t0 = time.perf_counter()
        bias = self._fit_bias(model, rows)
        class_bias.attach(model, bias)
        self.result.class_bias_seconds += time.perf_counter() - t0

    def _fit_bias(self, model, rows: Task):
        """The class bias fitted on `rows`, its scoring batch halved on out of memory."""
        def fit(batch: int):
            return class_bias.fit_on_training_rows(model, rows, self.settings.seed, self.precision, batch_size=batch)

        bias, self.score_batch = memory.shrinking(fit, self.score_batch, "class-bias batch", self.memory["shrunk"], at=self.step)
        return bias

    def evaluate(self, model) -> dict:
        """The selection rows scored, the scoring batch halved on out of memory."""
        metrics, self.score_batch = memory.shrinking(lambda batch: evaluate(model, self.task, batch), self.score_batch,
                                                     "evaluation batch", self.memory["shrunk"], at=self.step)
        return metrics

    def note_frozen(self, summary: dict) -> None:
        old = self.result.frozen_prefix
        if old is not None:  # a second phase with a frozen prefix: add up the rows
            summary = {**summary, "rows_computed": old["rows_computed"] + summary["rows_computed"], "rows_reused": old["rows_reused"] + summary["rows_reused"]}
        self.result.frozen_prefix = summary

    def train(self, model, method, config: dict, n_steps: int, last: bool = True, rows: Task | None = None) -> bool:
        """`n_steps` optimiser steps of `method` (one phase); True if the trial stopped early.
        In the trial's last phase, `horizon` may move its end (see run_trial). rows: the
        task whose training rows the phase trains on (the same rows under the phase's prompt
        pattern: budgetft.train.phases.rows_for); evaluation stays on the trial's task."""
        import torch

        settings, task, precision, result = self.settings, self.task, self.precision, self.result
        train_task = rows if rows is not None else task
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(steps.param_groups(model, params), lr=float(config["learning_rate"]), weight_decay=settings.weight_decay)
        schedule = Schedule(math.ceil(settings.warmup_ratio * n_steps), n_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule.factor)
        offset = virtual_token_offset(model)
        scaler = grad_scaler(precision)  # scales only for fp16
        start, end = self.step, self.step + n_steps
        if self.resume is not None:  # going on from a checkpoint: its step, schedule, optimiser state and data order
            state, self.resume = self.resume, None
            checkpoint.restore_training(state, optimizer, scheduler, schedule, self.batches)
            self.step = result.steps = int(state["step"])
            result.examples = int(state["examples"])
            end = int(state["end"])
        recent: deque[tuple[float, int]] = deque(maxlen=PACE_STEPS)  # (seconds, tokens) of recent steps
        mean_tokens = mean_step_tokens(train_task, settings.batch_size) if self.horizon is not None else 0.0
        while self.step < end:
            step = self.step + 1
            if self.may_continue is not None and not self.may_continue("step"):
                result.stop_reason = "stopped before step %d: not paid for" % step
                return True
            idx = next(self.batches)
            longest = max(len(train_task.train.prompts[i]) for i in idx) + self.label_tokens
            self.memory["longest_tokens"] = max(longest, self.memory.get("longest_tokens") or 0)  # what the peak was reached on
            t0 = time.perf_counter()
            while True:
                try:
                    if method.train_step is not None:  # its own update, e.g. MeZO: forward passes only
                        micro = self.micro
                        batch_loss = lambda: steps.accumulate(model, train_task, idx, micro, offset, settings.loss, precision, backward=False)  # noqa: E731
                        lr = scheduler.get_last_lr()[0]
                        loss, step_tokens, step_padded = method.train_step(model, params, batch_loss, lr, config)
                    else:
                        loss, step_tokens, step_padded = steps.accumulate(model, train_task, idx, self.micro, offset, settings.loss, precision, scaler)
                    break
                except BaseException as exc:
                    if not memory.is_out_of_memory(exc) or self.micro == 1:
                        raise
                    smaller = max(1, self.micro // 2)  # gradient accumulation takes up the slack
                    self.memory["shrunk"].append({"what": "micro-batch", "at": step, "from": self.micro, "to": smaller})
                    self.micro = self.memory["micro_batch"] = smaller
                    optimizer.zero_grad(set_to_none=True)
                    memory.free_cached()
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
                new_end = max(step, int(self.horizon(step, pace(recent, mean_tokens), end)))
                if new_end != end:
                    end = new_end
                    schedule.end_at(scheduler.last_epoch, end - start)
                    for group, base in zip(optimizer.param_groups, scheduler.base_lrs):  # the next step's rate, already set
                        group["lr"] = base * schedule.factor(scheduler.last_epoch)
            planned = start + n_steps
            # A moved end is evaluated, and the planned one no longer is (the rungs before both stay).
            evaluate_now = settings.is_eval_step(step) if end == planned else (step == end or (settings.is_eval_step(step) and step < min(end, planned)))
            if evaluate_now:
                if self.may_continue is not None and not self.may_continue("evaluation"):
                    result.stop_reason = "stopped before the evaluation at step %d: not paid for" % step
                    return True
                t1 = time.perf_counter()
                if self.on_phase:
                    self.on_phase("evaluating")
                metrics = self.evaluate(model)
                if self.on_phase:
                    self.on_phase("training")
                result.eval_seconds += time.perf_counter() - t1
                metrics["step"] = step
                since = result.evals[-1]["step"] if result.evals else 0
                metrics["train_loss"] = float(np.mean([loss for s, loss in result.losses if s > since]))
                result.evals.append(metrics)
                if self.on_eval and self.on_eval(step, metrics):
                    return True
            if last and self.checkpoint is not None and self.checkpoint_every and step % self.checkpoint_every == 0 and step < end:
                self.checkpoint(step, end, model, optimizer, scheduler, schedule)
        return False

    def finish(self) -> TrialResult:
        result = self.result
        result.train_seconds = self.t_train
        result.examples_per_s = result.examples / self.t_train if self.t_train else 0.0
        result.padded_share = self.padded / self.tokens if self.tokens else 0.0
        return result


