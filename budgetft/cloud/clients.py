"""Google's client libraries are the [gcp] extra: a cloud command checks for them before it
plans or calls anything, and says how to install them."""

from __future__ import annotations

from budgetft.cloud.errors import CloudError
from budgetft.extras import missing_message


class ClientsMissing(CloudError):
    """google-cloud-compute or google-cloud-storage is not installed."""


def require_clients(what: str = "Google Cloud") -> None:
    message = missing_message("gcp", what)
    if message:
        raise ClientsMissing(message)
