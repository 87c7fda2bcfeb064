"""The Ray Tune trial function: one trial of one method configuration, in a worker process.

It keeps `trials/<id>/trial.json` current (the driver and reports read it while the run goes
on), saves the weights whenever the accuracy improves, and before every step and evaluation
waits until that work is paid for (the payment protocol in budgetft.money.machine_meter): a
worker never trains on money the run does not have, and a slow step is never taken for a dead
driver.

ASHA needs one clock for all trials, but each method has its own rung steps (g, gη, gη²): the
trial reports `rung_time` = step / g, so every method's rungs fall at 1, η, η² on one scale.

However a trial ends, its trial.json says how, in words (`status`, `stop_reason`, `error`): a
trial that stops before its first report returns normally (Tune's strict metric check is off),
an exception is recorded and re-raised for Tune to mark the trial as errored (never fatal to
the run), and a worker killed outright is settled by the driver's tracker.

On a cluster the worker works in a scratch run directory on its own node and sends what the run
keeps home through Ray (`home`: budgetft.tune.home); on one machine it works in the run's.
The trial's entry point, which Ray calls, is budgetft.tune.trial_entry.train_trial.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from budgetft import methods
from budgetft.methods.counting import count_model
from budgetft.methods.phased import scoring_passes
from budgetft.money.machine_meter import wait_for_payment
from budgetft.quiet import quiet_libraries
from budgetft.rundir import RunDir, TrialRecord, utc_now
from budgetft.scoring import ensemble
from budgetft.scoring.class_bias import class_bias_of
from budgetft.spec import validate_job
from budgetft.task import prepare_task
from budgetft.telemetry.cpu_share import use_free_cores
from budgetft.train import checkpoint as trial_checkpoint
from budgetft.train import frozen_prefix
from budgetft.train.trial import TrialSettings, run_trial
from budgetft.track.tensorboard import TrialCurves
from budgetft.tune.home import FileHome
from budgetft.tune.trial_files import read_phase, save_weights, write_phase  # noqa: F401 - read_phase: the tests read it here

# Imported inside functions: ray, torch: importing this module must stay cheap (start-up time).

# When the money moves a trial's last step (Worker.horizon), the new end leaves, before the
# meter's stop (money_ends, which already keeps the meter's lookahead): one meter slice and a
# second of file and clock lag (s); each evaluation's time up to the new end with a quarter
# more, as evaluations vary with the rows' lengths; a tenth more per step than the recent pace;
# and 3% of the steps left (BELOW), so that the next steps' noise does not move it again. Growing
# keeps the same margins, and moves only for at least EXTEND_MIN_STEPS and EXTEND_MIN_SHARE of the
# steps left: after a cut (to 97%), only a pace clearly faster than the one that cut it grows it
# back, while near the end a few dozen more steps still count. A pace judged early runs slow
# (two README runs: 1.09 and 0.89 s a step by step 160-211, 0.94 and 0.69 over the whole trial),
# and a blip cuts too (0.88 s over 50 steps at step 1,010 of a trial that ran at 0.66): growing
# only by 5% of the whole trial, to 90% of what the money bought, left 7-8% of two idle $0.25
# runs' caps unspent (benchmarks/README.md, "What $0.25 bought").
CUT_SLACK_S = 6.0
CUT_EVAL_MARGIN = 1.25
CUT_STEP_MARGIN = 1.10
BELOW = 0.97  # of the steps the money buys, when the end moves either way
EXTEND_MIN_STEPS = 10
EXTEND_MIN_SHARE = 0.05


@dataclass
class Worker:
    """The state of one trial in its worker process, shared by the loop's callbacks."""

    spec: dict  # {trial_id, method, config, max_steps, grace, eval_steps, [step_s, eval_s, eval_passes]}
    ctx: dict  # {run_dir, job, threads, session, [chaos]}
    run: RunDir
    record: TrialRecord
    t_start: float = field(default_factory=time.perf_counter)
    step_s: float = 0.0  # the last step's wall time (a prediction of the next), seconds
    eval_s: float = 0.0  # the last evaluation's wall time, seconds
    # The last evaluation's wall time per member of the model's ensemble (PET scores each row once
    # per member, and a later evaluation scores more members than an earlier one): what the next
    # evaluation is expected to take, times its members (eval_estimate). A model that is no
    # ensemble has one member.
    eval_member_s: float = 0.0
    best: float = -1.0  # best accuracy so far: its weights are kept
    model: object = None
    curves: TrialCurves | None = None  # its TensorBoard curves (budgetft.track): each callback only queues
    # The loop's evaluation steps (its TrialSettings.eval_steps, the same list): an evaluation
    # the money would otherwise miss is added here (evaluate_before_money_ends).
    eval_steps: list | None = None
    last_evaluation: int | None = None  # the step evaluated early because the money was ending
    _eval_started: float = 0.0
    _eval_members: int = 1
    _shrunk_saved: int = 0
    # Where what the run keeps goes and the meter is heard from (budgetft.tune.home): the run
    # directory itself on one machine, the run's actor on a cluster (`run` is then a scratch).
    home: object = None

    def __post_init__(self) -> None:
        if self.home is None:
            self.home = FileHome(self.run)

    @property
    def trial_id(self) -> str:
        return self.spec["trial_id"]

    @property
    def folder(self) -> Path:
        return self.run.trial_dir(self.trial_id)

    def save(self) -> None:
        self.run.write_trial(self.record)
        self.home.record(self.record)

    def meter_state(self) -> dict:
        return self.home.meter_state() or {}

    def announce(self, phase: str, next_s: float) -> None:
        """What the worker does and how long its next piece of work takes, where the meter reads it."""
        write_phase(self.folder, phase, next_s)
        self.home.phase(self.trial_id, phase, next_s)

    def keep_weights(self) -> None:
        """The model's weights now, as the trial's kept weights (sent home on a cluster)."""
        save_weights(self.model, self.spec, self.run.weights_dir(self.trial_id))
        self.home.sent(self.run.weights_dir(self.trial_id), "the trial's weights")

    # -- the loop's callbacks

    def on_model(self, model) -> None:
        # Recorded now: a trial that Tune stops never returns from run_trial.

        first = self.model is None  # a phased method hands on its model again at each phase
        self.model = model
        if first:
            self.record.trainable_params, self.record.total_params = count_model(model)
            self.record.class_bias = class_bias_of(model)  # as fitted, before step 1

    def may_continue(self, what: str) -> bool:
        """Before a step or an evaluation: announce its expected length, then wait until it
        is paid for. False (with the reason recorded) when the money is spent, the run was
        resumed elsewhere, or the driver has been silent far beyond any step."""
        if what == "step":
            if self.last_evaluation is not None and self.record.steps >= self.last_evaluation:
                self.record.stop_reason, self.record.stopped_by_meter = (
                    f"the money ends before its next evaluation: evaluated at step {self.last_evaluation} and stopped there", True)
                return False
            self.evaluate_before_money_ends(self.record.steps + 1)
            next_s = self.step_s or float(self.spec.get("step_s") or 0.0)
            phase = "training"
        elif what == "checkpoint":  # written while training, priced into its steps by the plan
            next_s, phase = float(self.spec.get("checkpoint_s") or 0.0), "training"
        else:  # an evaluation, or as long a piece of scoring (iPET's labelling: budgetft.train.loop)
            next_s = self.eval_estimate()
            phase = "evaluating"
        self.announce(phase, next_s)
        read = self.home.meter_state if self.home.cluster else None  # one machine: the meter file, as always
        verdict = wait_for_payment(self.run.root, next_s, session=self.ctx.get("session"), read=read)
        if not verdict.ok:
            self.record.stop_reason, self.record.stopped_by_meter = verdict.reason, verdict.by_cap
        return verdict.ok

    def horizon(self, step: int, step_s: float, end: int) -> int:
        """The last step this trial should train to, given the run's money and the trial's pace
        (`step_s` seconds a step lately), keeping time for every evaluation up to it: `end` (the
        current last step) when it fits. The meter publishes when its stop will come
        (money_ends). On a machine slower than its calibration (a busy neighbour) the cap would
        otherwise cut the trial mid-schedule, its learning rate undecayed and its one evaluation
        never run: the end moves nearer. On a faster one (a calibration of three steps taken
        while something else ran) the money would sit idle: where the plan allows it (a round's
        only trial: spec["extend_to"], the job's max_steps), the end moves further, also back
        after a cut. If the money ends before the last evaluation, the weights are kept first.
        Each move is recorded on the trial (and in its report)."""
        state = self.meter_state()
        ends = state.get("money_ends")
        if ends is None or step_s <= 0 or state.get("stop"):
            return end  # no end in sight, or the cap has already spoken: may_continue stops it
        eval_s = self.eval_estimate(self.final_members())  # the last phase's evaluations score every member
        evals_at = sorted(int(s) for s in self.spec.get("eval_steps") or [])
        left = float(ends) - time.time() - CUT_SLACK_S
        affordable = end
        for _ in range(3):  # every evaluation before the new end costs its time too (ASHA's rungs)
            evals = 1 + sum(1 for s in evals_at if step < s < affordable)
            affordable = step + max(0, math.floor((left - CUT_EVAL_MARGIN * eval_s * evals) / (CUT_STEP_MARGIN * step_s)))
        target = max(step, step + math.floor(BELOW * (affordable - step)))
        if affordable >= end:
            limit = int(self.spec.get("extend_to") or 0)
            if limit <= end:
                return end
            target = min(limit, step + math.floor(BELOW * (affordable - step)))
            if target - end < max(EXTEND_MIN_STEPS, EXTEND_MIN_SHARE * (end - step)):
                return end  # grown only by a clear margin, so that noise does not move the end to and fro
        moved = self.record.end_moved or {"planned": self.spec["max_steps"]}
        self.record.end_moved = {**moved, "to": target, "at": step, "step_s": round(step_s, 3)}
        if target <= step + 1 and not self.record.evals:
            # The money ends now: keep these weights before the last evaluation, which the cap's
            # stop may still cut short, so that the held-out test has a model to score.
            self.keep_weights()
            self.record.best_step = step
        self.save()
        return target

    def evaluate_before_money_ends(self, step: int) -> None:
        """Before step `step`: when the money (money_ends, with the horizon's margins) pays for
        neither the steps to the next evaluation and it, nor two more steps and an evaluation,
        this step is evaluated and the trial stops after it. The cap then never lands between
        a trial's last steps and its last evaluation, also where the horizon does not reach (a
        short trial, before it knows its pace: PACE_MIN_STEPS)."""
        if self.eval_steps is None or step in self.eval_steps or self.last_evaluation is not None:
            return
        state = self.meter_state()
        step_s = CUT_STEP_MARGIN * (self.step_s or float(self.spec.get("step_s") or 0.0))
        if state.get("money_ends") is None or state.get("stop") or step_s <= 0:
            return
        end = int((self.record.end_moved or {}).get("to") or self.spec["max_steps"])
        to_eval = min([s for s in self.eval_steps if s >= step] + [end]) - step + 1
        left = float(state["money_ends"]) - time.time() - CUT_SLACK_S - CUT_EVAL_MARGIN * self.eval_estimate(self.final_members())
        if to_eval <= 1 or left >= step_s * min(to_eval, 2):
            return  # paid to the next evaluation, or a later step (or the horizon) still can be
        self.eval_steps.append(step)
        self.last_evaluation = step

    def members_now(self) -> int:
        """How many members the model scores a row with now: its ensemble's (PET), else one."""
        return max(1, len(ensemble.members(self.model))) if self.model is not None else 1

    def final_members(self) -> int:
        """How many members the trial's model scores with in its last phase: one per pattern of
        its last generation for PET and iPET (budgetft.methods.phased.scoring_passes), else one."""
        try:
            method = methods.get(self.spec["method"])
            return scoring_passes(method, method.config(self.spec.get("config") or {}))
        except (KeyError, ValueError):
            return 1

    def eval_estimate(self, members: int | None = None) -> float:
        """Seconds an evaluation (or a chunk of iPET's labelling, as many rows by as many
        members) is expected to take with `members` members (default: the model's now): the last
        evaluation's time per member, or, before one, the plan's time for an evaluation
        (spec eval_s, priced for spec eval_passes members) per member."""
        per_member = self.eval_member_s or float(self.spec.get("eval_s") or 0.0) / max(1, int(self.spec.get("eval_passes") or 1))
        return per_member * (self.members_now() if members is None else members)

    def on_phase(self, phase: str) -> None:
        if phase == "evaluating":
            self._eval_started = time.perf_counter()
            self._eval_members = self.members_now()
        elif self._eval_started:
            self.eval_s = time.perf_counter() - self._eval_started
            self.eval_member_s = self.eval_s / self._eval_members
            self._eval_started = 0.0
        if phase == "labelling":
            # iPET's labelling scores rows as an evaluation does and is paid as one, but its chunks
            # are not the selection rows: its time is no evaluation's estimate.
            self.announce("evaluating", self.eval_estimate())
            return
        # (while evaluating: the last evaluation's time, per member times the members now)
        self.announce(phase, self.eval_member_s * self.members_now() if phase == "evaluating" else self.step_s)

    def on_step(self, log) -> None:
        if log.step == 1:  # what a trial costs before it learns anything, for future plans
            self.record.startup_s = round(time.perf_counter() - self.t_start - log.seconds, 2)
        shrunk = len((self.record.memory or {}).get("shrunk") or [])
        if shrunk != self._shrunk_saved:  # out of memory halved a batch: say so now, not at the next evaluation
            self._shrunk_saved = shrunk
            self.save()
        self.step_s = log.seconds
        self.record.steps, self.record.examples = log.step, log.step * (self.record.batch_size or 0)
        self.record.examples_per_s = log.examples_per_s
        if self.curves is not None:
            self.curves.step(log)

    def on_checkpoint(self, step: int, end: int, model, optimizer, scheduler, schedule) -> None:
        """The trial's training state at `step`, when it is paid for (budgetft.train.checkpoint):
        an interruption from here loses only the steps after it."""
        if not self.may_continue("checkpoint"):
            return  # the next step's payment stops the trial and says why
        t0 = time.perf_counter()
        nbytes = trial_checkpoint.save(self.folder, model, self.spec["method"], self.spec["config"], optimizer, scheduler, schedule,
                                       step=step, end=end, examples=step * (self.record.batch_size or 0))
        self.record.checkpoint = {"step": step, "end": end, "at": utc_now(), "bytes": nbytes, "seconds": round(time.perf_counter() - t0, 3),
                                  "folder": trial_checkpoint.CHECKPOINT_DIR}
        self.home.sent(trial_checkpoint.folder_of(self.folder), "the trial's checkpoint")
        self.record.steps = max(self.record.steps, step)
        self.save()

    def on_eval(self, step: int, metrics: dict) -> None:
        from ray import tune

        metrics = dict(metrics, elapsed_s=time.perf_counter() - self.t_start, cost_usd=self.home.cost(self.trial_id))
        self.record.evals.append(metrics)
        if self.curves is not None:
            self.curves.evaluated(step, metrics)
        self.record.frozen_prefix = frozen_prefix.summary(self.model)  # Tune may stop the trial at this report
        if metrics["accuracy"] > self.best:
            self.best = metrics["accuracy"]
            self.record.best_step = step
            self.keep_weights()
        self.save()
        tune.report(
            {
                "rung_time": step / self.spec["grace"],
                "step": step,
                "accuracy": metrics["accuracy"],
                "balanced_accuracy": metrics["balanced_accuracy"],
                "eval_loss": metrics["eval_loss"],
                "trial_id": self.trial_id,
            }
        )


def _train(worker: Worker) -> None:
    spec, record = worker.spec, worker.record
    quiet_libraries()

    # The trial's share of the cores, fewer if a neighbour keeps some busy (a thread on a busy
    # core holds back every other: budgetft.telemetry.cpu_share).
    record.threads = use_free_cores(int(worker.ctx.get("threads") or os.cpu_count() or 1))
    job = validate_job(worker.ctx["job"])
    task = prepare_task(job.variant(spec.get("model") or job.model.name))
    settings = TrialSettings.from_job(task, spec["method"], spec["config"], steps=spec["max_steps"])
    settings.eval_steps = list(spec["eval_steps"])
    worker.eval_steps = settings.eval_steps  # the same list: the worker may add the evaluation the money can still pay for
    layout = spec.get("memory") or {}  # the memory plan's choices for this GPU (budgetft.planner.memory_plan)
    if layout.get("micro_batch"):
        settings.micro_batch_size = int(layout["micro_batch"])
    if layout.get("checkpointing") is not None:
        settings.checkpointing = bool(layout["checkpointing"])
    settings.frozen_states = str(worker.run.frozen_states)  # shared with the run's other trials
    record.batch_size = settings.batch_size
    # Kept current by the loop (what out of memory shrank) and saved with the record.
    record.memory = {k: v for k, v in layout.items() if k != "micro_batch"}
    if layout:
        record.memory.update(planned_micro_batch=settings.micro_batch_size, batch=settings.batch_size)
    result, _ = run_trial(
        task,
        settings,
        model=None,  # loaded by the trial after it seeds torch: the job's seed draws an encoder's fresh head
        on_step=worker.on_step,
        on_eval=worker.on_eval,
        may_continue=worker.may_continue,
        on_phase=worker.on_phase,
        on_model=worker.on_model,
        horizon=worker.horizon,
        memory_log=record.memory,
        checkpoint=(int(spec["checkpoint_every"]), worker.on_checkpoint) if spec.get("checkpoint_every") else None,
        resume_from=Path(spec["resume_from"]) if spec.get("resume_from") else None,
    )
    if not record.evals and result.steps > 0:
        # A trial stopped (the cap's reserve) before its one planned evaluation keeps its last
        # step: the held-out test scores it (budgetft.stages.test).
        worker.keep_weights()
        record.best_step = result.steps
    record.trainable_params, record.total_params = result.trainable_params, result.total_params
    record.examples_per_s, record.padded_share = result.examples_per_s, result.padded_share
    record.train_seconds, record.eval_seconds = result.train_seconds, result.eval_seconds
    record.frozen_prefix = result.frozen_prefix
    record.ended = utc_now()
    record.cost_usd = worker.home.cost(spec["trial_id"])
    record.settle(budget_stopped=False)  # one rule: the stop reason, if any, decides
    worker.save()
