"""A cloud launch's plan for people: the rows a dry run and a launch print up front, and the dry
run itself (the request and the script on stdout, exactly what a launch would send)."""

from __future__ import annotations

import json
import sys

from budgetft.cloud.errors import CloudError
from budgetft.cloud.estimate import duration_text, money
from budgetft.cloud.plan import LaunchPlan
from budgetft.cloud.side_costs import TAKEN

# Imported inside functions: google.cloud.compute_v1 (the [gcp] extra; seconds to import).


def summary_lines(plan: LaunchPlan) -> list[tuple[str, str]]:
    """(label, text) rows that a dry run and a launch print up front."""
    inst, est, side = plan.instance, plan.estimate, plan.side
    parts = [f"machine ${inst.machine_usd_per_hour:.4f}"]
    if inst.gpus_usd_per_hour > 0:
        parts.append(f"GPU ${inst.gpus_usd_per_hour:.4f}")
    parts.append(f"{inst.disk_gb} GB {inst.disk_type} ${inst.disk_usd_per_hour:.4f}")
    parts += [f"{t.what} ${t.usd:.4f}" for t in side.hourly]
    rows = [
        ("instance", plan.choice.reason()),
        ("price", f"${est.usd_per_hour:.4f}/h ({' + '.join(parts)}), {inst.provisioning}; side costs: list prices taken {TAKEN}"),
        ("budget", f"cap ${money(plan.cap)}, spent ${money(plan.spent)}, ${money(plan.remaining)} left" + (f" (resuming {plan.run_dir}, VM #{plan.session})" if plan.resumed else "")),
        (
            "max run",
            f"{est.max_run_seconds} s ({duration_text(est.max_run_seconds)}): scheduling.maxRunDuration; Compute Engine "
            "deletes the VM then, whatever happens to this machine",
        ),
    ]
    for line in est.overheads:
        secs = f"{line.seconds:>4} s" if line.seconds else "      "
        rows.append(("estimate" if line is est.overheads[0] else "", f"{line.category:<9} ${line.usd:.4f}  {secs}  {line.what}"))
    rows.append(("", f"{'run':<9} ${est.run_usd:.4f}  {est.run_seconds:>4} s  at most: `budgetft run` on the VM meters it into the same ledger"))
    rows.append(("", f"{'total':<9} ${est.total_usd:.4f}  of the ${money(plan.remaining)} left"))
    zones = plan.zones
    rows.append(("zone", zones[0] + ("" if plan.zone_given or len(zones) < 2 else f" (then {', '.join(zones[1:])} if it has no capacity)")))
    later = [p.describe() for p in plan.order if p.region != plan.region or p.spot != inst.spot]
    if later:
        rows.append(("then", ", ".join(later) + ": in this order, when the zones before have no capacity or quota"))
    rows.append(("network", "an external IPv4 address" if plan.external_ip else "no external address (--no-external-ip): Private Google Access and Cloud NAT"))
    rows.append(("bucket", f"{plan.run_url}/"))
    rows.append(("install", plan.install.describe()))
    rows.append(("image", plan.image + " (resolved with images.getFromFamily at launch)"))
    if plan.hf_token_secret:
        rows.append(("hub token", f"{plan.hf_token_secret}, read on the VM from Secret Manager"))
    rows.append(("run dir", str(plan.run_dir)))
    return rows


def request_json(plan: LaunchPlan, zone: str) -> str:
    """The request as JSON, after checking that the client library accepts every field of it."""
    from google.cloud import compute_v1

    request = plan.request(zone)
    try:
        compute_v1.Instance.from_json(json.dumps(request))
    except Exception as exc:  # a field the API does not know: a bug in request.py
        raise CloudError(f"the instance request does not match the Compute API: {exc}") from None
    return json.dumps(request, indent=2)


def show_dry_run(plan: LaunchPlan, console) -> None:
    """The plan for people (on `console`), then the request and the script (on stdout, so
    `--dry-run > plan.txt` keeps exactly what would be sent)."""
    zone = plan.zones[0]
    console.print("[bold]dry run[/]: nothing is created and nothing is charged", highlight=False)
    for label, text in summary_lines(plan):
        console.print(f"{label:<9} {text}", highlight=False, soft_wrap=True)
    if not plan.project:
        console.print("note      no --project given: PROJECT_ID stands in for it", highlight=False)
    project = plan.project or "PROJECT_ID"
    out = sys.stdout
    out.write(f"# instance request: POST https://compute.googleapis.com/compute/v1/projects/{project}/zones/{zone}/instances\n")
    out.write(request_json(plan, zone) + "\n")
    out.write("# start-up script (the request's metadata.startup-script, shown unescaped)\n")
    out.write(plan.startup_script())
    out.flush()
