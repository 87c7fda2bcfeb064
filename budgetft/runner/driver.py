"""The run, as named stages: baselines -> calibrate -> plan -> tune -> report (budgetft.stages).

Nothing is spent until the job, data and budget have been checked. From then on the machine
meter pays for every second in advance, and every stage's record goes to the run directory as
soon as it exists, so an interrupted run keeps everything and `--resume` goes on from there.
This module only sequences the stages and owns what lives as long as the run: the ledger, the
meter, the telemetry sampler and the live display.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from budgetft import __version__
from budgetft.money.ledger import Ledger, read_charges
from budgetft.money.machine_meter import MachineMeter
from budgetft.money.usd import round_up, seconds_to_usd, usd
from budgetft.planner import BudgetTooSmall
from budgetft.planner.costs import CALIBRATION_STEPS, RESERVE_SECONDS, machine_concurrency
from budgetft.planner.curves import learned_from
from budgetft.planner.inputs import budget_check
from budgetft.resume import ResumeError, new_run_dir
from budgetft.rundir import SCHEMA_VERSION, RunDir, RunInfo, utc_now
from budgetft.source import code_version
from budgetft.runner.display import RunDisplay
from budgetft.spec import JobSpec, dump_job
from budgetft.stages.baselines import run_baselines
from budgetft.stages.calibrate import calibrate
from budgetft.stages.plan import plan_round, resolve_test_rows
from budgetft.stages.report import finish
from budgetft.stages.test import held_out_test
from budgetft.stages.tune import TuneSession
from budgetft.task import prepare_tasks
from budgetft.telemetry import TelemetrySampler
from budgetft.telemetry.carbon import region_from_env
from budgetft.telemetry.device import device_name
from budgetft.telemetry.summary import read_samples, samples_between
from budgetft.track.run_tracking import start_run_tracking
from budgetft.tune import ray_session


# Seconds kept back, after the trackers' last wait, for closing the meter and the display.
SHUTDOWN_MARGIN_S = 5.0


class Terminated(KeyboardInterrupt):
    """SIGTERM (a `kill`, a shutting-down machine): stop like Ctrl-C, keep everything, report."""


@dataclass
class RunOptions:
    budget: Decimal
    usd_per_hour: Decimal
    price_source: str
    out: Path | None = None
    price_reason: str = ""
    resume: Path | None = None
    ray_address: str | None = None
    calibration_steps: int = CALIBRATION_STEPS
    live: bool = True
    track: list = field(default_factory=list)  # --track: budgetft.track.choice.TrackChoice (TensorBoard is always on)


class Run:
    def __init__(self, spec: JobSpec, opts: RunOptions, console: Console):
        self.spec, self.opts, self.console = spec, opts, console
        self.task = self.run = self.ledger = self.meter = self.display = self.sampler = self.tuning = None
        self.tracking = None  # TensorBoard and the --track trackers (budgetft.track.run_tracking)
        self.tasks: dict = {}  # model name -> its task (the job's models: JobSpec.variants)
        self.watched_pids: dict[str, int] = {}  # packed calibration's workers, while they run
        self.stopped_by = ""  # "Ctrl-C" or "SIGTERM" when the run was interrupted
        self.report_only = False  # a resumed run with too little left: only the report
        self.resume_note = ""
        self.test_rows_reason: str | None = None

    @property
    def tracker(self):
        return self.tuning.tracker if self.tuning is not None else None

    # -- the sequence

    def execute(self) -> RunDir:
        opts = self.opts
        with self.console.status("checking and tokenizing data…"):  # bad input is refused here
            self.tasks = prepare_tasks(self.spec)  # one per model the job names
        run = self.run = RunDir(opts.resume if opts.resume else new_run_dir(self.spec.name, opts.out))
        previous = run.run() if opts.resume else RunInfo()
        charges = read_charges(run.ledger) if run.ledger.exists() else []
        spent = charges[-1].total if charges else Decimal(0)
        cap = round_up(usd(opts.budget))

        # Held-out test rows sized by what the budget buys (eval.test_rows: auto), before spending.
        self.spec, self.tasks, self.test_rows_reason = resolve_test_rows(self.spec, self.tasks, cap - spent, opts.usd_per_hour)
        self.task = self.tasks[self.spec.model.name]  # the job's own model: baselines, run.json
        if not opts.resume and spent >= cap:
            raise ResumeError(f"{run.root}: the ledger already holds ${spent} of the ${opts.budget} cap; nothing is left to spend")
        try:  # before anything is created or spent
            budget_check(self.tasks, self.spec, cap, spent, opts.usd_per_hour, opts.calibration_steps, baselines_done=run.baselines_json.exists(),
                         calibration=run.calibration() if run.root.exists() else None, concurrency=machine_concurrency(None))
        except BudgetTooSmall as exc:
            if not opts.resume:
                raise
            # A resumed run finishes its report with what is left: the reserve was kept for it.
            self.report_only = True
            self.resume_note = f"what is left of the cap (${max(cap - spent, Decimal(0))}) buys no further useful trial (one needs ${exc.minimum} in all): finishing the run's report with it"
        run.root.mkdir(parents=True, exist_ok=True)

        ray_session.clean_up_strays()  # Ray processes that a killed driver left behind
        info = self._start_session(previous)
        status = "finished"
        previous_term = _stop_on_sigterm()
        try:
            with self.display:
                if self.report_only:
                    self.display.note(self.resume_note)
                else:
                    self._stages()
        except KeyboardInterrupt as exc:
            status = "interrupted"
            self.stopped_by = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
            self.meter.stopped.set()
            by = " by SIGTERM" if self.stopped_by == "SIGTERM" else ""
            self.console.print(f"[yellow]interrupted{by}: stopping trials, keeping every result, writing the report[/]")
        except BaseException:
            status = "failed"
            run.error_log.write_text(traceback.format_exc())  # the whole story; the terminal gets one line
            raise
        finally:
            _restore_sigterm(previous_term)
            self._report(info, status)
        return run

    def _stages(self) -> None:
        run, meter, note = self.run, self.meter, self.display.note
        run_baselines(self.task, run, meter, note)
        calibrate(self.tasks, self.spec, run, meter, note, self.opts.calibration_steps, samples_during=self._samples_during, watch=self._watch)
        self.tuning = TuneSession(self.spec, run, meter, self.opts.ray_address, on_event=self.display.refresh)
        # Rounds: money that ASHA freed by stopping trials early buys another round, planned
        # with what is left, until the next useful trial no longer fits.
        rounds = 0
        while (planned := plan_round(self.tasks, self.spec, run, meter, self.opts.usd_per_hour, again=rounds > 0, note=note,
                                     show=self.display.show_plan, calibration_steps=self.opts.calibration_steps)) is not None:
            rounds += 1
            self.tuning.round(*planned)
            if meter.stopped.is_set():
                break
            if not self.tuning.learned(planned[1]):
                note("[red]every trial of this round failed; not planning another (see the trials' errors)[/]")
                break
        self._held_out_test()

    def _held_out_test(self) -> None:
        """The winner on the test rows, paid from the reserve the plan kept back for it."""
        if self.tuning is not None:
            self.tuning.close()  # Ray's processes go before the test needs the cores
        self.meter.reserve_usd = seconds_to_usd(RESERVE_SECONDS, self.opts.usd_per_hour)
        record = held_out_test(self.tasks, self.run, self.meter, self.display.note)
        if record and record.get("winner"):
            learned_from(self.spec, self.run)  # the next plan for this model and task knows more

    def _start_session(self, previous: RunInfo) -> RunInfo:
        """The ledger, the meter, run.json, the sampler and the display of this session."""
        opts, run = self.opts, self.run
        self.ledger = Ledger(run.root, opts.budget)
        session = previous.sessions + 1
        info = RunInfo(
            schema=SCHEMA_VERSION, run_id=previous.run_id or run.root.name, job=self.spec.name, budgetft_version=__version__, code=code_version(),
            started=previous.started or utc_now(), status="running", budget_usd=str(opts.budget), cap_usd=str(self.ledger.cap),
            price_per_hour=str(opts.usd_per_hour), price_source=opts.price_source, price_reason=opts.price_reason,
            device=device_name(), hardware={"cpus": os.cpu_count(), "platform": platform.platform()}, sessions=session,
            model=self.task.model.describe(), data=self.task.data_origin,
            region=region_from_env() or previous.get("region"),  # local --region, for the report's CO2
            test_rows_reason=self.test_rows_reason or previous.get("test_rows_reason"),
        )
        run.write_run(info)
        for trial in run.trials():  # the previous session died under these
            if trial.status == "running":
                run.finalize_trial(trial.trial_id, budget_stopped=False, interrupted=True)
        if not run.job_yaml.exists():  # the resolved job: workers and resumes cut the same rows
            run.job_yaml.write_text(dump_job(self.spec))
        # Short slices before tuning, so the ledger's labels follow the stages closely; tuning
        # widens the lookahead to cover a whole training step.
        reserve = seconds_to_usd(RESERVE_SECONDS, opts.usd_per_hour)
        self.meter = MachineMeter(self.ledger, opts.usd_per_hour, run.root, reserve, slice_s=2.0, lookahead_s=3.0, session=session).start()
        # About one hardware sample a second (NVML, or CPU/memory without a GPU) until the report.
        self.sampler = TelemetrySampler(run.telemetry, interval_s=1.0, pids=self._trial_pids)
        self.sampler.start()
        # Every tracker call from here on only queues: tracking never holds up a step or a payment.
        self.tracking = start_run_tracking(run, info, self.spec.model_dump(mode="json"), list(opts.track), warn=self.console.print)
        self.display = RunDisplay(self, live=opts.live)
        return info

    def _report(self, info: RunInfo, status: str) -> None:
        if self.meter is None:
            return
        self.meter.set_stage("report")
        if self.tuning is not None:
            self.tuning.close()
        if self.sampler is not None:
            self.sampler.stop()
        written = finish(self.run, info, status, budget_stopped=self.meter.stopped.is_set(), stop_reason=self.meter.reason, warn=self.console.print)
        if self.tracking is not None:  # the summary, report files and export, in what the money still pays for
            try:
                lost = self.tracking.finish(status, self._paid_seconds_left())
            except KeyboardInterrupt:  # a second Ctrl-C: the trackers get no more time, the meter still closes
                lost = "cut short by Ctrl-C; what was not sent is dropped"
            if lost:
                self.console.print(f"[yellow]tracking:[/] {escape(lost)}", highlight=False)
        if status == "finished":  # derived, possibly gigabytes; a run that may resume keeps them
            shutil.rmtree(self.run.frozen_states, ignore_errors=True)
        self.meter.close()
        self.ledger.refresh()
        self.display.final(written)

    def _paid_seconds_left(self) -> float:
        """Machine seconds the cap still pays for (what is prepaid and unused, and what is left
        unspent), less a margin for shutting down: the trackers' last wait fits in it."""
        price = Decimal(self.opts.usd_per_hour)
        if price <= 0:
            return float("inf")
        money = max(self.ledger.cap - self.ledger.spent, Decimal(0)) + self.meter.unused_usd()
        return max(0.0, float(money * 3600 / price) - SHUTDOWN_MARGIN_S)

    # -- what the telemetry sampler and packing calibration need

    def _trial_pids(self) -> dict[str, int]:
        """Processes whose memory the sampler attributes: the driver, packed calibration's
        workers, and each running trial."""
        pids = {"driver": os.getpid(), **self.watched_pids}
        for trial_id in self.tuning.running if self.tuning is not None else ():
            trial = self.run.trial(trial_id)
            if trial is not None and trial.pid:
                pids[trial_id] = int(trial.pid)
        return pids

    def _samples_during(self, start: float, end: float) -> list[dict]:
        return samples_between(read_samples(self.run.telemetry), *(datetime.fromtimestamp(t, timezone.utc) for t in (start, end)))

    def _watch(self, pids: dict[str, int]) -> None:
        self.watched_pids = dict(pids)

    def packing_decision(self) -> dict | None:
        return (self.run.calibration() or {}).get("packing")


def _stop_on_sigterm():
    """Make SIGTERM interrupt the run as Ctrl-C does; returns the handler it replaced."""

    def handler(signum, frame):
        raise Terminated()

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (a test runner's worker): leave signals alone
        return None


def _restore_sigterm(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
