"""Everything a cloud launch will do, decided before anything is created (and all a dry run shows):
the job as the VM will see it, the instance, its price with the side costs and its lifetime, the
overheads charged up front, where it will be tried in turn, the start-up script and the instance
request. No network here: the launch's preflight then narrows it with what the cloud says (live
zones, the image, the bucket's region)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from budgetft.cloud import image as images
from budgetft.cloud import request as req
from budgetft.cloud.choose import Choice, choose, model_params
from budgetft.cloud.estimate import VmEstimate, boot_seconds, disk_gb_for, estimate, money
from budgetft.cloud.failover import Placement, placements
from budgetft.cloud.gcp import project_from_environment
from budgetft.cloud.package import InstallSource, install_source
from budgetft.cloud.side_costs import SideCosts, side_costs
from budgetft.cloud.startup import SHA_AT_LAUNCH, VM_WORK, StartupParams, render
from budgetft.cloud.storage import parse_url, run_prefix
from budgetft.files import read_json
from budgetft.money.catalog import DEFAULT_REGION, Instance
from budgetft.money.catalog_store import default_catalog
from budgetft.money.usd import round_up, usd
from budgetft.resume import new_run_dir, resume_point
from budgetft.rundir import RunDir
from budgetft.spec import JobSpec, dump_job, load_job

BUCKET_ENV = "BUDGETFT_BUCKET"
LAUNCH_DIR = "cloud"  # <run_dir>/cloud/launch-<n>.json, startup-<n>.log: one per VM of the run


class LaunchError(ValueError):
    """A cloud run that cannot start as asked; the message says why and what to do."""


@dataclass
class LaunchPlan:
    spec: JobSpec
    vm_job_yaml: str  # the job as the VM reads it (local data files point into run/inputs/)
    inputs: list[tuple[Path, str]]  # local file -> name under run/inputs/
    run_dir: Path
    run_id: str
    session: int  # 1 for a run's first VM, +1 per --resume
    resumed: bool
    cap: Decimal
    spent: Decimal
    choice: Choice
    estimate: VmEstimate
    project: str | None
    bucket_url: str
    region: str
    zones: list[str]
    zone_given: bool
    install: InstallSource
    image: str  # the planned image reference (a family); a launch resolves it to one image
    region_given: bool = False
    external_ip: bool = True
    fallback_on_demand: bool = False
    hf_token_secret: str | None = None  # projects/P/secrets/S
    model_params: float = 0.0
    full_finetune: bool = False
    order: tuple[Placement, ...] = ()  # where the VM is tried, in turn (budgetft.cloud.failover)

    @property
    def instance(self) -> Instance:
        return self.choice.instance

    @property
    def side(self) -> SideCosts:
        """The side costs of the first placement, the bucket assumed in its region (a dry run)."""
        return self.side_for(self.instance, None)

    def side_for(self, instance: Instance, bucket_location: str | None) -> SideCosts:
        return side_costs(instance, external_ip=self.external_ip, bucket_location=bucket_location, model_params=self.model_params, full_finetune=self.full_finetune)

    @property
    def remaining(self) -> Decimal:
        return self.cap - self.spent

    @property
    def name(self) -> str:
        return req.instance_name(self.run_id, self.session)

    @property
    def prefix(self) -> str:
        return run_prefix(self.bucket_url, self.run_id)

    @property
    def run_url(self) -> str:
        bucket, _ = parse_url(self.bucket_url)
        return f"gs://{bucket}/{self.prefix}"

    @property
    def launch_record(self) -> Path:
        return self.run_dir / LAUNCH_DIR / f"launch-{self.session}.json"

    def startup_script(self, *, price: object = None, wheel_sha256: str | None = None, **overrides) -> str:
        """The VM's script; `price` is the placement's full rate (default: the plan's)."""
        wheel_url = f"{self.run_url}/dist/{self.install.wheel}" if self.install.wheel else ""
        params = StartupParams(
            run_id=self.run_id,
            session=self.session,
            run_url=self.run_url,
            cap_usd=money(self.cap),
            price_per_hour=str(price if price is not None else self.estimate.usd_per_hour),
            boot_estimate_s=boot_seconds(),
            wheel_url=wheel_url,
            pip_spec=self.install.pip_spec,
            wheel_sha256=(wheel_sha256 if wheel_sha256 is not None else SHA_AT_LAUNCH) if wheel_url else "",
            hf_token_secret=self.hf_token_secret or "",
        )
        if overrides:
            params = StartupParams(**{**params.__dict__, **overrides})
        return render(params)

    def request(self, zone: str, script: str | None = None, *, instance: Instance | None = None, est: VmEstimate | None = None, image: str | None = None) -> dict:
        """The instance request for `zone`: by default the plan's first placement."""
        instance, est = instance or self.instance, est or self.estimate
        scopes = req.SCOPES + ((req.CLOUD_PLATFORM_SCOPE,) if self.hf_token_secret else ())
        spec = req.VmSpec(
            name=self.name,
            zone=zone,
            instance=instance,
            max_run_seconds=est.max_run_seconds,
            startup_script=script if script is not None else self.startup_script(price=est.usd_per_hour),
            service_account=req.service_account(self.project or "PROJECT_ID"),
            image=image or self.image,
            labels=req.labels(self.run_id, self.session, self.spec.name),
            external_ip=self.external_ip,
            network=req.network(),
            subnet=req.subnet(),
            scopes=scopes,
        )
        return req.instance_request(spec)


@dataclass(frozen=True)
class CloudOptions:
    """What `budgetft run --cloud` was asked for, beside the job and the budget."""

    gpu: str | None = None  # t4, l4, v100, ... (default: the most training per dollar)
    machine: str | None = None  # e.g. n1-standard-8
    zone: str | None = None
    region: str | None = None
    spot: bool = False
    project: str | None = None
    bucket: str | None = None  # gs:// URL for the run's results
    dry_run: bool = False
    external_ip: bool = True  # False: --no-external-ip (Private Google Access and Cloud NAT instead)
    fallback_on_demand: bool = False  # --fallback-on-demand: a Spot run may fall back to standard VMs
    hf_token_secret: str | None = None  # Secret Manager secret holding the hub token (name or projects/P/secrets/S)


def make_plan(
    job: str | None,
    overrides: list[str],
    budget: Decimal | None,
    options: CloudOptions,
    *,
    out: Path | None = None,
    resume: Path | None = None,
) -> LaunchPlan:
    gpu, machine, zone, region = options.gpu, options.machine, options.zone, options.region
    spot, project, bucket = options.spot, options.project, options.bucket
    region_given = bool(zone or region)

    if zone and region and req.region_of(zone) != region:
        raise LaunchError(f"--zone {zone} is not in --region {region}; give one of them")
    region = req.region_of(zone) if zone else (region or None)

    # The run directory, its cap and what it has spent: decided as for a local run.
    if resume is not None:
        point = resume_point(Path(resume), budget)
        run, cap, spent = point.run, point.cap, point.spent
        spec = load_job(job or str(run.job_yaml), overrides)
        run_dir = Path(resume)
        run_id = str(point.info.run_id or run_dir.name)
        launches = sorted((run_dir / LAUNCH_DIR).glob("launch-*.json"))
        session = len(launches) + 1
        # By default a resumed run keeps its instance (same price, and its calibration holds).
        last = read_json(launches[-1], {}) if launches else {}
        if not gpu and not machine:
            gpu, machine = last.get("gpu"), last.get("machine")
        region = region or last.get("region")
    else:
        if budget is None:
            raise LaunchError("--budget is required, e.g. --budget 1.00")
        spec = load_job(job, overrides)
        cap, spent = round_up(usd(budget)), Decimal(0)
        run_dir = new_run_dir(spec.name, out)
        run_id = run_dir.name
        session = 1
        last = {}
    if cap <= 0:
        raise LaunchError("--budget must be more than $0")
    if spent >= cap:
        raise LaunchError(f"{run_dir}: the ledger already holds ${spent} of the ${cap} cap; nothing is left to spend")

    vm_yaml, inputs = vm_job(spec, run_dir, resumed=resume is not None)
    region = region or DEFAULT_REGION
    params, _ = model_params(spec.model.name)
    calibration = RunDir(run_dir).calibration_json if resume is not None else None
    choice = choose(
        default_catalog(),
        model_name=spec.model.name,
        tokens_per_example=spec.prompt.max_length,
        full_finetune="full" in spec.methods,
        budget=cap - spent,
        gpu=gpu,
        machine=machine,
        region=region,
        spot=spot,
        disk_gb=disk_gb_for(params),
        calibration=calibration if calibration and calibration.is_file() else None,
    )
    full = "full" in spec.methods
    est = estimate(cap - spent, choice.instance, side_costs(choice.instance, external_ip=options.external_ip, model_params=params, full_finetune=full))
    if not est.enough:
        raise LaunchError(est.refusal(choice.instance))

    project = project or project_from_environment()
    bucket_url = bucket or os.environ.get(BUCKET_ENV) or (f"gs://{project}-budgetft" if project else "gs://PROJECT_ID-budgetft")
    parse_url(bucket_url)  # a malformed --bucket is refused here
    if resume is not None and not bucket and last.get("bucket_url") and not os.environ.get(BUCKET_ENV):
        bucket_url = last["bucket_url"]  # the run's results are already there
    if options.fallback_on_demand and not spot:
        raise LaunchError("--fallback-on-demand lets a Spot run fall back to standard VMs; add --spot, or drop it")
    order = placements(default_catalog(), choice.instance, region=region, zone=zone, region_given=region_given, fallback_on_demand=options.fallback_on_demand)
    return LaunchPlan(
        spec=spec,
        vm_job_yaml=vm_yaml,
        inputs=inputs,
        run_dir=run_dir,
        run_id=run_id,
        session=session,
        resumed=resume is not None,
        cap=cap,
        spent=spent,
        choice=choice,
        estimate=est,
        project=project,
        bucket_url=bucket_url,
        region=region,
        zones=req.zones_for(region, zone),
        zone_given=zone is not None,
        install=install_source(),
        image=images.planned(),
        region_given=region_given,
        external_ip=options.external_ip,
        fallback_on_demand=options.fallback_on_demand,
        hf_token_secret=secret_name(options.hf_token_secret, project),
        model_params=params,
        full_finetune=full,
        order=tuple(order),
    )


def secret_name(secret: str | None, project: str | None) -> str | None:
    """'hf-token' -> 'projects/PROJECT/secrets/hf-token'; a full name stays as it is."""
    if not secret:
        return None
    if secret.startswith("projects/"):
        return secret.split("/versions/")[0]
    return f"projects/{project or 'PROJECT_ID'}/secrets/{secret}"


def vm_job(spec: JobSpec, run_dir: Path, resumed: bool) -> tuple[str, list[tuple[Path, str]]]:
    """The job as the VM runs it. Local data files travel in the run directory (run/inputs/) and
    the job points at their place on the VM; a local model directory cannot travel (too big)."""
    if spec.model.source == "local" or (spec.model.source == "auto" and Path(spec.model.name).expanduser().is_dir()):
        raise LaunchError(
            f"model.name {spec.model.name!r} is a local directory, which the VM cannot see; "
            "use a Hugging Face hub id (push the model there), or run locally without --cloud"
        )
    if resumed and RunDir(run_dir).job_yaml.is_file():
        return RunDir(run_dir).job_yaml.read_text(encoding="utf-8"), []
    data = spec.data
    inputs: list[tuple[Path, str]] = []

    def ship(path_text: str) -> str:
        path = Path(path_text).expanduser()
        if not path.is_file():
            return path_text  # a hub name: the VM downloads it
        name = f"{len(inputs) + 1}-{path.name}"
        inputs.append((path.resolve(), name))
        return f"{VM_WORK}/run/inputs/{name}"

    files = {split: ship(p) for split, p in data.files.items()} if data.files else None
    name = ship(data.name) if not data.files else data.name
    if not inputs:
        return dump_job(spec), []
    moved = spec.model_copy(update={"data": data.model_copy(update={"name": name, "files": files})})
    return dump_job(moved), inputs
