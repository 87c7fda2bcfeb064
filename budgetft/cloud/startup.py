"""The VM's start-up script: infra/gcp/startup.sh.tmpl with this run's values filled in.

The template is plain bash whose settings are `NAME={{NAME}}` lines at the top; each value is
shell-quoted here, so no value can change what the script does. A placeholder without a value
(or a value without a placeholder) is an error, not a silent blank.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path

from budgetft.cloud.errors import CloudError

TEMPLATE = Path(__file__).resolve().parent.parent.parent / "infra" / "gcp" / "startup.sh.tmpl"
PLACEHOLDER = re.compile(r"\{\{([A-Z][A-Z0-9_]*)\}\}")

# Where the run lives on the VM; the job's local data files are shipped to $WORK/run/inputs/.
VM_WORK = "/var/lib/budgetft"
SYNC_EVERY_S = 60  # upload the run directory this often while it runs (a preemption loses <= 60 s)
GPU_WAIT_S = 600  # give up if the GPU driver is not answering after this long
METADATA_URL = "http://metadata.google.internal/computeMetadata/v1"
COMPUTE_API = "https://compute.googleapis.com"
SECRETS_API = "https://secretmanager.googleapis.com"
# What a dry run shows for the wheel's digest, which exists only once the wheel is built.
SHA_AT_LAUNCH = "(the sha256 of the wheel built at launch)"


@dataclass(frozen=True)
class StartupParams:
    run_id: str
    session: int
    run_url: str  # gs://BUCKET/.../budgetft/RUN_ID
    cap_usd: str  # the run's whole cap (the ledger on the VM holds what was spent already)
    price_per_hour: str
    boot_estimate_s: int
    wheel_url: str  # gs:// URL of the wheel to install, or "" to pip install pip_spec
    pip_spec: str
    work: str = VM_WORK
    uptime_file: str = "/proc/uptime"
    sync_every_s: int = SYNC_EVERY_S
    gpu_wait_s: int = GPU_WAIT_S
    wheel_sha256: str = ""  # the VM installs the wheel only if it has this digest
    hf_token_secret: str = ""  # projects/P/secrets/S: the hub token, read on the VM from Secret Manager
    metadata_url: str = METADATA_URL
    compute_api: str = COMPUTE_API
    secrets_api: str = SECRETS_API


def render(params: StartupParams, template: Path | None = None) -> str:
    path = template or TEMPLATE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CloudError(f"start-up script template {path} is missing; budgetft's infra/ folder must sit next to the budgetft package") from None
    values = {k.upper(): shlex.quote(str(v)) for k, v in asdict(params).items()}
    used = set(PLACEHOLDER.findall(text))
    missing, unused = used - set(values), set(values) - used
    if missing or unused:
        raise CloudError(f"{path}: placeholders without values {sorted(missing)}, values without placeholders {sorted(unused)}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)
