"""How a cloud run ended, in words: the VM's exit code, and for a VM that ended before its job
did, what its zone's operations say happened to it (a Spot preemption is the cloud's own
record, compute.instances.preempted, not a guess from --spot)."""

from __future__ import annotations

from budgetft.cloud.errors import CloudError
from budgetft.cloud.provider import VM, Provider

# What a start-up script exit code means (see infra/gcp/startup.sh.tmpl).
VM_EXIT_CODES = {
    10: "the VM could not read the bucket: its service account needs the budgetftBucket role on it (with storage.buckets.get; infra/gcp/README.md, step 4)",
    11: "the image has no usable Python",
    12: "installing budgetft on the VM failed",
    13: "the GPU never answered nvidia-smi: pick an image with the NVIDIA driver (BUDGETFT_GCP_IMAGE)",
    14: "the ledger refused the VM's boot charge",
    15: "the wheel in the bucket was not the one this machine built (its sha256 differed): the VM refused to install it; "
        "check who else writes to the bucket",
    16: "the VM could not read the hub token from Secret Manager: its service account needs roles/secretmanager.secretAccessor on the secret",
}
# A VM deleted by its maxRunDuration is gone within this long of its running time reaching it.
DEADLINE_SLACK_S = 120


def end_reason(provider: Provider, zone: str, name: str, last_vm: VM | None, max_run_seconds: int) -> tuple[str, bool]:
    """(what ended the VM, whether it was a Spot preemption), from its zone's operations."""
    try:
        events = provider.events(zone, name)
    except CloudError as exc:
        return f"its zone's operations could not be read ({exc})", False
    if any(e.kind == "preempted" for e in events):
        when = next(e.time for e in events if e.kind == "preempted")
        return "Spot preemption" + (f" at {when:%H:%M:%S} UTC" if when else "") + " (compute.instances.preempted)", True
    deleted = [e for e in events if e.kind == "deleted"]
    if deleted and deleted[-1].user and deleted[-1].user != "system" and "@" in deleted[-1].user:
        return f"deleted by {deleted[-1].user}", False
    if any(e.kind == "guest-shutdown" for e in events):
        return "its operating system shut down before the job ended", False
    if last_vm is not None and last_vm.billed_seconds() >= max_run_seconds - DEADLINE_SLACK_S:
        return f"deleted by Compute Engine at its max run duration ({max_run_seconds} s: the money ran out)", False
    if deleted:
        return "deleted by Compute Engine", False
    return "gone, and its zone's operations do not say why", False


def ended_text(kind: str, exit_code: int | None, reason: str) -> str:
    return {
        "failed": f"the job on the VM failed (exit code {exit_code}: {VM_EXIT_CODES.get(exit_code or 0, 'see below')})",
        "gone": f"the VM ended mid-run: {reason}",
        "stopped": f"the VM stopped before the job finished: {reason}",
        "silent": "the VM never reported back (the start-up script could not write to the bucket, or the image did not boot)",
        "deadline": "the VM outlived its max run duration; budgetft deleted it",
        "interrupted": "interrupted: the VM was deleted",
        "lost": "lost contact with the cloud while watching; budgetft deleted the VM once it could",
    }[kind]
