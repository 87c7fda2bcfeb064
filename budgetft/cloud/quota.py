"""GPU quota: checked before anything is created, so a VM that cannot start costs nothing."""

from __future__ import annotations

from budgetft.cloud.errors import QuotaExceeded
from budgetft.cloud.gcp import GPU_QUOTA_METRICS


def check_quota(quotas: dict[str, tuple[float, float]], instance, region: str) -> None:
    """Refuse before creating anything when the region's GPU quota cannot fit this instance."""
    metric = GPU_QUOTA_METRICS.get(instance.gpu or "")
    if metric is None:
        return
    need = instance.gpu_count
    free = {m: limit - usage for m, (limit, usage) in quotas.items()}
    if "GPUS_ALL_REGIONS" in free and free["GPUS_ALL_REGIONS"] < need:
        limit, usage = quotas["GPUS_ALL_REGIONS"]
        raise QuotaExceeded(
            f"the project's GPUS_ALL_REGIONS quota (limit {limit:g}, in use {usage:g}) leaves no GPU for this VM. Fix: request an "
            "increase of GPUS_ALL_REGIONS to 1 or more (console: IAM & Admin > Quotas; see infra/gcp/README.md). Nothing was created."
        )
    candidates = [f"PREEMPTIBLE_{metric}", metric] if instance.spot else [metric]
    known = [m for m in candidates if m in free]
    if not known or any(free[m] >= need for m in known):
        return
    shown = ", ".join(f"{m} limit {quotas[m][0]:g}, in use {quotas[m][1]:g}" for m in known)
    zero = all(quotas[m][0] == 0 for m in known)
    raise QuotaExceeded(
        f"not enough GPU quota in {region} for {need}x {instance.gpu} ({shown}). Fix: "
        + ("request a quota increase for " + known[-1] + f" in {region} (console: IAM & Admin > Quotas; see infra/gcp/README.md)" if zero else "delete VMs that use it (budgetft status) or request more")
        + ", or pick another --gpu or --region. Nothing was created."
    )
