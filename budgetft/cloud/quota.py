"""GPU quota: checked before anything is created, so a VM that cannot start costs nothing.

Three quotas can stop a GPU VM (Compute Engine's "Allocation quotas" page):
  GPUS_ALL_REGIONS              project-wide, every GPU of every region (0 in new projects)
  NVIDIA_<GPU>_GPUS             per region, standard VMs
  PREEMPTIBLE_NVIDIA_<GPU>_GPUS per region: Spot VMs draw on it when the project has any (limit
                                > 0), and so may a standard VM that deletes itself within 7 days
                                (a maxRunDuration of 7 days or less), which every budgetft VM does.
When the PREEMPTIBLE_ quota exists we therefore require room in it, not only in the standard one.
A project-wide shortage rules out the whole cloud; a regional one only that region (and the
launcher tries the next).
"""

from __future__ import annotations

from budgetft.cloud.errors import CLOUD, REGION, QuotaExceeded
from budgetft.cloud.gcp import GLOBAL_GPU_METRIC, GPU_QUOTA_METRICS

PREEMPTIBLE_DRAW_MAX_S = 7 * 24 * 3600  # standard VMs living at most this long may draw on PREEMPTIBLE_ quota
QUOTAS_PAGE = "console: IAM & Admin > Quotas & System Limits, filter by the metric; see infra/gcp/README.md, step 6"


def regional_metric(instance, quotas: dict[str, tuple[float, float]], max_run_seconds: int | None = None) -> str | None:
    """The regional GPU quota this VM draws on: the PREEMPTIBLE_ one when it may and the project
    has some of it, else the standard one. None for a GPU we have no metric for."""
    metric = GPU_QUOTA_METRICS.get(instance.gpu or "")
    if metric is None:
        return None
    short_lived = max_run_seconds is not None and max_run_seconds <= PREEMPTIBLE_DRAW_MAX_S
    pre = f"PREEMPTIBLE_{metric}"
    if (instance.spot or short_lived) and quotas.get(pre, (0.0, 0.0))[0] > 0:
        return pre
    return metric


def check_global(quotas: dict[str, tuple[float, float]], instance) -> None:
    """Refuse when the project-wide GPU quota cannot fit this VM: no region can help then."""
    if not instance.gpu or GLOBAL_GPU_METRIC not in quotas:
        return
    limit, usage = quotas[GLOBAL_GPU_METRIC]
    if limit - usage < instance.gpu_count:
        raise QuotaExceeded(
            f"the project's {GLOBAL_GPU_METRIC} quota (limit {limit:g}, in use {usage:g}) leaves no GPU for this VM, in any region. "
            f"Fix: request an increase of {GLOBAL_GPU_METRIC} to {int(usage) + instance.gpu_count} or more ({QUOTAS_PAGE}). Nothing was created.",
            metric=GLOBAL_GPU_METRIC, scope=CLOUD,
        )


def check_quota(quotas: dict[str, tuple[float, float]], instance, region: str, max_run_seconds: int | None = None) -> None:
    """Refuse before creating anything when the project's or the region's GPU quota cannot fit
    this instance (QuotaExceeded with scope CLOUD or REGION)."""
    check_global(quotas, instance)
    metric = regional_metric(instance, quotas, max_run_seconds)
    if metric is None or metric not in quotas:
        return  # the region reports no such quota: the insert will say if it matters
    limit, usage = quotas[metric]
    need = instance.gpu_count
    if limit - usage >= need:
        return
    why = ""
    if metric.startswith("PREEMPTIBLE_"):
        why = (" (Spot VMs draw on it" if instance.spot else " (a standard VM that deletes itself within 7 days may draw on it") + " when the project has any)"
    fix = (
        f"request a quota increase for {metric} in {region} ({QUOTAS_PAGE})" if limit == 0
        else f"delete VMs that use it (`budgetft status`) or request more {metric} in {region}"
    )
    raise QuotaExceeded(
        f"not enough GPU quota in {region} for {need}x {instance.gpu}: {metric} limit {limit:g}, in use {usage:g}{why}. "
        f"Fix: {fix}, or pick another --gpu or --region. Nothing was created.",
        metric=metric, scope=REGION, region=region,
    )
