"""`--track`: which trackers a command writes to, checked before anything is spent.

    --track mlflow            MLflow at $MLFLOW_TRACKING_URI (MLflow's own default: ./mlflow.db)
    --track mlflow=URI        http(s)://host:port (an `mlflow server`), sqlite:///file.db,
                              file:///folder (MLflow's file store, which it keeps in maintenance mode)
    --track wandb             Weights & Biases, project $WANDB_PROJECT or "budgetft"
    --track wandb=PROJECT     ... in PROJECT (ENTITY/PROJECT names the entity too); WANDB_MODE=offline
                              writes the run under the run directory, for `wandb sync` later
    --track tensorboard[=DIR] `budgetft train` only: event files in DIR (a run always writes its own)

A tracker whose package is missing, or whose server cannot be reached now, is refused with the
fix before the run spends anything (TrackingError; the CLI exits 2). Once the run goes, tracking
can only lose records, never hold the run up (budgetft.track.outbox).
"""

from __future__ import annotations

import importlib.util
import netrc
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from budgetft.extras import install_command

# Imported inside functions: mlflow, wandb (optional: the [track] extra).

KINDS = ("mlflow", "wandb", "tensorboard")
CHECK_TIMEOUT_S = 5  # seconds the check before spending waits for a tracking server
# What the MLflow client is told (when the user has not said otherwise): give up on a request
# after this many seconds (5 s failed run creation on a loopback server at a load of 6), and never
# retry one (a retry would hold up the next records).
MLFLOW_ENV = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "30", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
DEFAULT_WANDB_PROJECT = "budgetft"
WANDB_HOST = "https://api.wandb.ai"


class TrackingError(ValueError):
    """A --track value that cannot work here; the message names the fix."""


@dataclass(frozen=True)
class TrackChoice:
    kind: str  # mlflow | wandb | tensorboard
    target: str | None = None  # the URI, PROJECT or DIR after "=", if any

    def __str__(self) -> str:
        return self.kind if self.target is None else f"{self.kind}={self.target}"

    @property
    def wandb_entity_project(self) -> tuple[str | None, str]:
        target = self.target or os.environ.get("WANDB_PROJECT") or DEFAULT_WANDB_PROJECT
        entity, _, project = target.rpartition("/")
        return (entity or os.environ.get("WANDB_ENTITY") or None), project


def parse_track(values: list[str], command: str = "run") -> list[TrackChoice]:
    """The --track values as choices, each kind at most once; TrackingError on a bad one."""
    choices: list[TrackChoice] = []
    for value in values:
        kind, eq, target = value.strip().partition("=")
        kind = kind.strip().lower()
        if kind not in KINDS:
            raise TrackingError(f"--track {value!r}: unknown tracker {kind!r}; use mlflow[=URI], wandb[=PROJECT] or tensorboard")
        if eq and not target.strip():
            raise TrackingError(f"--track {value!r}: nothing after '='; give {kind}={'URI' if kind == 'mlflow' else 'PROJECT' if kind == 'wandb' else 'DIR'}, or just {kind}")
        if any(c.kind == kind for c in choices):
            raise TrackingError(f"--track {kind} is given twice; give each tracker once")
        if kind == "tensorboard" and command == "run" and eq:
            raise TrackingError("--track tensorboard=DIR: a run always writes its TensorBoard files into its own directory (RUN/tensorboard); drop =DIR")
        choices.append(TrackChoice(kind, target.strip() or None))
    return choices


def check_trackers(choices: list[TrackChoice]) -> None:
    """Refuse, with the fix, a tracker that cannot work now: its package missing, its server
    unreachable, W&B without credentials. Nothing is logged here (MLflow's file store makes its
    folder when first opened)."""
    for choice in choices:
        if choice.kind == "mlflow":
            _check_mlflow(choice)
        elif choice.kind == "wandb":
            _check_wandb(choice)
        elif choice.kind == "tensorboard":
            _need("tensorboardX", "tensorboardX", "--track tensorboard")


def mlflow_uri(choice: TrackChoice) -> str:
    """The tracking URI a choice means: its own, $MLFLOW_TRACKING_URI, or MLflow's default."""
    if choice.target:
        return _as_uri(choice.target)
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return _as_uri(env)
    import mlflow

    return mlflow.get_tracking_uri()


def prepare_mlflow(uri: str) -> None:
    """The process-wide MLflow settings budgetft relies on: short requests without retries
    (unless the user set them), and MLflow's file store allowed where the user asked for it."""
    for key, value in MLFLOW_ENV.items():
        os.environ.setdefault(key, value)
    if urlparse(uri).scheme in ("file", ""):
        # MLflow 3 refuses its file store unless told otherwise; a file:// URI given on purpose is that.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


def _check_mlflow(choice: TrackChoice) -> None:
    _need("mlflow", "mlflow", f"--track {choice}")
    uri = mlflow_uri(choice)
    prepare_mlflow(uri)
    scheme = urlparse(uri).scheme
    if scheme in ("file", ""):
        folder = Path(urlparse(uri).path if scheme == "file" else uri)
        parent = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if parent is None or not os.access(parent, os.W_OK):
            raise TrackingError(f"--track {choice}: cannot write MLflow's file store at {folder}; give a folder you can write (mlflow=file:///path)")
    from mlflow.tracking import MlflowClient

    timeout = os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT")
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(CHECK_TIMEOUT_S)
    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - any failure here means the tracker cannot be used
        fix = ("start it (e.g. `mlflow server --host 127.0.0.1 --port 5000`) or check the address"
               if scheme in ("http", "https") else "check the URI")
        raise TrackingError(f"--track {choice}: MLflow at {uri} cannot be used: {_why(exc)}; {fix}, "
                            "or track to a local store: --track mlflow=sqlite:///mlflow.db") from None
    finally:
        if timeout is None:
            os.environ.pop("MLFLOW_HTTP_REQUEST_TIMEOUT", None)
        else:
            os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = timeout


def _check_wandb(choice: TrackChoice) -> None:
    _need("wandb", "wandb", f"--track {choice}")
    mode = os.environ.get("WANDB_MODE", "online").lower()
    if mode in ("offline", "dryrun", "disabled"):
        return  # written locally (or not at all): nothing to reach
    host = os.environ.get("WANDB_BASE_URL", WANDB_HOST).rstrip("/")
    if not (os.environ.get("WANDB_API_KEY") or _netrc_key(host)):
        raise TrackingError(f"--track {choice}: no W&B API key for {host}; run `wandb login` or set WANDB_API_KEY, "
                            "or set WANDB_MODE=offline to write the run locally and `wandb sync` it later")
    import wandb

    try:
        wandb.Api(timeout=CHECK_TIMEOUT_S).viewer  # one authenticated request: the key and the network
    except Exception as exc:  # noqa: BLE001
        raise TrackingError(f"--track {choice}: W&B at {host} cannot be used: {_first_line(exc)}; check the network and the key, "
                            "or set WANDB_MODE=offline to write the run locally and `wandb sync` it later") from None


def _need(module: str, package: str, what: str) -> None:
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise TrackingError(f"{what} needs {package}, which is not installed (the [track] extra). Fix: {install_command('track')}")


def _netrc_key(host: str) -> str | None:
    try:
        entry = netrc.netrc().authenticators(urlparse(host).hostname or host)
    except (OSError, netrc.NetrcParseError):
        return None
    return entry[2] if entry else None


def _as_uri(target: str) -> str:
    """A path given where a URI is expected becomes a file:// URI (absolute)."""
    if "://" in target or target.startswith(("databricks", "sqlite:")):
        return target
    return Path(target).expanduser().resolve().as_uri()


def _why(exc: BaseException) -> str:
    """A failed request in a few words: no server, no answer in time, or the error's first line."""
    text = str(exc)
    if any(k in text for k in ("NewConnectionError", "Connection refused", "Name or service not known", "No route to host")):
        return "nothing answers there (the connection was refused or the host is unknown)"
    if "timed out" in text.lower() or "ReadTimeout" in text:
        return f"it did not answer within {CHECK_TIMEOUT_S} s"
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__
