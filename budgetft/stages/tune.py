"""Stage 4, tune: one round of trials under Ray Tune, ASHA stopping the weak ones.

Each trial runs in its own Ray worker process (budgetft.tune.worker); the driver's tracker
records how each one ended (budgetft.tune.tracking); the cap's stopper ends them all when the
meter can no longer pay. Ray is started once per session and shut down with the report.

On a cluster (`--ray-address`) the trials run on every node: concurrency comes from the cluster's
resources, the workers pay, report and send their weights home through the run's actor
(budgetft.tune.home) instead of the driver's disk, and Ray Tune's own results go to the run's
storage (`storage`: the run's bucket on a cloud cluster, the run directory on one machine).
"""

from __future__ import annotations

import os

from budgetft.models import cache
from budgetft.planner import Plan
from budgetft.planner.costs import cluster_tuning_resources, tuning_resources
from budgetft.planner.rates import rates_from
from budgetft.rundir import RunDir
from budgetft.tune import chaos, ray_session
from budgetft.tune.cluster import node_resources
from budgetft.tune.home import start_home, stop_home
from budgetft.tune.trial_entry import train_trial

# Imported inside functions: ray, torch: importing this module must stay cheap (start-up time).


class TuneSession:
    """Ray and the trial tracker for every round of one session of a run."""

    def __init__(self, job, run: RunDir, meter, ray_address: str | None = None, on_event=None, storage: str | None = None):
        self.job, self.run, self.meter = job, run, meter
        self.ray_address = ray_address
        self.storage = storage  # Ray Tune's storage_path (a gs:// URI on a cloud cluster); None: the run directory's ray/
        self.home = None  # on a cluster: the run's actor (budgetft.tune.home), started with the first round
        self.on_event = on_event or (lambda event=None: None)
        self.tracker = None
        self.connected = False  # whether we connected to Ray (and must disconnect)

    @property
    def best(self) -> tuple[float, str] | None:
        return self.tracker.best if self.tracker is not None else None

    @property
    def running(self) -> set[str]:
        return set(self.tracker.running) if self.tracker is not None else set()

    def round(self, plan: Plan, specs: list[dict]) -> None:
        """Run one round's trials to the end (or to the cap)."""
        ray_session.quiet_ray()  # before ray loads: tracking imports ray at its top
        from ray import tune
        from ray.tune.schedulers import AsyncHyperBandScheduler

        from budgetft.tune.tracking import CapStopper, TrialTracker

        faults = os.environ.get(chaos.ENV)
        chaos.parse(faults)  # a malformed fault list is refused here, not in every worker
        cpus = os.cpu_count() or 1
        self.connected = ray_session.start(cpus, self.ray_address) or self.connected
        best = self.best  # an earlier round's
        self.tracker = TrialTracker(self.run, on_change=self.on_event, on_start=None if self.ray_address else ray_session.record_processes)
        self.tracker.best = best
        meter = self.meter
        meter.running = self.tracker.phases
        meter.needs = self.tracker.needs  # each worker's next step or evaluation, seconds
        meter.slice_s = 5.0
        calibration = self.run.calibration()
        meter.lookahead_s = max(10.0, 1.5 * max(r.seconds_per_step for r in rates_from(calibration["methods"]).values()))
        meter.set_stage("tuning")
        # The driver's held model (baselines, calibration) would sit in GPU memory beside the trials.
        cache.release()
        import torch

        if self.ray_address:  # the cluster's nodes, not the driver's machine
            concurrency, resources = cluster_tuning_resources(calibration.get("packing"), node_resources())
            if self.home is None:
                self.home = start_home(self.run.root)
                home = self.home
                meter.on_publish = lambda state: home.publish.remote(state)  # fire and forget, every half second
            meter.placement = self.tracker.placement
        else:
            gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
            concurrency, resources = tuning_resources(calibration.get("packing"), cpus, gpus)
        ctx = {
            "run_dir": str(self.run.root.resolve()),
            "job": self.job.model_dump(mode="json"),  # every model's: a trial names its own
            "threads": int(resources["cpu"]),
            "session": meter.session,
            "chaos": faults,  # faults on purpose (benchmarks/chaos.py)
        }
        if self.home is not None:
            ctx["home"] = self.home
        max_t = max(s["max_steps"] / s["grace"] for s in specs)
        trainable = tune.with_resources(tune.with_parameters(train_trial, ctx=ctx), resources)
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search(specs)},
            tune_config=tune.TuneConfig(
                scheduler=AsyncHyperBandScheduler(time_attr="rung_time", metric="accuracy", mode="max", max_t=max_t, grace_period=1, reduction_factor=plan.reduction_factor),
                max_concurrent_trials=concurrency,
                # A worker process runs trial after trial: it reads its model's weights once
                # (budgetft.models.cache) instead of once per trial.
                reuse_actors=True,
                trial_name_creator=lambda t: t.config["trial"]["trial_id"],
                trial_dirname_creator=lambda t: t.config["trial"]["trial_id"],
            ),
            run_config=tune.RunConfig(
                name=f"session{meter.session}-round{self.run.plan().round or 1}",
                storage_path=self.storage or str((self.run.root / "ray").resolve()),
                stop=CapStopper(self.run.root),
                callbacks=[self.tracker],
                verbose=0,
                # A trial that fails is recorded and the others go on; it is never retried
                # (its money is spent) and never ends the run.
                failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            ),
        )
        tuner.fit()

    def learned(self, specs: list[dict]) -> bool:
        """Whether a round got anywhere: a round whose every trial failed, or none of whose
        trials even started (no record), is not repeated: the next would fare the same."""
        ids = {s["trial_id"] for s in specs}
        statuses = [t.status for t in self.run.trials() if t.trial_id in ids]
        return bool(statuses) and not all(status == "failed" for status in statuses)

    def close(self) -> None:
        if self.home is not None:
            self.meter.on_publish = None
            stop_home(self.home)
            self.home = None
        if self.connected:
            ray_session.stop()
            self.connected = False
