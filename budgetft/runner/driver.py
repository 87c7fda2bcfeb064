"""The run, as named stages: baselines -> calibration -> plan -> tuning -> report.

Nothing is spent until the job, data and budget have been checked. From then on the machine
meter pays for every second in advance, and every stage's results go to the run directory as
soon as they exist, so an interrupted run keeps everything and `--resume` goes on from there.
"""

from __future__ import annotations

import os
import platform
import signal
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from rich.console import Console

from budgetft import __version__
from budgetft.money.catalog import round_up, usd
from budgetft.money.ledger import Ledger, read_charges
from budgetft.planner import BudgetTooSmall, Costs, Plan, plan_budget, seconds_to_usd
from budgetft.rundir import SCHEMA_VERSION, RunDir, read_json, write_json
from budgetft.spec import JobSpec, dump_job
from budgetft.telemetry.carbon import region_from_env

RESERVE_SECONDS = 30.0  # report + shutdown, kept back until the end
# Before spending, stored or estimated rates are taken as at least this much slower than they
# say: the check must not approve a budget that the plan refuses once calibration has measured
# this machine (seen: 35-73% of a cap spent on baselines and calibration, then no trial).
PRECHECK_MARGIN = 1.5
CALIBRATION_STEPS = 2  # timed steps per method (plus one warm-up step)


class RunError(ValueError):
    """A run that cannot start (or resume). The message names the problem and the fix."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a `kill`, a shutting-down machine): stop like Ctrl-C, keep everything, report."""


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


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"CPU: {line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    except OSError:
        pass
    return f"CPU: {platform.processor() or platform.machine()} x{os.cpu_count()}"


def check_out_dir(out: Path) -> None:
    """--out for a new run: a directory that holds no run yet (or does not exist yet)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file, not a directory; give a new directory for the run's files")
    run = RunDir(out)
    if run.exists():
        if run.run().get("status") == "finished":
            raise RunError(f"{out} already holds a finished run; choose another --out (its report: `budgetft report {out}`)")
        raise RunError(f"{out} already holds a run that did not finish; continue it with --resume {out}, or choose another --out")


def new_run_dir(spec: JobSpec, out: Path | None) -> Path:
    if out is not None:
        check_out_dir(out)
        return Path(out)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{spec.name}-{stamp}"


class Run:
    def __init__(self, spec: JobSpec, opts: RunOptions, console: Console):
        self.spec, self.opts, self.console = spec, opts, console
        self.task = None
        self.meter = None
        self.tracker = None
        self.display = None
        self.watched_pids: dict[str, int] = {}  # packed calibration's workers, while they run
        self.stopped_by = ""  # "Ctrl-C" or "SIGTERM" when the run was interrupted
        self.report_only = False  # a resumed run with too little left: only the report
        self._ray_started = False  # whether this session connected to Ray (and must disconnect)

    # -- the stages

    def execute(self) -> RunDir:
        from budgetft.task import prepare_task

        spec, opts = self.spec, self.opts
        # Bad input is refused here, before a cent is spent.
        with self.console.status("checking and tokenizing data…"):
            self.task = prepare_task(spec)
        run = RunDir(opts.resume if opts.resume else new_run_dir(spec, opts.out))
        self.run = run
        previous = run.run() if opts.resume else {}
        spent = sum((c.amount for c in read_charges(run.ledger)), start=Decimal(0)) if run.ledger.exists() else Decimal(0)
        cap = round_up(usd(opts.budget))
        # A resumed run finishes its report with whatever is left (the reserve was kept back
        # for it), even when that no longer buys a trial; a new run is refused before spending.
        self.report_only = False
        if not opts.resume and spent >= cap:
            raise RunError(f"{run.root}: the ledger already holds ${spent} of the ${opts.budget} cap; nothing is left to spend")
        try:
            self._precheck(cap, spent)  # before anything is created or spent
        except BudgetTooSmall as exc:
            if not opts.resume:
                raise
            self.report_only = True
            self.resume_note = f"what is left of the cap (${max(cap - spent, Decimal(0))}) buys no further useful trial (one needs ${exc.minimum} in all): finishing the run's report with it"
        run.root.mkdir(parents=True, exist_ok=True)
        from budgetft.runner import ray_session

        ray_session.clean_up_strays()  # Ray processes that a killed driver left behind
        self.ledger = Ledger(run.root, opts.budget)
        reserve = seconds_to_usd(RESERVE_SECONDS, opts.usd_per_hour)
        session = int(previous.get("sessions", 0)) + 1
        info = {
            "schema": SCHEMA_VERSION,
            "run_id": previous.get("run_id") or run.root.name,
            "job": spec.name,
            "budgetft_version": __version__,
            "started": previous.get("started") or utc_now(),
            "finished": None,
            "status": "running",
            "budget_usd": str(opts.budget),
            "cap_usd": str(self.ledger.cap),
            "price_per_hour": str(opts.usd_per_hour),
            "price_source": opts.price_source,
            "price_reason": opts.price_reason,
            "device": device_name(),
            "hardware": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "sessions": session,
            "model": self.task.model.describe(),
            "data": self.task.data_origin,
            "region": region_from_env() or previous.get("region"),  # local --region, for the report's CO2
        }
        write_json(run.run_json, info)
        if opts.resume:
            from budgetft.runner.tracking import finalize_trial

            for trial in run.trials():  # the previous session died under these
                if trial.get("status") == "running":
                    finalize_trial(run, trial["trial_id"], budget_stopped=False, interrupted=True)
        if not run.job_yaml.exists():
            run.job_yaml.write_text(dump_job(spec))
        from budgetft.runner.display import RunDisplay
        from budgetft.runner.machine_meter import MachineMeter

        # Short slices before tuning, so the ledger's labels follow the stages closely; tuning
        # widens the lookahead to cover a whole training step.
        self.meter = MachineMeter(self.ledger, opts.usd_per_hour, run.root, reserve, slice_s=2.0, lookahead_s=3.0, session=session).start()
        from budgetft.telemetry import TelemetrySampler

        # About one hardware sample a second (NVML, or CPU/memory without a GPU) until the report.
        self.sampler = TelemetrySampler(run.telemetry, interval_s=1.0, pids=self._trial_pids)
        self.sampler.start()
        self.display = RunDisplay(self, live=opts.live)
        status = "finished"
        previous_term = _stop_on_sigterm()
        try:
            with self.display:
                if self.report_only:
                    self.display.note(self.resume_note)
                else:
                    self.stage_baselines()
                    self.stage_calibration()
                    # Rounds: money that ASHA freed by stopping trials early buys another round,
                    # planned with what is left, until the next useful trial no longer fits.
                    rounds = 0
                    while (planned := self.stage_plan(again=rounds > 0)) is not None:
                        rounds += 1
                        self.stage_tuning(*planned)
                        if self.meter.stopped.is_set() or not self._round_learned(planned[1]):
                            break
        except KeyboardInterrupt as exc:
            status = "interrupted"
            self.stopped_by = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
            self.meter.stopped.set()
            by = " by SIGTERM" if self.stopped_by == "SIGTERM" else ""
            self.console.print(f"[yellow]interrupted{by}: stopping trials, keeping every result, writing the report[/]")
        except BaseException:
            status = "failed"
            import traceback

            # The whole story for a bug report; the terminal gets one line (budgetft.cli.run).
            (run.root / "error.log").write_text(traceback.format_exc())
            raise
        finally:
            _restore_sigterm(previous_term)
            self.stage_report(info, status)
        return run

    def _trial_pids(self) -> dict[str, int]:
        """Processes to watch: the driver (baselines, calibration), packed calibration's
        workers, and each running trial."""
        pids = {"driver": os.getpid(), **self.watched_pids}
        if self.tracker is not None:
            for trial_id in list(self.tracker.running):
                pid = (read_json(self.run.trial_dir(trial_id) / "trial.json", {}) or {}).get("pid")
                if pid:
                    pids[trial_id] = int(pid)
        return pids

    def _precheck(self, cap: Decimal, spent: Decimal) -> None:
        """Refuse a budget too small for one useful trial before spending (BudgetTooSmall)."""
        calibration = read_json(self.run.calibration_json, None) if self.run.root.exists() else None
        budget_check(
            self.task, cap, spent, self.opts.usd_per_hour, self.opts.calibration_steps,
            baselines_done=self.run.baselines_json.exists(), calibration=calibration, concurrency=self._concurrency(),
        )

    def _costs(self, eval_rows_per_s: float, *, baselines_done: bool, calibration_done: bool, rates) -> Costs:
        return run_costs(self.task, rates, eval_rows_per_s, self.opts.calibration_steps, baselines_done=baselines_done, calibration_done=calibration_done)

    def stage_baselines(self) -> None:
        run = self.run
        if run.baselines_json.exists():
            return
        from budgetft.models.loading import load_model
        from budgetft.trial import evaluate, majority_baseline

        self.meter.set_stage("baselines")
        self.display.note(f"baselines: majority class and zero-shot on {len(self.task.eval)} evaluation rows")
        model = load_model(self.task.model)
        t0 = time.perf_counter()
        zero_shot = evaluate(model, self.task, self.spec.eval.batch_size)
        zero_shot["seconds"] = time.perf_counter() - t0
        write_json(run.baselines_json, {"majority": majority_baseline(self.task), "zero_shot": zero_shot})

    def stage_calibration(self) -> None:
        run = self.run
        if run.calibration_json.exists():
            return
        from budgetft.runner.calibration import calibrate_method, store_rates

        self.meter.set_stage("calibration")
        results: dict[str, dict] = {}
        for name in self.spec.methods:
            self.display.note(f"calibration: {name}, {self.opts.calibration_steps + 1} steps")
            started = time.time()
            results[name] = calibrate_method(self.task, name, self.opts.calibration_steps)
            results[name]["window"] = [started, time.time()]  # unix times, for its telemetry
        packing = self._calibrate_packing(results)
        baselines = run.baselines()
        eval_rows_per_s = len(self.task.eval) / baselines["zero_shot"]["seconds"]
        write_json(run.calibration_json, {"methods": results, "eval_rows_per_s": eval_rows_per_s, "device": device_name(), "packing": packing})
        store_rates(self.task, device_name(), results, eval_rows_per_s)

    def _calibrate_packing(self, results: dict[str, dict]) -> dict | None:
        """On a GPU: how many trials share it, from measured levels (budgetft.runner.
        packed_calibration); None on a CPU, where trials run one at a time."""
        if _device_type() != "cuda":
            return None
        import torch

        from budgetft.runner.packed_calibration import calibrate_packing, measure_level

        torch.cuda.empty_cache()  # the driver's cached blocks would count against packed levels
        gpu_mem_mb = torch.cuda.get_device_properties(0).total_memory / 2**20
        job = self.spec.model_dump(mode="json")
        packing = calibrate_packing(
            results, gpu_mem_mb, self._samples_during,
            lambda name, k: measure_level(job, name, k, self.opts.calibration_steps, self._samples_during, self._watch),
            note=self.display.note,
        )
        self.display.note(f"packing: {packing['reason']}")
        return packing

    def _samples_during(self, start: float, end: float) -> list[dict]:
        from datetime import timezone

        from budgetft.telemetry.summary import read_samples, samples_between

        utc = timezone.utc
        return samples_between(read_samples(self.run.telemetry), datetime.fromtimestamp(start, utc), datetime.fromtimestamp(end, utc))

    def _watch(self, pids: dict[str, int]) -> None:
        self.watched_pids = dict(pids)

    def packing_decision(self) -> dict | None:
        return (read_json(self.run.calibration_json, {}) or {}).get("packing")

    def stage_plan(self, again: bool = False) -> tuple[Plan, list[dict]] | None:
        """Plan trials with the money left; None when not one useful trial fits. `again`: a
        round of this session already ran, so a refusal just ends the run."""
        from budgetft.runner.calibration import rates_from

        self.meter.set_stage("overhead")
        calibration = read_json(self.run.calibration_json)
        rates = rates_from(calibration["methods"])
        costs = self._costs(calibration["eval_rows_per_s"], baselines_done=True, calibration_done=True, rates=rates)
        self.ledger.refresh()
        # What has really been used so far: the ledger minus time prepaid but not yet used.
        used = self.ledger.spent - self.meter.unused_usd()
        previous = read_json(self.run.plan_json, {}) or {}
        try:
            plan = plan_budget(self.ledger.cap, used, self.opts.usd_per_hour, rates, costs, self.spec.train.max_steps, concurrency=self._concurrency())
        except BudgetTooSmall as exc:
            if again:
                self.display.note(f"no further round: ${self.ledger.cap - used} left does not buy one more useful trial")
            else:
                self.display.note(f"[yellow]no trials: {exc}[/]")
                write_json(self.run.plan_json, {"trials": [], **previous, "refused": str(exc)})
            return None
        specs = self._trial_specs(plan)
        if not specs:  # small discrete spaces run out: every configuration has been tried
            self.display.note(f"no further round: every configuration in the job's search spaces has been tried (${self.ledger.cap - used} left)")
            return None
        data = plan.to_json()
        data["round"] = len(previous.get("rounds", [])) + 1
        data["packing"] = self.packing_decision()
        data["eval_seconds"] = costs.eval_seconds
        # Every round's plan, and every trial planned so far (for reports and benchmarks).
        data["rounds"] = [*previous.get("rounds", []), {k: v for k, v in data.items() if k not in ("rounds", "trials")} | {"trials": [t["trial_id"] for t in specs]}]
        data["trials"] = [*previous.get("trials", []), *specs]
        write_json(self.run.plan_json, data)
        if data["round"] > 1:
            self.display.note(f"round {data['round']}: ${self.ledger.cap - used} of the cap is left; planning more trials with it")
        self.display.show_plan(plan, specs)
        return plan, specs

    def _round_learned(self, specs: list[dict]) -> bool:
        """Whether a round got anywhere: a round whose every trial failed is not repeated."""
        ids = {s["trial_id"] for s in specs}
        statuses = [t.get("status") for t in self.run.trials() if t["trial_id"] in ids]
        if statuses and all(status == "failed" for status in statuses):
            self.display.note("[red]every trial of this round failed; not planning another (see the trials' errors)[/]")
            return False
        return True

    def _concurrency(self) -> int:
        import torch

        return tuning_resources(self.packing_decision(), os.cpu_count() or 1, torch.cuda.device_count() if torch.cuda.is_available() else 0)[0]

    def _trial_specs(self, plan: Plan) -> list[dict]:
        from budgetft.runner.configs import trial_configs

        trials = self.run.trials()
        existing = len(trials)
        rates = rates_of(self.run)
        eval_s = len(self.task.eval) / read_json(self.run.calibration_json)["eval_rows_per_s"]
        specs = []
        for mp in plan.methods:
            tried = [t["config"] for t in trials if t.get("method") == mp.method]
            for config in trial_configs(self.spec.space_for(mp.method), mp.method, mp.trials, self.spec.seed + existing, tried):
                specs.append(
                    {
                        "trial_id": f"t{existing + len(specs) + 1:03d}-{mp.method}",
                        "method": mp.method,
                        "config": config,
                        "max_steps": mp.max_steps,
                        "grace": mp.grace_period,
                        "eval_steps": plan.eval_steps(mp.method),
                        # Calibrated lengths, seconds: what the worker asks the meter to
                        # prepay before its first step and evaluation.
                        "step_s": round(rates[mp.method].seconds_per_step, 3),
                        "eval_s": round(eval_s, 3),
                    }
                )
        return specs

    def stage_tuning(self, plan: Plan, specs: list[dict]) -> None:
        from budgetft.runner import ray_session

        ray_session.quiet_ray()
        from ray import tune
        from ray.tune.schedulers import AsyncHyperBandScheduler

        from budgetft.runner.trainable import train_trial
        from budgetft.runner.tracking import CapStopper, TrialTracker

        cpus = os.cpu_count() or 1
        # One Ray instance for every round of this session; shut down with the report.
        self._ray_started = ray_session.start(cpus, self.opts.ray_address) or self._ray_started
        best = self.tracker.best if self.tracker is not None else None  # an earlier round's
        self.tracker = TrialTracker(self.run, on_change=self.display.refresh, on_start=None if self.opts.ray_address else ray_session.record_processes)
        self.tracker.best = best
        self.meter.running = self.tracker.phases
        self.meter.needs = self.tracker.needs  # each worker's next step or evaluation, seconds
        self.meter.slice_s = 5.0
        self.meter.lookahead_s = max(10.0, 1.5 * max(r.seconds_per_step for r in rates_of(self.run).values()))
        self.meter.set_stage("tuning")
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        concurrency, resources = tuning_resources(self.packing_decision(), cpus, gpus)
        ctx = {
            "run_dir": str(self.run.root.resolve()),
            "job": self.spec.model_dump(mode="json"),
            "threads": int(resources["cpu"]),
            "session": self.meter.session,
            "chaos": os.environ.get("BUDGETFT_CHAOS"),  # faults on purpose (benchmarks/chaos.py)
        }
        max_t = max(s["max_steps"] / s["grace"] for s in specs)
        trainable = tune.with_resources(tune.with_parameters(train_trial, ctx=ctx), resources)
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search(specs)},
            tune_config=tune.TuneConfig(
                scheduler=AsyncHyperBandScheduler(time_attr="rung_time", metric="accuracy", mode="max", max_t=max_t, grace_period=1, reduction_factor=plan.reduction_factor),
                max_concurrent_trials=concurrency,
                trial_name_creator=lambda t: t.config["trial"]["trial_id"],
                trial_dirname_creator=lambda t: t.config["trial"]["trial_id"],
            ),
            run_config=tune.RunConfig(
                name=f"session{self.meter.session}-round{read_json(self.run.plan_json, {}).get('round', 1)}",
                storage_path=str((self.run.root / "ray").resolve()),
                stop=CapStopper(self.run.root),
                callbacks=[self.tracker],
                verbose=0,
                # A trial that fails is recorded and the others go on; it is never retried
                # (its money is spent) and never ends the run.
                failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            ),
        )
        tuner.fit()

    def stage_report(self, info: dict, status: str) -> None:
        from budgetft.runner.tracking import finalize_trial

        if self.meter is None:
            return
        self.meter.set_stage("report")
        if self._ray_started:
            from budgetft.runner import ray_session

            ray_session.stop()
            self._ray_started = False
        if getattr(self, "sampler", None) is not None:
            self.sampler.stop()
        for trial in self.run.trials():
            if trial.get("status") == "running":
                finalize_trial(self.run, trial["trial_id"], budget_stopped=self.meter.stopped.is_set() and status == "finished", interrupted=status != "finished")
        info.update(status=status, finished=utc_now(), stop_reason=self.meter.reason or None)
        write_json(self.run.run_json, info)
        written = []
        try:
            from budgetft.report import write_reports
        except ImportError:
            write_reports = None
        if write_reports is not None:
            try:
                written = write_reports(self.run.root)
            except Exception as exc:  # a broken report must not lose the run's records
                self.console.print(f"[red]report failed: {exc}[/]")
        self.meter.close()
        self.ledger.refresh()
        self.display.final(written)


def busy_slowdown(margin: float = PRECHECK_MARGIN) -> float:
    """How much slower than its stored rates this machine will train now: other processes'
    threads share the cores (1 + their load per core), and never less than `margin`, since
    calibration may meet a neighbour that the check did not."""
    cpus = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return max(margin, 1.0 + load / cpus)


def budget_check(
    task, cap: Decimal, spent: Decimal, usd_per_hour: Decimal, calibration_steps: int = CALIBRATION_STEPS, *,
    baselines_done: bool = False, calibration: dict | None = None, concurrency: int = 1,
) -> Plan:
    """The plan's own arithmetic, before anything is spent: the plan a run would make, with
    this run's calibrated rates when it has them (a resumed run), else with the rates stored
    for this machine (or estimated) slowed by `busy_slowdown`, stages included. A budget that
    passes still buys a useful trial after its baselines and calibration are paid for; one
    that does not is refused (BudgetTooSmall, with the minimum) before a cent is spent."""
    from budgetft.runner.calibration import offline_rates, rates_from

    if calibration:
        rates, eval_rows_per_s, slow = rates_from(calibration["methods"]), calibration["eval_rows_per_s"], 1.0
    else:
        rates, eval_rows_per_s, _ = offline_rates(task, list(task.job.methods), device_name(), _device_type())
        slow = busy_slowdown()
        rates = {name: replace(r, seconds_per_step=r.seconds_per_step * slow, examples_per_s=r.examples_per_s / slow) for name, r in rates.items()}
    costs = run_costs(task, rates, eval_rows_per_s / slow, calibration_steps, baselines_done=baselines_done, calibration_done=calibration is not None)
    return plan_budget(cap, spent, usd_per_hour, rates, costs, task.job.train.max_steps, concurrency=concurrency)


def run_costs(
    task, rates, eval_rows_per_s: float, calibration_steps: int = CALIBRATION_STEPS, *, baselines_done: bool = False,
    calibration_done: bool = False,
) -> Costs:
    """What a run pays around training, in seconds: one evaluation of the task's rows at
    eval_rows_per_s; the zero-shot baseline (one evaluation and ~5 s to load the model) and
    calibration (each method's timed steps plus a warm-up step and ~3 s to apply it), unless
    already done; and per trial, fitting the verbalizer's class bias. `budgetft plan` and
    `budgetft run` share it, so they quote the same minimum budget."""
    from budgetft.class_bias import planned_seconds

    eval_seconds = len(task.eval) / eval_rows_per_s
    steps = calibration_steps + 1
    return Costs(
        eval_seconds=eval_seconds,
        baseline_seconds=0.0 if baselines_done else eval_seconds + 5,
        calibration_seconds=0.0 if calibration_done else sum(steps * r.seconds_per_step + 3 for r in rates.values()),
        trial_startup_seconds=Costs.trial_startup_seconds + planned_seconds(task.job, 1 / eval_rows_per_s),
    )


def tuning_resources(packing: dict | None, cpus: int, gpus: int) -> tuple[int, dict]:
    """(trials at once, Ray resources per trial). On GPUs: one trial per GPU unless packing
    chose more (a fractional GPU each); CPU threads are split between the trials at once."""
    per_gpu = int((packing or {}).get("trials_per_gpu") or 1) if gpus else 1
    concurrency = max(1, gpus * per_gpu)
    gpu = float((packing or {}).get("gpu_fraction") or 1.0) if gpus and per_gpu > 1 else float(bool(gpus))
    return concurrency, {"cpu": max(1, cpus // concurrency), "gpu": gpu}


def _device_type() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def rates_of(run: RunDir):
    from budgetft.runner.calibration import rates_from

    return rates_from(read_json(run.calibration_json)["methods"])
