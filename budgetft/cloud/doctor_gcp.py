"""The Google Cloud checks of `budgetft doctor` (budgetft.cloud.doctor runs them in this order).
Each reads, never writes; each problem becomes one line with its fix."""

from __future__ import annotations

from budgetft.cloud import image as images
from budgetft.cloud import request as req_mod
from budgetft.cloud import rights
from budgetft.cloud.doctor_findings import DoctorRequest, Findings
from budgetft.cloud.errors import ApiDisabled, BucketError, CloudError, ImageUnusable, NotFound, PermissionDenied, QuotaExceeded, first_line
from budgetft.cloud.gcp import GLOBAL_GPU_METRIC, GPU_QUOTA_METRICS, GcpProvider
from budgetft.cloud.iam_rest import IamRest
from budgetft.cloud.quota import check_global, check_quota, regional_metric
from budgetft.cloud.storage import Bucket, parse_url

README = "infra/gcp/README.md"


def _fix(exc: Exception) -> tuple[str, str]:
    text = str(exc)
    return (text.split(". Fix: ")[0], text.split(". Fix: ", 1)[1]) if ". Fix: " in text else (text, "")


def cloud_checks(req: DoctorRequest, found: Findings) -> None:
    project = found.project
    provider = GcpProvider(project, credentials=found.credentials)
    found.provider = provider
    iam = IamRest(project, found.credentials)
    apis = found.apis
    at = len(found.checks)  # the apis line goes here, once every API has answered

    # Compute Engine answers first: its quotas are the project's.
    try:
        quotas = provider.project_quotas()
        apis["compute.googleapis.com"] = "enabled"
    except ApiDisabled:
        apis["compute.googleapis.com"] = "disabled"
        quotas = None
    except CloudError as exc:
        found.add("gpu quota (project)", "fail", *_fix(exc))
        quotas = None

    _launcher_rights(req, found, iam)
    if quotas is not None:
        _quotas(req, found, provider, quotas)
        _zones(req, found, provider)
        _image(req, found, provider)
        _network(req, found, provider)
    else:
        for name in ("gpu quota (region)", "gpu quota (preemptible)", "zones offering it", "image", "network"):
            found.add(name, "skip", "not checked: Compute Engine did not answer", "see the apis line")
    _bucket(req, found)
    _service_account(req, found, iam)
    found.checks.insert(at, _apis_line(found))


def _apis_line(found: Findings):
    from budgetft.doctor_local import Check

    off = [a for a, state in found.apis.items() if state == "disabled"]
    on = [a.split(".")[0] for a, state in found.apis.items() if state == "enabled"]
    if off:
        return Check("apis", "fail", f"not enabled: {', '.join(off)}" + (f" (enabled: {', '.join(on)})" if on else ""),
                     f"gcloud services enable {' '.join(off)} --project {found.project}, wait a minute")
    return Check("apis", "ok", f"enabled: {', '.join(on) or 'none answered'}")


def _launcher_rights(req: DoctorRequest, found: Findings, iam: IamRest) -> None:
    wanted = [p for p in rights.LAUNCHER_PERMISSIONS if not (p == "compute.subnetworks.useExternalIp" and not req.external_ip)]
    try:
        held = iam.project_permissions(wanted)
        found.apis["cloudresourcemanager.googleapis.com"] = "enabled"
    except ApiDisabled:
        found.apis["cloudresourcemanager.googleapis.com"] = "disabled"
        found.add("your project rights", "skip", "not checked: the Resource Manager API is off", "enable it (see the apis line)")
        return
    except CloudError as exc:
        found.add("your project rights", "warn", f"could not check ({first_line(exc, 160)})")
        return
    missing = [p for p in wanted if p not in held]
    if missing:
        found.add("your project rights", "fail", f"missing {len(missing)}: {', '.join(missing)}",
                  f"grant the {rights.LAUNCHER_ROLE} role: {README}, step 5")
    else:
        found.add("your project rights", "ok", f"all {len(wanted)} permissions a launch uses")


def _quotas(req: DoctorRequest, found: Findings, provider: GcpProvider, quotas: dict) -> None:
    inst = req.instance
    limit, usage = quotas.get(GLOBAL_GPU_METRIC, (None, None))
    if inst is not None:
        try:
            check_global(quotas, inst)
            found.add("gpu quota (project)", "ok", f"{GLOBAL_GPU_METRIC} limit {limit:g}, in use {usage:g}" if limit is not None else f"no {GLOBAL_GPU_METRIC} quota reported")
        except QuotaExceeded as exc:
            found.add("gpu quota (project)", "fail", *_fix(exc))
    elif limit is not None:
        status = "ok" if limit - usage >= 1 else "fail"
        found.add("gpu quota (project)", status, f"{GLOBAL_GPU_METRIC} limit {limit:g}, in use {usage:g}",
                  "" if status == "ok" else f"request an increase of {GLOBAL_GPU_METRIC} to 1 or more: {README}, step 6")
    try:
        info = provider.region(req.region)
        found.regions[req.region] = info
    except CloudError as exc:
        found.add("gpu quota (region)", "fail", *_fix(exc))
        return
    region_status = "fail" if req.region_given else "warn"  # a run without --region looks elsewhere too
    if inst is None:
        _any_gpu_quota(req, found, info.quotas)
        return
    metric = GPU_QUOTA_METRICS.get(inst.gpu or "", "")
    lim, use = info.quotas.get(metric, (0.0, 0.0))
    pre = f"PREEMPTIBLE_{metric}"
    plim, puse = info.quotas.get(pre, (0.0, 0.0))
    drawn = regional_metric(inst, info.quotas, req.max_run_seconds)
    try:
        check_quota(info.quotas, inst, req.region, req.max_run_seconds)
        bad = None
    except QuotaExceeded as exc:
        bad = exc
    std_bad = bad is not None and drawn == metric
    pre_bad = bad is not None and drawn == pre
    found.add("gpu quota (region)", region_status if std_bad else "ok", f"{metric} in {req.region}: limit {lim:g}, in use {use:g}" + (" (this VM draws on it)" if drawn == metric else ""),
              _fix(bad)[1] if std_bad else "")
    who = "Spot VMs" if inst.spot else "a standard VM that deletes itself within 7 days"
    found.add("gpu quota (preemptible)", region_status if pre_bad else "ok",
              f"{pre}: limit {plim:g}, in use {puse:g}" + (f" ({who} draw on it)" if drawn == pre else " (none: this VM uses the standard quota)" if plim == 0 else ""),
              _fix(bad)[1] if pre_bad else "")


def _any_gpu_quota(req: DoctorRequest, found: Findings, quotas: dict) -> None:
    room = sorted(f"{gpu} ({quotas[m][0] - quotas[m][1]:g})" for gpu, m in GPU_QUOTA_METRICS.items() if m in quotas and quotas[m][0] - quotas[m][1] >= 1)
    pre = sorted(gpu for gpu, m in GPU_QUOTA_METRICS.items() if quotas.get(f"PREEMPTIBLE_{m}", (0, 0))[0] - quotas.get(f"PREEMPTIBLE_{m}", (0, 0))[1] >= 1)
    found.add("gpu quota (region)", "ok" if room else "fail", f"{req.region}: room for " + (", ".join(room) if room else "no GPU"),
              "" if room else f"request NVIDIA_T4_GPUS (or another GPU's quota) in {req.region}: {README}, step 6")
    found.add("gpu quota (preemptible)", "ok", f"{req.region}: Spot quota for " + (", ".join(pre) if pre else "no GPU (Spot VMs then use the standard quota)"))


def _zones(req: DoctorRequest, found: Findings, provider: GcpProvider) -> None:
    inst = req.instance
    if inst is None:
        found.add("zones offering it", "skip", "no GPU given (--gpu) to look for")
        return
    try:
        found.offered = provider.offered_zones(inst.gpu if inst.gpus_usd_per_hour > 0 else None, inst.machine)
    except CloudError as exc:
        found.add("zones offering it", "warn", f"could not list ({first_line(exc, 160)})")
        return
    info = found.regions.get(req.region)
    here = sorted(z for z in (found.offered or ()) if info is None or z in info.zones)
    if here:
        found.add("zones offering it", "ok", f"{inst.label} in {req.region}: {', '.join(here)}")
    else:
        other = sorted({z.rsplit('-', 1)[0] for z in found.offered or ()})
        found.add("zones offering it", "fail" if req.region_given else "warn", f"no zone of {req.region} offers {inst.label}" + (f"; regions that do: {', '.join(other[:8])}" if other else ""),
                  "pick one of those with --region, or another --gpu")


def _image(req: DoctorRequest, found: Findings, provider: GcpProvider) -> None:
    try:
        resolved = images.resolve(provider)
    except ImageUnusable as exc:
        found.add("image", "fail", *_fix(exc))
        return
    except CloudError as exc:
        found.add("image", "fail", f"could not read the image ({first_line(exc, 200)})", f"set {images.IMAGE_ENV} to a current image family")
        return
    found.image = resolved
    disk = images.disk_gb(req.disk_gb, resolved.image)
    detail = f"{resolved.image.name} (from {resolved.ref.rsplit('/', 1)[-1]}), needs a {resolved.image.disk_size_gb} GB disk; the VM gets {disk} GB"
    found.add("image", "warn" if resolved.warning else "ok", detail + (f"; {resolved.warning.split('; ')[0]}" if resolved.warning else ""),
              resolved.warning.split("; ", 1)[1] if resolved.warning else "")


def _network(req: DoctorRequest, found: Findings, provider: GcpProvider) -> None:
    name, subnet_name = req_mod.network(), req_mod.subnet()
    try:
        net = provider.network(name)
        if net is None:
            found.add("network", "fail", f"project {found.project} has no VPC network named {name!r}",
                      f"gcloud compute networks create {name} --subnet-mode=auto --project {found.project} (or set {req_mod.NETWORK_ENV})")
            return
        subnet_name = subnet_name or (name if net["auto_subnets"] else None)
        if subnet_name is None:
            found.add("network", "fail", f"{name} is a custom-mode network: the VM needs its subnet in {req.region}", f"set {req_mod.SUBNET_ENV}=SUBNET (one in {req.region})")
            return
        sub = provider.subnetwork(req.region, subnet_name)
        if sub is None:
            found.add("network", "fail", f"{name} has no subnet {subnet_name!r} in {req.region}",
                      f"gcloud compute networks subnets create {subnet_name} --network {name} --region {req.region} --range 10.200.0.0/20")
            return
        if req.external_ip:
            found.add("network", "ok", f"{name}, subnet {subnet_name} in {req.region}; the VM gets an external IPv4 address")
            return
        problems, fixes = [], []
        if not sub["private_google_access"]:
            problems.append("Private Google Access is off (the VM cannot reach Cloud Storage)")
            fixes.append(f"gcloud compute networks subnets update {subnet_name} --region {req.region} --enable-private-ip-google-access")
        if not provider.nat_routers(req.region, name):
            problems.append(f"no Cloud NAT for {name} in {req.region} (the VM cannot reach PyPI or the hub)")
            fixes.append(f"{README}, step 7 (a Cloud Router and NAT in {req.region})")
        if problems:
            found.add("network", "fail", f"--no-external-ip: {'; '.join(problems)}", "; ".join(fixes))
        else:
            found.add("network", "ok", f"{name}, subnet {subnet_name} in {req.region}: Private Google Access and Cloud NAT, no external address")
    except CloudError as exc:
        found.add("network", "fail", *_fix(exc))


def _bucket(req: DoctorRequest, found: Findings) -> None:
    url = req.bucket or f"gs://{found.project}-budgetft"
    try:
        parse_url(url)
        bucket = Bucket(url, project=found.project, credentials=found.credentials)
        location, kind = bucket.location()
        found.apis["storage.googleapis.com"] = "enabled"
    except BucketError as exc:
        if "not enabled" in str(exc):
            found.apis["storage.googleapis.com"] = "disabled"
        found.add("bucket", "fail", *_fix(exc))
        found.add("your bucket rights", "skip", "needs the bucket", "see the bucket line")
        return
    found.bucket, found.bucket_location = bucket, location.lower()
    same = location.lower() == req.region or (location.lower() == "us" and req.region.startswith("us-"))
    found.add("bucket", "ok" if same else "warn", f"{url} in {location} ({kind})" + ("" if same else f"; the VM runs in {req.region}: its uploads cross regions (charged to the cap)"),
              "" if same else f"a bucket in {req.region} saves that: gcloud storage buckets create gs://{found.project}-budgetft-{req.region} --location={req.region} --uniform-bucket-level-access")
    try:
        held = set(bucket.permissions(list(rights.USER_BUCKET_PERMISSIONS)))
    except CloudError as exc:
        found.add("your bucket rights", "warn", f"could not check ({first_line(exc, 160)})")
        return
    missing = [p for p in rights.USER_BUCKET_PERMISSIONS if p not in held]
    role = rights.custom_role(found.project, rights.USER_BUCKET_ROLE)
    fix = f"gcloud storage buckets add-iam-policy-binding {url} --member=user:YOU@EXAMPLE.COM --role={role} ({README}, step 5)"
    if [p for p in missing if p != "storage.buckets.getIamPolicy"]:
        found.add("your bucket rights", "fail", f"missing {', '.join(missing)}", fix)
    elif missing:
        found.add("your bucket rights", "warn", "cannot read the bucket's IAM policy, so the VM's rights on it go unchecked", fix)
    else:
        found.add("your bucket rights", "ok", ", ".join(p.split(".", 1)[1] for p in rights.USER_BUCKET_PERMISSIONS))


def _service_account(req: DoctorRequest, found: Findings, iam: IamRest) -> None:
    sa = req_mod.service_account(found.project)
    member = f"serviceAccount:{sa}"
    try:
        if not iam.can_act_as(sa):
            found.add("vm service account", "fail", f"you may not attach {sa} to a VM (iam.serviceAccounts.actAs)",
                      f"gcloud iam service-accounts add-iam-policy-binding {sa} --member=user:YOU@EXAMPLE.COM --role={rights.custom_role(found.project, rights.ACT_AS_ROLE)} ({README}, step 5)")
        else:
            found.add("vm service account", "ok", f"{sa}; you may attach it")
        found.apis["iam.googleapis.com"] = "enabled"
    except NotFound:
        found.add("vm service account", "fail", f"{sa} does not exist",
                  f"gcloud iam service-accounts create {req_mod.SERVICE_ACCOUNT_NAME} --project {found.project} ({README}, step 4), or set {req_mod.SERVICE_ACCOUNT_ENV}")
    except ApiDisabled:
        found.apis["iam.googleapis.com"] = "disabled"
        found.add("vm service account", "skip", "not checked: the IAM API is off", "enable it (see the apis line)")
    except CloudError as exc:
        found.add("vm service account", "warn", f"could not check ({first_line(exc, 160)})")
    try:
        project_roles = iam.project_roles(member)
    except CloudError as exc:
        project_roles = None
        found.add("vm self-delete", "warn", f"could not read the project's IAM policy ({first_line(exc, 120)})", f"needs resourcemanager.projects.getIamPolicy ({rights.LAUNCHER_ROLE})")
    _vm_bucket_rights(found, member, project_roles or set())
    if project_roles is not None:
        if rights.may_delete_itself(project_roles, found.project):
            found.add("vm self-delete", "ok", "the VM may delete itself when done (nothing is left billing)")
        else:
            found.add("vm self-delete", "warn", "the VM cannot delete itself: if this machine is offline when the run ends, its stopped VM's disk bills until `budgetft down`",
                      f"grant {sa} the {rights.SELF_DELETE_ROLE} role: {README}, step 4")
    if req.hf_token_secret:
        secret = req.hf_token_secret.split("/versions/")[0].replace("projects/PROJECT_ID/", f"projects/{found.project}/")
        secret = secret if secret.startswith("projects/") else f"projects/{found.project}/secrets/{secret}"
        try:
            readers = iam.secret_readers(secret)
            found.apis["secretmanager.googleapis.com"] = "enabled"
            ok = member in readers
            found.add("hub token secret", "ok" if ok else "fail", secret + ("; the VM may read it" if ok else f"; {sa} may not read it"),
                      "" if ok else f"gcloud secrets add-iam-policy-binding {secret.rsplit('/', 1)[-1]} --member={member} --role=roles/secretmanager.secretAccessor")
        except ApiDisabled:
            found.apis["secretmanager.googleapis.com"] = "disabled"
            found.add("hub token secret", "fail", "the Secret Manager API is off", "enable it (see the apis line)")
        except NotFound:
            found.add("hub token secret", "fail", f"{secret} does not exist", f"printf %s \"$HF_TOKEN\" | gcloud secrets create {secret.rsplit('/', 1)[-1]} --data-file=-")
        except CloudError as exc:
            found.add("hub token secret", "warn", f"could not check ({first_line(exc, 160)})")


def _vm_bucket_rights(found: Findings, member: str, project_roles: set[str]) -> None:
    if found.bucket is None:
        found.add("vm bucket rights", "skip", "needs the bucket", "see the bucket line")
        return
    try:
        roles = found.bucket.members_roles().get(member, set()) | project_roles
    except (BucketError, PermissionDenied) as exc:
        found.add("vm bucket rights", "warn", f"could not read the bucket's IAM policy ({first_line(exc, 120)})", f"needs storage.buckets.getIamPolicy ({rights.USER_BUCKET_ROLE})")
        return
    granted, unknown = rights.storage_permissions(roles, found.project)
    missing = [p for p in rights.VM_BUCKET_PERMISSIONS if p not in granted]
    role = rights.custom_role(found.project, rights.VM_BUCKET_ROLE)
    fix = f"gcloud storage buckets add-iam-policy-binding {found.bucket.url} --member={member} --role={role} ({README}, step 4)"
    if missing and unknown:
        found.add("vm bucket rights", "warn", f"roles {', '.join(sorted(unknown))} cannot be read here; known roles lack {', '.join(missing)}", fix)
    elif missing:
        found.add("vm bucket rights", "fail", f"the VM's account lacks {', '.join(missing)}" + (" (roles/storage.objectUser has no storage.buckets.get, which gcloud storage rsync needs)" if "storage.buckets.get" in missing else ""), fix)
    else:
        found.add("vm bucket rights", "ok", f"{member.split(':', 1)[1]}: " + ", ".join(p.split(".", 1)[1] for p in rights.VM_BUCKET_PERMISSIONS))
