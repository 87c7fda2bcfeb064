"""Renting a cloud VM for a run: pick the instance, launch it with a hard end of life, watch it,
bring the results home, and leave nothing running.

- `choose`    which catalogue instance buys the most training for a job and budget
- `estimate`  what the VM's overheads cost and how long the budget lets it live
- `plan`      everything a launch will do, decided with no network (all a dry run shows)
- `request`   the Compute Engine instance request (pure, printable)
- `startup`   the VM's start-up script, rendered from infra/gcp/startup.sh.tmpl
- `package`   the budgetft the VM installs (a wheel of this checkout, or the same release)
- `provider`  the stateless cloud interface; `gcp` implements it with google-cloud-compute
- `storage`   the results bucket (google-cloud-storage)
- `launcher`  `budgetft run --cloud gcp`: the stages; `watch` polls the VM; `collect` brings it home
- `vm_boot`   run on the VM: charges boot time beyond the estimate
- `billing`   `budgetft prices --refresh`: list prices from the Cloud Billing Catalog API (google-cloud-billing)
- `errors`    failures a user can act on, each with its fix

Nothing here imports google.cloud at module level, so `budgetft --help` stays instant.
"""
