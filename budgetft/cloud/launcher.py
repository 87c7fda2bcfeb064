"""`budgetft run --cloud gcp`: rent the GPU, run the job there, bring the results home, and leave
nothing running.

Stages (a dry run stops after `plan`):
  plan      job, instance, price with side costs, lifetime, overheads, failover order   (no network)
  preflight `budgetft doctor`'s checks: credentials, APIs, your rights, GPU quota, the image,
            the network, the bucket and both accounts' rights on it                  (creates nothing)
  seed      the local run dir; the wheel (its sha256 goes into the VM's script); the run dir to the bucket
  start     placement by placement, zone by zone (budgetft.cloud.failover, .vm_attempts): the
            overheads charged before the first try in each, the ledger to the bucket before every
            try, a failed start's bill charged before anything else
  watch     VM state, spend and best accuracy until the VM is done or gone
  collect   results downloaded, the VM's true time reconciled, the VM gone (it deletes itself when
            done; budgetft deletes it otherwise) and confirmed gone
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import asdict
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.markup import escape  # messages may hold brackets, e.g. budgetft[gcp]

from budgetft.cloud import image as images
from budgetft.cloud.choose import ChoiceError
from budgetft.cloud.clients import require_clients
from budgetft.cloud.collect import download_run, reconcile, settle_missing_tail, vm_usd
from budgetft.cloud.doctor import run_doctor
from budgetft.cloud.doctor_findings import DoctorRequest
from budgetft.cloud.ending import end_reason, ended_text
from budgetft.cloud.errors import CloudError, NoProject
from budgetft.cloud.estimate import boot_seconds, estimate, money
from budgetft.cloud.failover import Blocked, resized, start_vm
from budgetft.cloud.gcp import ENDPOINT_ENV, GcpProvider, default_credentials
from budgetft.cloud.package import build_wheel, sha256_of
from budgetft.cloud.plan import LaunchError, LaunchPlan, make_plan
from budgetft.cloud.plan_view import show_dry_run, summary_lines
from budgetft.cloud.provider import Provider
from budgetft.cloud.request import label_value
from budgetft.cloud.vm_attempts import VmAttempts
from budgetft.cloud.watch import Watcher
from budgetft.doctor_local import line
from budgetft.files import read_json, write_json
from budgetft.money.catalog_store import default_catalog
from budgetft.money.errors import CatalogError
from budgetft.money.ledger import Ledger, read_charges
from budgetft.report import render
from budgetft.resume import ResumeError
from budgetft.rundir import FROZEN_STATES_DIR, RunDir
from budgetft.spec import JobError

# A launch record in one of these states was never brought home by its launcher.
UNCOLLECTED = ("launching", "created")


def run_in_cloud(job, overrides, budget, options, *, cloud: str = "gcp", out: Path | None = None, resume: Path | None = None, console: Console) -> int:
    """Run the job on a cloud VM; returns the process exit code (0 finished, 1 the VM's run
    failed or was cut short, 2 refused before anything was created, 130 interrupted)."""
    if cloud != "gcp":
        console.print(f"[bold red]error:[/] unknown cloud {cloud!r}; supported: gcp")
        return 2
    try:
        require_clients(f"budgetft run --cloud {cloud}")
        plan = make_plan(job, overrides, budget, options, out=out, resume=resume)
        if options.dry_run:
            show_dry_run(plan, console)
            return 0
        return Launch(plan, console).execute()
    except (LaunchError, ChoiceError, CatalogError, JobError, CloudError, ResumeError) as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2


def make_provider(project: str | None) -> tuple[Provider, str]:
    """The Compute provider and the project, from the environment (`status`, `down`). Credentials
    are looked up here unless BUDGETFT_GCP_ENDPOINT points at a fake or private API."""
    require_clients("this command")
    credentials = None
    if not os.environ.get(ENDPOINT_ENV):
        credentials, found = default_credentials()
        project = project or found
    if not project:
        raise NoProject()
    return GcpProvider(project, credentials=credentials), project


class Launch:
    def __init__(self, plan: LaunchPlan, console: Console):
        self.plan, self.console = plan, console
        self.provider: GcpProvider | None = None
        self.bucket = None
        self.findings = None
        self.attempts: VmAttempts | None = None
        self.blocked = Blocked()  # one VM today; a multi-VM launcher shares it across its VMs
        self.zone: str | None = None  # where the VM was created
        self.placement = None
        self.est = None
        self.wheel_sha256: str | None = None
        self.created_dir = False
        self.wrote: list[Path] = []  # files and folders seed() created in an existing run directory
        self.gone = False
        self.deleted_by_us = False

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)

    # -- the stages

    def execute(self) -> int:
        try:
            self.preflight()
            for label, text in summary_lines(self.plan):
                self.say(f"{label:<9} {text}")
            try:
                self.seed()
                self.start()
            except BaseException:
                self._forget_launch()  # no VM exists: undo what was prepared for it
                raise
            return self.watch_and_collect()
        except KeyboardInterrupt:
            self.say("[yellow]interrupted before a VM was created; nothing is running[/]" if self.zone is None else "[yellow]interrupted: deleting the VM; what it uploaded stays in the bucket[/]")
            return 130
        finally:
            self.ensure_gone()

    def preflight(self) -> None:
        """The doctor's checks, for this plan; nothing is created or charged when one fails."""
        plan = self.plan
        bucket = None if plan.bucket_url.startswith("gs://PROJECT_ID-") else plan.bucket_url
        found = run_doctor(DoctorRequest(
            project=plan.project, bucket=bucket, region=plan.region, region_given=plan.region_given, instance=plan.instance,
            external_ip=plan.external_ip, max_run_seconds=plan.estimate.max_run_seconds, hf_token_secret=plan.hf_token_secret,
            disk_gb=plan.instance.disk_gb, runs_dir=plan.run_dir.parent,
        ))
        for check in found.checks:
            if check.status in ("fail", "warn"):
                self.say(escape(line(check)))
        if found.failed:
            raise LaunchError(f"{len(found.failed)} check(s) above failed; nothing was created or charged. Fix them and run again "
                              "(`budgetft doctor --cloud gcp` makes the same checks)")
        self.findings, self.provider = found, found.provider
        self.provider.notify = self.say
        plan.project = found.project
        if plan.hf_token_secret:
            plan.hf_token_secret = plan.hf_token_secret.replace("projects/PROJECT_ID/", f"projects/{found.project}/")
        if plan.bucket_url.startswith("gs://PROJECT_ID-"):
            plan.bucket_url = f"gs://{found.project}-budgetft"
        self.bucket = found.bucket
        self.bucket.check_writable(plan.prefix)
        disk = images.disk_gb(plan.instance.disk_gb, found.image.image)
        if disk > plan.instance.disk_gb:
            self.say(f"image    {found.image.image.name} needs a {disk} GB boot disk: the VM gets one (priced in)")
            plan.order = tuple(resized(p, default_catalog(), disk) for p in plan.order)
        if plan.resumed:
            self.catch_up()

    def catch_up(self) -> None:
        """Before a resumed run gets a new VM: no VM of the run may still be up (two would spend
        one budget twice), whatever the last one uploaded comes home first, and a last VM whose
        launcher died is charged what its uploads missed."""
        plan = self.plan
        alive = self.provider.list(label_value(plan.run_id))
        if alive:
            names = ", ".join(f"{v.name} ({v.zone}, {v.status})" for v in alive)
            raise LaunchError(f"run {plan.run_id} still has a VM: {names}. Delete it first with `budgetft down {plan.run_id}`; what it uploaded is kept")
        files, warning = download_run(self.bucket, plan.prefix, plan.run_dir, plan.session - 1)
        if warning:
            raise LaunchError(f"{plan.run_dir}: {warning}; resolve the two ledgers before resuming")
        last = plan.run_dir / "cloud" / f"launch-{plan.session - 1}.json"
        prev = read_json(last, {}) if last.is_file() else {}
        if prev.get("status") in UNCOLLECTED and prev.get("zone"):
            finished = self.bucket.read_text(f"{plan.prefix}/vm/exit_code") is not None
            try:
                events = self.provider.events(prev["zone"], prev["name"])
            except CloudError:
                events = []  # then its last minute is charged instead
            charged, how = settle_missing_tail(plan.run_dir, plan.cap, plan.session - 1, int(prev.get("seeded", 0)), Decimal(prev["usd_per_hour"]), events, finished)
            write_json(last, {**prev, "status": "settled on resume", "settled_usd": str(charged)})
            self.say(f"settled  {how}; ${money(charged)} charged")
        charges = read_charges(RunDir(plan.run_dir).ledger)
        plan.spent = charges[-1].total if charges else plan.spent
        if files:
            self.say(f"caught up {len(files)} file(s) from {plan.run_url}/run; spent ${money(plan.spent)} of ${money(plan.cap)}")
        if plan.spent >= plan.cap:
            raise LaunchError(f"{plan.run_dir}: the cap of ${money(plan.cap)} is spent; nothing is left for a new VM")
        plan.estimate = estimate(plan.cap - plan.spent, plan.instance, plan.side_for(plan.instance, self.findings.bucket_location))
        if not plan.estimate.enough:
            raise LaunchError(plan.estimate.refusal(plan.instance))

    def seed(self) -> None:
        """The local run dir, the wheel, and the run dir's copy in the bucket for the VM. The
        VM's overheads are charged when a placement is tried (vm_attempts)."""
        plan = self.plan
        self.created_dir = not plan.run_dir.exists()
        plan.run_dir.mkdir(parents=True, exist_ok=True)
        run = RunDir(plan.run_dir)
        job_yaml = run.job_yaml
        self.wrote = [p for p in (job_yaml, run.ledger, plan.run_dir / "inputs", plan.run_dir / "cloud") if not p.exists()]
        if not job_yaml.exists():
            job_yaml.write_text(plan.vm_job_yaml, encoding="utf-8")
        for local, name in plan.inputs:
            target = plan.run_dir / "inputs" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(local, target)
        Ledger(plan.run_dir, plan.cap).close()  # the VM's ledger starts as ours
        self.record(status="launching")
        if plan.install.wheel:
            with tempfile.TemporaryDirectory(prefix="budgetft-wheel-") as tmp:
                wheel = build_wheel(Path(tmp))
                self.wheel_sha256 = sha256_of(wheel)
                self.bucket.upload_file(wheel, f"{plan.prefix}/dist/{wheel.name}")
        # Old status files of an earlier VM of this run would read as this VM's.
        self.bucket.delete_prefix(f"{plan.prefix}/vm")
        count = self.bucket.upload_dir(plan.run_dir, f"{plan.prefix}/run", skip=("ray/", f"{FROZEN_STATES_DIR}/"))
        self.say(f"seeded   {count} file(s) to {plan.run_url}/run" + (f"; wheel sha256 {self.wheel_sha256[:16]}…" if self.wheel_sha256 else ""))

    def start(self) -> None:
        plan, found = self.plan, self.findings
        self.attempts = VmAttempts(
            plan, self.provider, self.bucket, self.say, image_source=found.image.source, offered=found.offered,
            bucket_location=found.bucket_location, wheel_sha256=self.wheel_sha256, regions=dict(found.regions),
        )
        started = start_vm(self.provider, plan.name, list(plan.order), self.attempts, self.blocked, self.say)
        self.zone, self.placement = started.zone, started.placement
        _, self.est = self.attempts.current
        inst = started.placement.instance
        self.record(status="created", zone=started.zone, region=started.placement.region, machine=inst.machine, gpu=inst.gpu, spot=inst.spot,
                    usd_per_hour=str(self.est.usd_per_hour), max_run_seconds=self.est.max_run_seconds, seeded=self.attempts.seeded,
                    image=found.image.source, failed_starts=self.attempts.failed, created=_now())

    def watch_and_collect(self) -> int:
        plan, est = self.plan, self.est
        watcher = Watcher(self.provider, self.bucket, plan.prefix, self.zone, plan.name, cap=plan.cap,
                          max_run_seconds=est.max_run_seconds, boot_estimate_s=boot_seconds(), console=self.console)
        outcome = watcher.watch()
        # Seen gone already (it deleted itself when done, a preemption, its deadline), or delete it now.
        gone_at = outcome.gone_at or self.delete_vm()
        self.gone = True
        reason, preempted = "", False
        if outcome.kind in ("gone", "stopped"):
            reason, preempted = end_reason(self.provider, self.zone, plan.name, outcome.last_vm, est.max_run_seconds)
        files, warning = download_run(self.bucket, plan.prefix, plan.run_dir, plan.session)
        if warning:
            self.say(f"[yellow]note:[/] {warning}")
        billed, running = vm_usd(est.usd_per_hour, self.placement.instance.disk_usd_per_hour, outcome.last_vm, gone_at)
        charged, uncovered = reconcile(plan.run_dir, plan.cap, plan.session, self.attempts.seeded, billed, running)
        if charged:
            self.say(f"ledger   +${charged} for VM time the uploaded ledger missed")
        if uncovered:
            self.say(f"[yellow]warning:[/] the VM's time came to ${uncovered} more than the cap left; check the bill")
        self.record(status=outcome.kind, exit_code=outcome.exit_code, ended=_now(), vm_usd_billed=str(billed), vm_running_s=round(running),
                    end_reason=reason, preempted=preempted)
        return self.report(outcome, files, reason)

    def report(self, outcome, files: list[Path], reason: str) -> int:
        plan = self.plan
        charges = read_charges(RunDir(plan.run_dir).ledger)
        spent = charges[-1].total if charges else Decimal(0)
        how = "deleted by budgetft" if self.deleted_by_us else "deleted itself when done" if outcome.exit_code is not None else "deleted by Compute Engine"
        self.say(f"results  {len(files)} file(s) downloaded into {plan.run_dir}; spent ${money(spent)} of ${money(plan.cap)}")
        self.say(f"VM       {plan.name} {how}; confirmed gone")
        if outcome.kind == "finished":
            print_report(plan.run_dir, self.console)
            return 0
        self.say(f"[bold red]{escape(ended_text(outcome.kind, outcome.exit_code, reason))}[/]")
        log = plan.run_dir / "cloud" / f"startup-{plan.session}.log"
        if log.is_file():
            tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-12:]
            self.say(f"start-up log {log}, last lines:\n  " + "\n  ".join(escape(t) for t in tail))
        p = outcome.progress
        if p is not None:
            best = f", best accuracy {p.best_accuracy:.3f} ({p.best_trial})" if p.best_accuracy is not None else ""
            self.say(f"uploaded before the end: {p.trials} trial(s){best}")
        if plan.cap - spent > 0:
            flags = (" --spot" if plan.instance.spot else "") + (" --fallback-on-demand" if plan.fallback_on_demand else "") + ("" if plan.external_ip else " --no-external-ip")
            self.say(f"continue with: budgetft run --cloud gcp --resume {plan.run_dir}{flags}   (${money(plan.cap - spent)} of the cap left)")
        return 130 if outcome.kind == "interrupted" else 1

    # -- keeping nothing running

    def delete_vm(self) -> datetime:
        if self.zone is not None:
            self.say(f"delete   {self.plan.name} in {self.zone}")
            self.provider.delete_and_confirm(self.zone, self.plan.name)
            self.deleted_by_us = True
        return _now()

    def ensure_gone(self) -> None:
        """Last line of defence: whatever went wrong, try to delete the VM we created."""
        if self.zone is None or self.gone or self.provider is None:
            return
        try:
            self.provider.delete_and_confirm(self.zone, self.plan.name)
            self.gone = True
            self.say(f"deleted  {self.plan.name}; confirmed gone")
        except Exception as exc:
            self.say(f"[bold red]could not delete {self.plan.name} in {self.zone}: {escape(str(exc))}[/]\nrun: budgetft down {self.plan.run_id}")

    def _forget_launch(self) -> None:
        """No VM was created: a new run directory made for it goes, unless a failed start was
        billed (then the ledger is the record of that money); a resumed run keeps its directory
        and the over-counted overheads are said out loud."""
        plan = self.plan
        failed = self.attempts.failed if self.attempts else 0
        overheads = self.attempts.vm_charges() if self.attempts and self.attempts.keys else Decimal(0)
        if not plan.resumed and not failed:
            if self.created_dir:
                shutil.rmtree(plan.run_dir, ignore_errors=True)
            for path in self.wrote:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            try:
                self.bucket.delete_prefix(plan.prefix)
            except (CloudError, AttributeError):
                pass
            return
        if plan.run_dir.exists():
            self.record(status="not created", failed_starts=failed)
        if failed:
            self.say(f"note: {failed} failed start(s) that Compute Engine bills are charged in {plan.run_dir / 'ledger.jsonl'}, which is kept")
        if overheads:
            self.say(f"note: ${money(overheads)} was charged to {plan.run_dir} for a VM that was never created (the ledger over-counts, never under-counts)")

    def record(self, **fields) -> None:
        plan = self.plan
        path = plan.launch_record
        data = read_json(path, None) if path.is_file() else None
        if data is None:
            data = {
                "session": plan.session,
                "name": plan.name,
                "project": plan.project,
                "region": plan.region,
                "machine": plan.instance.machine,
                "gpu": plan.instance.gpu,
                "spot": plan.instance.spot,
                "usd_per_hour": str(plan.estimate.usd_per_hour),
                "max_run_seconds": plan.estimate.max_run_seconds,
                "overheads": [dict(asdict(line), usd=str(line.usd)) for line in plan.estimate.overheads],
                "bucket_url": plan.bucket_url,
                "run_url": plan.run_url,
                "image": plan.image,
                "external_ip": plan.external_ip,
                "install": plan.install.describe(),
                "wheel_sha256": self.wheel_sha256,
                "started": _now().isoformat(),
            }
        for key, value in fields.items():
            data[key] = value.isoformat() if isinstance(value, datetime) else value
        data["wheel_sha256"] = self.wheel_sha256 or data.get("wheel_sha256")
        write_json(path, data)


def print_report(run_dir: Path, console: Console) -> None:
    try:
        sys.stdout.write(render(run_dir, "md") + "\n")
    except Exception as exc:  # the results are home either way
        console.print(f"[yellow]report:[/] could not render ({escape(str(exc))}); see {run_dir} and run `budgetft report {run_dir}`")


def _now() -> datetime:
    return datetime.now(timezone.utc)
