"""Renting a cloud VM for a run: pick the instance, check everything it needs, launch it with a
hard end of life where there is room, watch it, bring the results home, and leave nothing running.

- `choose`      which catalogue instance buys the most training for a job and budget
- `side_costs`  what a run pays beside the VM's price: its address, storage operations, traffic
- `estimate`    what the VM's overheads cost and how long the budget lets it live
- `plan`        everything a launch will do, decided with no network; `plan_view` shows it (a dry run)
- `request`     the Compute Engine instance request (pure, printable); `image` the boot image
- `startup`     the VM's start-up script, rendered from infra/gcp/startup.sh.tmpl
- `package`     the budgetft the VM installs (a wheel of this checkout, or the same release)
- `doctor`      what a run needs, checked without spending (`doctor_gcp` the cloud's side,
                `doctor_findings` what it found, `rights` the permissions, `iam_rest` the IAM calls)
- `provider`    the stateless cloud interface; `gcp` implements it with google-cloud-compute
                (`gcp_errors` what its errors mean and rule out, `gcp_json` its resources,
                `retry` backoff for 429/5xx), `quota` its GPU quotas
- `failover`    where a VM is tried, in what order, and what each failure rules out;
                `vm_attempts` one VM's tries and what they cost
- `storage`     the results bucket (google-cloud-storage)
- `launcher`    `budgetft run --cloud gcp`: the stages; `watch` polls the VM; `ending` says how it
                ended; `collect` brings it home and charges what the uploads missed
- `vm_boot`     run on the VM: charges boot time beyond the estimate
- `billing`     `budgetft prices --refresh`: list prices from the Cloud Billing Catalog API (google-cloud-billing)
- `errors`      failures a user can act on, each with its fix and its scope

Nothing here imports google.cloud at module level, so `budgetft --help` stays instant.
"""
