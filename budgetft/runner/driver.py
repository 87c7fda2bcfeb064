"""The run, as named stages: baselines -> calibrate -> plan -> tune -> report (budgetft.stages).

Nothing is spent until the job, data, budget and disk room have been checked. From then on the
machine meter pays for every second in advance, and every stage's record goes to the run
directory as soon as it exists, so an interrupted run keeps everything and `--resume` goes on
from there. This module only sequences the stages and owns what lives as long as the run: the
run directory's lock (one live driver), the ledger, the meter, the signal handlers
(budgetft.runner.signals), the disk watch (budgetft.runner.disk_room), the telemetry sampler and
the live display.
"""

from __future__ import annotations

import os
import platform
import shutil
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from budgetft import __version__
from budgetft.disk import DISK_FULL_WORDS, DiskFull, is_disk_full
from budgetft.files import write_text
from budgetft.money.ledger import Ledger, read_charges
from budgetft.money.machine_meter import MachineMeter
from budgetft.money.machine_start import current_start, start_paid_seconds
from budgetft.money.usd import round_up, seconds_to_usd, usd
from budgetft.planner import BudgetTooSmall
from budgetft.planner.costs import CALIBRATION_STEPS, RESERVE_SECONDS, machine_concurrency
from budgetft.planner.curves import learned_from
from budgetft.planner.inputs import budget_check
from budgetft.resume import ResumeError, new_run_dir
from budgetft.rundir import SCHEMA_VERSION, RunDir, RunInfo, utc_now
from budgetft.runlock import RunLock
from budgetft.source import code_version
from budgetft.runner import disk_room
from budgetft.runner.cluster_hold import ClusterHold
from budgetft.runner.display import RunDisplay
from budgetft.runner.signals import StopSignals, Stopped
from budgetft.spec import JobSpec, dump_job
from budgetft.stages.baselines import run_baselines
from budgetft.stages.calibrate import calibrate
from budgetft.stages.continuation import continue_interrupted
from budgetft.stages.plan import plan_round, resolve_test_rows
from budgetft.stages.report import finish
from budgetft.stages.test import held_out_test, test_begun
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
    lock: RunLock | None = None  # the run directory's lock, when the caller took it (the CLI does, first)
    node_prices: list = field(default_factory=list)  # --node-price on a cluster (budgetft.tune.cluster)


class Run:
    def __init__(self, spec: JobSpec, opts: RunOptions, console: Console):
        self.spec, self.opts, self.console = spec, opts, console
        self.task = self.run = self.ledger = self.meter = self.display = self.sampler = self.tuning = None
        self.tracking = None  # TensorBoard and the --track trackers (budgetft.track.run_tracking)
        self.tasks: dict = {}  # model name -> its task (the job's models: JobSpec.variants)
        self.watched_pids: dict[str, int] = {}  # packed calibration's workers, while they run
        self.stopped_by = ""  # "Ctrl-C", "SIGTERM", "SIGHUP" or "a full disk" when the run was interrupted
        self.exit_code = 0  # the shell's code for what stopped it (130, 143, 129), 0 otherwise
        self.disk_full: DiskFull | None = None  # the full disk that stopped it
        self.signals = StopSignals(on_stop=self._stop_trials)
        self.disk_watch: disk_room.DiskWatch | None = None
        self._disk_floor = disk_room.REPORT_ROOM  # free bytes the watch keeps: the next weights and the report
        self.lock = opts.lock
        self.report_only = False  # a resumed run with too little left: only the report
        self.resume_note = ""
        self.test_rows_reason: str | None = None
        self.cluster: ClusterHold | None = None  # --ray-address: the nodes the run holds (budgetft.runner.cluster_hold)

    @property
    def tracker(self):
        return self.tuning.tracker if self.tuning is not None else None

    # -- the sequence

    def execute(self) -> RunDir:
        opts = self.opts
        with self.console.status("checking and tokenizing data…"):  # bad input is refused here
            self.tasks = prepare_tasks(self.spec)  # one per model the job names
        run = self.run = RunDir(opts.resume if opts.resume else new_run_dir(self.spec.name, opts.out))
        own_lock = self.lock is None
        if own_lock:  # one live driver per run directory, before anything is read to go on from
            self.lock = RunLock(run.root).acquire(resuming=bool(opts.resume))
        try:
            if opts.ray_address:  # a cluster: its nodes priced before the budget is checked against their rate
                self.cluster, self.opts = ClusterHold.hold(opts)
            return self._execute(run)
        finally:
            if self.cluster is not None:
                self.cluster.close(self.run)  # cluster.json's final figures, then Ray
            if own_lock:
                self.lock.release(clean=True)

    def _execute(self, run: RunDir) -> RunDir:
        opts = self.opts
        previous = run.run() if opts.resume else RunInfo()
        charges = read_charges(run.ledger) if run.ledger.exists() else []
        spent = charges[-1].total if charges else Decimal(0)
        cap = round_up(usd(opts.budget))

        # Held-out test rows sized by what the budget buys (eval.test_rows: auto), before spending.
        self.spec, self.tasks, self.test_rows_reason = resolve_test_rows(self.spec, self.tasks, cap - spent, opts.usd_per_hour)
        self.task = self.tasks[self.spec.model.name]  # the job's own model: baselines, run.json
        if not opts.resume and spent >= cap:
            raise ResumeError(f"{run.root}: the ledger already holds ${spent} of the ${opts.budget} cap; nothing is left to spend")
        calibration = run.calibration() if run.root.exists() else None
        plan = None
        try:  # before anything is created or spent
            plan = budget_check(self.tasks, self.spec, cap, spent, opts.usd_per_hour, opts.calibration_steps, baselines_done=run.baselines_json.exists(),
                                calibration=calibration, concurrency=self.cluster.concurrency(None) if self.cluster else machine_concurrency(None))
        except BudgetTooSmall as exc:
            if not opts.resume:
                raise
            # A resumed run finishes its report with what is left: the reserve was kept for it.
            self.report_only = True
            self.resume_note = f"what is left of the cap (${max(cap - spent, Decimal(0))}) buys no further useful trial (one needs ${exc.minimum} in all): finishing the run's report with it"
        # Room on the disk for what the plan writes, before anything is spent.
        disk_room.check_room(run.root, self._writes(plan, calibration, cap - spent), "this run")
        run.root.mkdir(parents=True, exist_ok=True)

        ray_session.clean_up_strays()  # Ray processes that a killed driver left behind
        status, info = "finished", None
        self.signals.install()
        try:
            with self.signals.deferred():  # a session starts whole: job.yaml, run.json, the meter (a resume needs them)
                info = self._start_session(previous, charges)
            self.signals.raise_if_stopped()
            with self.display:
                if self.report_only:
                    self.display.note(self.resume_note)
                    if run.calibration_json.exists():  # what is left may still continue a trial or pay for the held-out test
                        self._stages(new_rounds=False)
                    else:
                        self._held_out_test()
                else:
                    self._stages()
        except KeyboardInterrupt as exc:
            status = "interrupted"
            self.stopped_by = exc.name if isinstance(exc, Stopped) else "Ctrl-C"
            self.exit_code = exc.exit_code if isinstance(exc, Stopped) else 130
            self._stop_trials(f"the run was stopped by {self.stopped_by}")
            by = f" by {self.stopped_by}" if self.stopped_by != "Ctrl-C" else ""
            self.console.print(f"[yellow]interrupted{by}: stopping trials, keeping every result, writing the report[/]")
        except OSError as exc:
            if not is_disk_full(exc):
                status = "failed"
                self._log_failure(run)
                raise
            status = "interrupted"  # resumable once there is room again
            self.disk_full = exc if isinstance(exc, DiskFull) else DiskFull(run.root)
            self.stopped_by = "a full disk"
            self._stop_trials(str(self.disk_full))
            self.console.print(f"[red]{self.disk_full}: stopping trials, keeping every result, writing what the disk still takes[/]")
        except BaseException:
            status = "failed"
            self._log_failure(run)
            raise
        finally:
            with self.signals.deferred():  # the report is written whatever arrives meanwhile
                if info is not None:
                    self._report(info, status)
            self.signals.restore()
        if self.signals.received is not None and not self.exit_code:
            # A signal while the report was written: it is written; the exit code still says
            # what stopped the process (the records say whether anything is left to resume).
            late = Stopped(self.signals.received)
            self.stopped_by, self.exit_code = late.name, late.exit_code
        return run

    def _log_failure(self, run: RunDir) -> None:
        try:
            run.error_log.write_text(traceback.format_exc())  # the whole story; the terminal gets one line
        except OSError:
            pass

    def _stop_trials(self, reason: str) -> None:
        """Stop every trial as the cap would, recorded as interrupted (signal-safe: the meter
        only takes note, and its thread publishes the stop)."""
        if self.meter is not None:
            self.meter.interrupt(reason)

    def _raise_if_stopped(self, specs: list[dict] = ()) -> None:
        """After a stage in which a signal or a full disk only asked trials to stop (Ray's
        tune.fit): stop the run here, in our own code. A trial of `specs` that failed on a
        full disk stops it too: the next trial would meet the same disk."""
        self.signals.raise_if_stopped()
        full = self.meter.disk_full or (self.disk_watch.check() if self.disk_watch is not None else None)
        ids = {spec["trial_id"] for spec in specs}
        failed = next((t for t in self.run.trials() if t.trial_id in ids and DISK_FULL_WORDS in (t.error or "")), None)
        if full is None and failed is not None:
            full = DiskFull(self.run.root, f"{failed.trial_id}'s weights")
        if full is not None:
            raise full if isinstance(full, DiskFull) else DiskFull(self.run.root)

    # -- disk room

    def _writes(self, plan, calibration: dict | None, left: Decimal) -> dict[str, int]:
        return disk_room.run_writes(plan, calibration, disk_room.option_params(self.spec, self.tasks, self.task), disk_room.run_seconds(max(left, Decimal(0)), self.opts.usd_per_hour))

    def _stages(self, new_rounds: bool = True) -> None:
        """Every stage; `new_rounds` False (a resumed run with too little left for a new useful
        trial): only what is left to finish, an interrupted trial's continuation and the test."""
        run, meter, note = self.run, self.meter, self.display.note
        run_baselines(self.task, run, meter, note)
        calibrate(self.tasks, self.spec, run, meter, note, self.opts.calibration_steps, samples_during=self._samples_during, watch=self._watch)
        self.tuning = TuneSession(self.spec, run, meter, self.opts.ray_address, on_event=self.display.refresh)
        if test_begun(run):  # killed during the held-out test: training was over, the test resumes
            note("the held-out test was interrupted: scoring it now")
            self._held_out_test()
            return
        # A resumed run first weighs going on with its interrupted trial from its checkpoint; then
        # rounds: money ASHA freed buys another, planned with what is left, until no useful trial fits.
        rounds = 0
        pending = continue_interrupted(self.tasks, self.spec, run, meter, self.opts.usd_per_hour, note=note,
                                       calibration_steps=self.opts.calibration_steps) if self.opts.resume else None
        while (planned := pending or (plan_round(self.tasks, self.spec, run, meter, self.opts.usd_per_hour, again=rounds > 0, note=note,
                                                 show=self.display.show_plan, calibration_steps=self.opts.calibration_steps,
                                                 concurrency=self.cluster.concurrency(self.packing_decision()) if self.cluster else None)
                                      if new_rounds else None)) is not None:
            pending = None
            rounds += 1
            self._watch_disk(planned[0])
            try:
                with self.signals.deferred():  # Ray's code: a signal stops the trials, not the driver (signals.py)
                    self.tuning.round(*planned)
            except Exception:
                self._raise_if_stopped(planned[1])  # a stop that made Tune fail is still a stop
                raise
            self._raise_if_stopped(planned[1])
            if meter.stopped.is_set():
                break
            if not self.tuning.learned(planned[1]):
                note("[red]every trial of this round failed or none started; not planning another (see the trials' errors)[/]")
                break
        self._held_out_test()

    def _watch_disk(self, plan) -> None:
        """Before a round: room for its trials' weights, measured by calibration (the run stops
        here, before the round spends, when there is none); then the watch, with room kept for
        the largest of them and the report."""
        calibration = self.run.calibration()
        left = self.ledger.cap - self.ledger.spent
        writes = self._writes(plan, calibration, left)
        disk_room.check_room(self.run.root, writes, "this round of trials")
        self._disk_floor = writes["largest_weights"] + writes["report"]
        if self.disk_watch is None:
            self.disk_watch = disk_room.DiskWatch(self.run.root, lambda: self._disk_floor, self._on_disk_full).start()

    def _on_disk_full(self, full: DiskFull) -> None:
        self._stop_trials(str(full))

    def _held_out_test(self) -> None:
        """The winner on the test rows, paid from the reserve the plan kept back for it."""
        if self.tuning is not None:
            self.tuning.close()  # Ray's processes go before the test needs the cores
        self.meter.reserve_usd = seconds_to_usd(RESERVE_SECONDS, self.opts.usd_per_hour)
        record = held_out_test(self.tasks, self.run, self.meter, self.display.note, money_left=self._test_seconds_left)
        if record and record.get("winner"):
            learned_from(self.spec, self.run)  # the next plan for this model and task knows more

    def _start_session(self, previous: RunInfo, charges: list) -> RunInfo:
        """The ledger, the meter, run.json, the sampler and the display of this session."""
        opts, run = self.opts, self.run
        self.ledger = Ledger(run.root, opts.budget)
        session = previous.sessions + 1
        # The machine start this session runs on, and what it has paid already: the one-minute
        # billing minimum is per machine start, not per session (budgetft.money.machine_start).
        start = current_start()
        starts = {k: list(v) for k, v in (previous.machine_starts or {}).items()}
        starts[start] = sorted(set(starts.get(start, [])) | {session})
        start_paid = start_paid_seconds(charges, starts, start, session, usd(opts.usd_per_hour))
        info = RunInfo(
            schema=SCHEMA_VERSION, run_id=previous.run_id or run.root.name, job=self.spec.name, budgetft_version=__version__, code=code_version(),
            started=previous.started or utc_now(), status="running", budget_usd=str(opts.budget), cap_usd=str(self.ledger.cap),
            price_per_hour=str(opts.usd_per_hour), price_source=opts.price_source, price_reason=opts.price_reason,
            device=device_name(), hardware={"cpus": os.cpu_count(), "platform": platform.platform()}, sessions=session,
            model=self.task.model.describe(), data=self.task.data_origin,
            region=region_from_env() or previous.get("region"),  # local --region, for the report's CO2
            test_rows_reason=self.test_rows_reason or previous.get("test_rows_reason"), machine_starts=starts,
        )
        if not run.job_yaml.exists():  # the resolved job, before run.json: workers and resumes cut the same rows
            write_text(run.job_yaml, dump_job(self.spec))
        run.write_run(info)
        for trial in run.trials():  # the previous session died under these
            if trial.status == "running":
                run.finalize_trial(trial.trial_id, budget_stopped=False, interrupted=True)
        # Short slices before tuning, so the ledger's labels follow the stages closely; tuning
        # widens the lookahead to cover a whole training step.
        reserve = seconds_to_usd(RESERVE_SECONDS, opts.usd_per_hour)
        self.meter = MachineMeter(self.ledger, opts.usd_per_hour, run.root, reserve, slice_s=2.0, lookahead_s=3.0, session=session, start_paid_s=start_paid,
                                  nodes=self.cluster.node_meters(self.ledger) if self.cluster is not None else None).start()
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
        if self.disk_watch is not None:
            self.disk_watch.stop()
        try:
            self.meter.set_stage("report")
        except OSError:  # a full disk refuses the ledger's line: the report is still written where it can be
            pass
        if self.tuning is not None:
            self.tuning.close()
        if self.sampler is not None:
            self.sampler.stop()
        if self.cluster is not None:  # each node's seconds and dollars, its trials, the lost ones: for the report
            self.cluster.write(self.run)
        capped = self.meter.stopped.is_set()
        stop_reason = self.meter.reason if capped or status == "finished" else (self.meter.interrupted or self.meter.reason)
        try:
            written = finish(self.run, info, status, budget_stopped=self.meter.stopped.is_set(), stop_reason=stop_reason, warn=self.console.print)
        except OSError as exc:  # run.json could not be written (a full disk): the records so far stand
            self.console.print(f"[red]the run's records could not be finished: {exc}[/]")
            written = []
        if self.tracking is not None:  # the summary, report files and export, in what the money still pays for
            try:
                lost = self.tracking.finish(status, self._paid_seconds_left())
            except KeyboardInterrupt:  # a second Ctrl-C: the trackers get no more time, the meter still closes
                lost = "cut short by Ctrl-C; what was not sent is dropped"
            if lost:
                self.console.print(f"[yellow]tracking:[/] {escape(lost)}", highlight=False)
        if status == "finished":  # derived, possibly gigabytes; a run that may resume keeps them
            shutil.rmtree(self.run.frozen_states, ignore_errors=True)
        try:
            self.meter.close()
        except OSError as exc:  # the minimum's ledger line refused by a full disk: nothing else is owed
            self.console.print(f"[red]the ledger's last line could not be written: {exc}[/]")
        self.ledger.refresh()
        self.display.final(written)

    def _test_seconds_left(self) -> float:  # machine seconds the cap pays for beyond the report: the held-out test's
        return max(0.0, self._paid_seconds_left() + SHUTDOWN_MARGIN_S - RESERVE_SECONDS)

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
            if trial is not None and trial.pid and (trial.node is None or trial.node == self.cluster.head_id):  # another node's pid is not ours
                pids[trial_id] = int(trial.pid)
        return pids

    def _samples_during(self, start: float, end: float) -> list[dict]:
        return samples_between(read_samples(self.run.telemetry), *(datetime.fromtimestamp(t, timezone.utc) for t in (start, end)))

    def _watch(self, pids: dict[str, int]) -> None:
        self.watched_pids = dict(pids)

    def packing_decision(self) -> dict | None:
        return (self.run.calibration() or {}).get("packing")
