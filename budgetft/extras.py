"""Optional parts of budgetft (pyproject's extras), and what to tell someone who lacks one.

The core install runs every local command. The extras add what only some machines need:

    gcp   Google's Compute Engine and Cloud Storage clients: `run --cloud gcp`, `doctor --cloud
          gcp`, `status`, `down`
    gpu   NVML bindings (nvidia-ml-py, module pynvml): GPU telemetry; without them a run samples
          the CPU and finds its GPU through torch, so nothing breaks
    track MLflow, W&B and TensorBoard's reader: `--track mlflow|wandb` (budgetft.track.choice
          checks each one it is asked for); TensorBoard files are written without it
    test  the test suite's tools

Nothing here imports the modules it asks about: `importlib.util.find_spec` only looks for them.
"""

from __future__ import annotations

import importlib.util

# extra -> (module to look for, the package that provides it)
EXTRAS: dict[str, tuple[tuple[str, str], ...]] = {
    "gcp": (("google.cloud.compute_v1", "google-cloud-compute"), ("google.cloud.storage", "google-cloud-storage")),
    "gpu": (("pynvml", "nvidia-ml-py"),),
    "track": (("mlflow", "mlflow"), ("wandb", "wandb"), ("tensorboard", "tensorboard")),
}


def install_command(extra: str) -> str:
    return f"pip install 'budgetft[{extra}]'"


def missing(extra: str) -> list[str]:
    """The packages of `extra` that cannot be imported here (empty: all present)."""
    return [package for module, package in EXTRAS[extra] if not _importable(module)]


def missing_message(extra: str, what: str) -> str | None:
    """A sentence naming what is missing for `what` and the command that installs it; None when
    nothing is."""
    gone = missing(extra)
    if not gone:
        return None
    return (f"{what} needs {' and '.join(gone)}, which {'is' if len(gone) == 1 else 'are'} not installed "
            f"(the [{extra}] extra). Fix: {install_command(extra)}")


def hint_for(exc: BaseException) -> str:
    """For an import that failed because an extra is not installed: which extra to install."""
    name = getattr(exc, "name", None) or ""
    for extra, pairs in EXTRAS.items():
        if isinstance(exc, ImportError) and any(name and module.startswith(name) for module, _ in pairs):
            return f"; {install_command(extra)} to use it"
    return ""


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing
        return False
