"""`budgetft run --cloud gcp`: rent the GPU, run the job there, bring the results home, and leave
nothing running.

Stages (a dry run stops after `plan`):
  plan      job, instance, price, lifetime, overheads, script, request    (no network)
  preflight credentials, API, GPU quota, bucket writable                    (creates nothing)
  seed      local run dir; overheads charged to its ledger; run dir + wheel to the bucket
  create    the instance, zone by zone until one has capacity
  watch     VM state, spend and best accuracy until the VM is done or gone
  collect   results downloaded, the VM's true time reconciled, the VM deleted and confirmed gone
"""

from __future__ import annotations

import json
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

from budgetft.cloud.choose import ChoiceError
from budgetft.cloud.clients import require_clients
from budgetft.cloud.collect import download_run, reconcile, vm_usd
from budgetft.cloud.errors import CloudError, NoProject, ZoneUnavailable
from budgetft.cloud.estimate import boot_seconds, estimate, money
from budgetft.cloud.gcp import ENDPOINT_ENV, GcpProvider, default_credentials
from budgetft.cloud.package import build_wheel
from budgetft.cloud.plan import CloudOptions, LaunchError, LaunchPlan, make_plan, show_dry_run, summary_lines
from budgetft.cloud.provider import Provider
from budgetft.cloud.quota import check_quota
from budgetft.cloud.request import label_value, zones_for
from budgetft.cloud.storage import Bucket
from budgetft.cloud.watch import Watcher
from budgetft.files import write_json
from budgetft.money.errors import CatalogError
from budgetft.money.ledger import Ledger, read_charges
from budgetft.report import render
from budgetft.resume import ResumeError
from budgetft.rundir import FROZEN_STATES_DIR, RunDir
from budgetft.spec import JobError

# What a start-up script exit code means (see infra/gcp/startup.sh.tmpl).
VM_EXIT_CODES = {
    10: "the VM could not read the bucket: its service account needs roles/storage.objectUser on it",
    11: "the image has no usable Python",
    12: "installing budgetft on the VM failed",
    13: "the GPU never answered nvidia-smi: pick an image with the NVIDIA driver (BUDGETFT_GCP_IMAGE)",
    14: "the ledger refused the VM's boot charge",
}


def run_in_cloud(
    job: str | None,
    overrides: list[str],
    budget: Decimal | None,
    options: CloudOptions,
    *,
    cloud: str = "gcp",
    out: Path | None = None,
    resume: Path | None = None,
    console: Console,
) -> int:
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
    """The Compute provider and the project, from the environment. Credentials are looked up here
    (before anything is created) unless BUDGETFT_GCP_ENDPOINT points at a fake or private API."""
    require_clients("this command")
    credentials = None
    if not os.environ.get(ENDPOINT_ENV):
        credentials, found = default_credentials()
        project = project or found
    if not project:
        raise NoProject()
    return GcpProvider(project, credentials=credentials), project


def make_bucket(url: str, project: str, provider: Provider):
    credentials = getattr(provider, "_credentials", None)
    return Bucket(url, project=project, credentials=credentials)


class Launch:
    def __init__(self, plan: LaunchPlan, console: Console):
        self.plan, self.console = plan, console
        self.provider: Provider | None = None
        self.bucket = None
        self.zone: str | None = None  # where the VM was created
        self.created_dir = False
        self.wrote: list[Path] = []  # files and folders seed() created in an existing run directory
        self.gone = False
        self.deleted_by_us = False
        self.seeded = 0  # charges in the ledger the VM starts from

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
                self.create()
            except BaseException:
                self._forget_launch()  # no VM exists: undo what was prepared for it
                raise
            return self.watch_and_collect()
        except KeyboardInterrupt:
            if self.zone is None:
                self.say("[yellow]interrupted before a VM was created; nothing is running[/]")
            else:
                self.say("[yellow]interrupted: deleting the VM; what it uploaded stays in the bucket[/]")
            return 130
        finally:
            self.ensure_gone()

    def preflight(self) -> None:
        plan = self.plan
        self.provider, project = make_provider(plan.project)
        plan.project = project
        if plan.bucket_url.startswith("gs://PROJECT_ID-"):
            plan.bucket_url = f"gs://{project}-budgetft"
        info = self.provider.region(plan.region)  # credentials and API show up here
        check_quota(info.quotas, plan.instance, plan.region)

        if not plan.zone_given:
            plan.zones = zones_for(plan.region, None, info.zones)
        elif plan.zones[0] not in info.zones:
            raise LaunchError(f"zone {plan.zones[0]} is not in region {plan.region} (zones: {', '.join(info.zones)})")
        self.bucket = make_bucket(plan.bucket_url, project, self.provider)
        self.bucket.check_writable(plan.prefix)
        if plan.resumed:
            self.catch_up()

    def catch_up(self) -> None:
        """Before a resumed run gets a new VM: no VM of the run may still be up (two would spend
        one budget twice), and whatever the last one uploaded comes home first, so the new VM
        starts from the newest records (a launcher that died never downloaded them)."""
        plan = self.plan
        alive = self.provider.list(label_value(plan.run_id))
        if alive:
            names = ", ".join(f"{v.name} ({v.zone}, {v.status})" for v in alive)
            raise LaunchError(f"run {plan.run_id} still has a VM: {names}. Delete it first with `budgetft down {plan.run_id}`; what it uploaded is kept")
        files, warning = download_run(self.bucket, plan.prefix, plan.run_dir, plan.session - 1)
        if warning:
            raise LaunchError(f"{plan.run_dir}: {warning}; resolve the two ledgers before resuming")
        if files:
            charges = read_charges(RunDir(plan.run_dir).ledger)
            plan.spent = charges[-1].total if charges else plan.spent
            self.say(f"caught up {len(files)} file(s) from {plan.run_url}/run; spent ${money(plan.spent)} of ${money(plan.cap)}")
            if plan.spent >= plan.cap:
                raise LaunchError(f"{plan.run_dir}: the cap of ${money(plan.cap)} is spent; nothing is left for a new VM")
            plan.estimate = estimate(plan.cap - plan.spent, plan.instance)
            if not plan.estimate.enough:
                raise LaunchError(plan.estimate.refusal(plan.instance))

    def seed(self) -> None:
        """The local run dir with the overheads charged, then its copy in the bucket for the VM."""
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
        with Ledger(plan.run_dir, plan.cap) as ledger:
            for line in plan.estimate.overheads:
                ledger.charge(line.usd, line.category, f"cloud VM #{plan.session}: {line.what} ({line.seconds} s, estimated)", key=f"vm{plan.session}:{line.category}")
            self.seeded = len(ledger.records)
        self.record(status="launching")
        if plan.install.wheel:
            with tempfile.TemporaryDirectory(prefix="budgetft-wheel-") as tmp:
                wheel = build_wheel(Path(tmp))
                self.bucket.upload_file(wheel, f"{plan.prefix}/dist/{wheel.name}")
        # Old status files of an earlier VM of this run would read as this VM's.
        self.bucket.delete_prefix(f"{plan.prefix}/vm")
        count = self.bucket.upload_dir(plan.run_dir, f"{plan.prefix}/run", skip=("ray/", f"{FROZEN_STATES_DIR}/"))
        self.say(f"seeded   {count} file(s) to {plan.run_url}/run; ${plan.estimate.overhead_usd:.4f} of VM overheads charged to {plan.run_dir / 'ledger.jsonl'}")

    def create(self) -> None:
        plan, provider = self.plan, self.provider
        script = plan.startup_script()
        tried = []
        for zone in plan.zones:
            self.say(f"create   {plan.name} in {zone} ({plan.instance.label}, {plan.instance.provisioning})")
            try:
                op = provider.create(zone, plan.request(zone, script))
                provider.wait(zone, op)
            except ZoneUnavailable as exc:
                self._remove_leftover(zone)
                tried.append(str(exc))
                self.say(f"[yellow]{exc}[/]" + ("; trying the next zone" if zone != plan.zones[-1] else ""))
                continue
            except BaseException:
                self._remove_leftover(zone)
                raise
            self.zone = zone
            self.record(status="created", zone=zone, created=_now())
            return
        if plan.zone_given:
            raise CloudError(f"zone {plan.zones[0]} cannot start {plan.instance.label} now ({tried[0]}). Try --region {plan.region} to let budgetft try each of its zones, {'drop --spot' if plan.instance.spot else 'try --spot'}, or another --gpu")
        raise CloudError(
            f"no zone of {plan.region} could start {plan.instance.label} ({plan.instance.provisioning}) now; tried "
            + "; ".join(tried)
            + f". Try another --region (e.g. {'us-east1' if plan.region != 'us-east1' else 'us-central1'}), another --gpu, "
            + ("on-demand (drop --spot)" if plan.instance.spot else "--spot")
            + ", or again later. Nothing was left running."
        )

    def watch_and_collect(self) -> int:
        plan = self.plan
        watcher = Watcher(
            self.provider, self.bucket, plan.prefix, self.zone, plan.name,
            cap=plan.cap, max_run_seconds=plan.estimate.max_run_seconds, boot_estimate_s=boot_seconds(), console=self.console,
        )
        outcome = watcher.watch()
        # Seen gone already (done, preempted, deleted by its deadline), or delete it now.
        gone_at = outcome.gone_at or self.delete_vm()
        self.gone = True
        files, warning = download_run(self.bucket, plan.prefix, plan.run_dir, plan.session)
        if warning:
            self.say(f"[yellow]note:[/] {warning}")
        billed, running = vm_usd(plan.instance, outcome.last_vm, gone_at)
        charged, uncovered = reconcile(plan.run_dir, plan.cap, plan.session, self.seeded, billed, running)
        if charged:
            self.say(f"ledger   +${charged} for VM time the uploaded ledger missed")
        if uncovered:
            self.say(f"[yellow]warning:[/] the VM's time came to ${uncovered} more than the cap left; check the bill")
        self.record(status=outcome.kind, exit_code=outcome.exit_code, ended=_now(), vm_usd_billed=str(billed), vm_running_s=round(running))
        return self.report(outcome, files)

    def report(self, outcome, files: list[Path]) -> int:
        plan = self.plan
        charges = read_charges(RunDir(plan.run_dir).ledger)
        spent = charges[-1].total if charges else Decimal(0)
        how = "deleted by budgetft" if self.deleted_by_us else "deleted by Compute Engine"
        self.say(f"results  {len(files)} file(s) downloaded into {plan.run_dir}; spent ${money(spent)} of ${money(plan.cap)}")
        self.say(f"VM       {plan.name} {how}; confirmed gone")
        if outcome.kind == "finished":
            print_report(plan.run_dir, self.console)
            return 0
        what = {
            "failed": f"the job on the VM failed (exit code {outcome.exit_code}: {VM_EXIT_CODES.get(outcome.exit_code or 0, 'see below')})",
            "gone": "the VM disappeared mid-run: " + ("Spot preemption" if plan.instance.spot else "deleted by its max run duration or by someone else"),
            "stopped": "the VM stopped before the job finished" + (" (Spot preemption)" if plan.instance.spot else ""),
            "silent": "the VM never reported back (the start-up script could not write to the bucket, or the image did not boot)",
            "deadline": "the VM outlived its max run duration; budgetft deleted it",
            "interrupted": "interrupted: the VM was deleted",
            "lost": "lost contact with the cloud while watching; budgetft deleted the VM once it could",
        }[outcome.kind]
        self.say(f"[bold red]{what}[/]")
        log = plan.run_dir / "cloud" / f"startup-{plan.session}.log"
        if log.is_file():
            tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-12:]
            self.say(f"start-up log {log}, last lines:\n  " + "\n  ".join(tail))
        p = outcome.progress
        if p is not None:
            best = f", best accuracy {p.best_accuracy:.3f} ({p.best_trial})" if p.best_accuracy is not None else ""
            self.say(f"uploaded before the end: {p.trials} trial(s){best}")
        left = plan.cap - spent
        if left > 0:
            flags = " --spot" if plan.instance.spot else ""
            self.say(f"continue with: budgetft run --cloud gcp --resume {plan.run_dir}{flags}   (${money(left)} of the cap left)")
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
            self.say(f"[bold red]could not delete {self.plan.name} in {self.zone}: {exc}[/]\nrun: budgetft down {self.plan.run_id}")

    def _remove_leftover(self, zone: str) -> None:
        """A failed insert can leave an instance record behind; never leave one."""
        try:
            if self.provider.get(zone, self.plan.name) is not None:
                self.provider.delete_and_confirm(zone, self.plan.name)
        except CloudError:
            pass

    def _forget_launch(self) -> None:
        """No VM was created: a new run directory made for it goes (nothing was spent); a resumed
        run keeps its directory and the over-counted overheads are said out loud."""
        plan = self.plan
        if not plan.resumed:
            if self.created_dir:
                shutil.rmtree(plan.run_dir, ignore_errors=True)
            for path in self.wrote:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            try:
                self.bucket.delete_prefix(plan.prefix)
            except CloudError:
                pass
        elif self.seeded:
            self.record(status="not created")
            self.say(f"note: ${plan.estimate.overhead_usd:.4f} was charged to {plan.run_dir} for a VM that was never created (the ledger over-counts, never under-counts)")

    def record(self, **fields) -> None:
        plan = self.plan
        path = plan.launch_record
        data = json.loads(path.read_text()) if path.is_file() else {
            "session": plan.session,
            "name": plan.name,
            "project": plan.project,
            "region": plan.region,
            "machine": plan.instance.machine,
            "gpu": plan.instance.gpu,
            "spot": plan.instance.spot,
            "usd_per_hour": str(plan.instance.usd_per_hour),
            "max_run_seconds": plan.estimate.max_run_seconds,
            "overheads": [dict(asdict(line), usd=str(line.usd)) for line in plan.estimate.overheads],
            "bucket_url": plan.bucket_url,
            "run_url": plan.run_url,
            "image": plan.image,
            "install": plan.install.describe(),
            "started": _now().isoformat(),
        }
        data.update(fields)
        write_json(path, data)


def print_report(run_dir: Path, console: Console) -> None:
    try:
        sys.stdout.write(render(run_dir, "md") + "\n")
    except Exception as exc:  # the results are home either way
        console.print(f"[yellow]report:[/] could not render ({exc}); see {run_dir} and run `budgetft report {run_dir}`")


def _now() -> datetime:
    return datetime.now(timezone.utc)
