"""Ray for one run: our own local instance, quiet, and cleaned up after a killed driver.

- A plain `budgetft run` starts a new local Ray instance (`address="local"`), even when a cluster
  is already up on the machine (`ray start --head`): `ray.init()` would otherwise attach to that
  cluster and refuse our CPU count. `--ray-address` attaches on purpose.
- Ray's own log lines and notices stay out of the user's terminal; trial errors are recorded by
  budgetft in words (budgetft.tune.tracking).
- ray.init installs its own handler for SIGTERM (a bare `sys.exit`) and its core worker a C++
  crash handler for it, and ray.shutdown leaves SIGTERM at the system default (the process dies
  at once): around both, the driver's handlers (budgetft.runner.signals: stop the trials, write
  the report) are put back as they were, so SIGTERM stops a run as Ctrl-C does in every stage.
- A driver killed with kill -9 cannot shut Ray down, and some of Ray's processes (its dashboard
  and runtime-env agents, which rename themselves) outlive it. Each run records the processes of
  its Ray instance in the cache (`ray-sessions/<driver pid>.json`, pid and start time); the next
  run or `--resume` on the machine ends the recorded processes of every driver that is gone.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psutil

from budgetft.paths import cache_root
from budgetft.files import write_json

# Imported inside functions: ray: importing this module must stay cheap (start-up time).

# Loggers that print Ray's progress and trial failures (with tracebacks) on the driver.
RAY_LOGGERS = ("ray", "ray.tune", "ray.train", "ray.air", "ray._private", "ray.util")


def _records_dir() -> Path:
    path = cache_root() / "ray-sessions"
    path.mkdir(parents=True, exist_ok=True)
    return path


def quiet_ray() -> None:
    # Ray turns token authentication on for a new local cluster and says so at length; that
    # secure default stays, the notice (nothing for our user to do) does not.
    for name in (*RAY_LOGGERS, "ray._private.authentication.authentication_token_setup"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    # A trial that ends before its first report (stopped by the cap, or its driver gone) is
    # recorded by budgetft; Tune's strict check would make it an error that ends the run.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Ctrl-C reaches us: we stop and report
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Ray starts workers niced (15): on a small machine the trial, the run's main work, would
    # then starve behind anything else. Our workers run at normal priority.
    os.environ.setdefault("RAY_worker_niceness", "0")


def start(cpus: int, address: str | None = None) -> bool:
    """Start a local Ray instance, or attach to the cluster at `address`; True when this call
    connected us (stop() then shuts our instance down, or only disconnects from a cluster)."""
    import ray

    quiet_ray()
    if ray.is_initialized():
        return False
    with _our_signal_handlers():
        if address:
            ray.init(address=address, log_to_driver=False, configure_logging=False, logging_level=logging.ERROR)
            return True
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False, logging_level=logging.ERROR)
    record_processes()
    return True


# The signals a driver stops on (budgetft.runner.signals); ray.init replaces SIGTERM's handler.
KEPT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def _our_signal_handlers() -> Iterator[None]:
    """Put the process's handlers for KEPT_SIGNALS back after the block (ray.init, ray.shutdown):
    Ray's SIGTERM handler exits from wherever the main thread is, inside Ray's own code during
    tune.fit, which ended runs with exit 134 and no report (issue 27); after ray.shutdown the
    signal's C-level action is the default while Python still names our handler. signal.signal
    sets both again (and replaces the C++ crash handler Ray's core worker installs)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kept = {signum: signal.getsignal(signum) for signum in KEPT_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in kept.items():
            if handler is not None:  # always: Python may not know of a C handler put over its own
                signal.signal(signum, handler)


def stop() -> None:
    """Shut down the Ray instance we started (or disconnect from a cluster we attached to)."""
    import ray

    with _our_signal_handlers():  # its core worker's shutdown leaves SIGTERM at the default (exit, no report)
        ray.shutdown()
    (_records_dir() / f"{os.getpid()}.json").unlink(missing_ok=True)


def record_processes() -> None:
    """Write this driver's Ray processes (every descendant of ours) to the cache, so that a
    later run can end them if this driver is killed before it shuts Ray down."""
    me = psutil.Process()
    path = _records_dir() / f"{me.pid}.json"
    known = {(p["pid"], p["created"]) for p in (_read(path) or {}).get("processes", [])}
    for child in me.children(recursive=True):
        try:
            known.add((child.pid, child.create_time()))
        except psutil.Error:
            continue
    data = {"driver": {"pid": me.pid, "created": me.create_time()}, "processes": [{"pid": p, "created": c} for p, c in sorted(known)]}
    write_json(path, data)


def clean_up_strays() -> int:
    """End the recorded Ray processes of drivers that no longer run. Returns how many."""
    ended = 0
    for path in sorted(_records_dir().glob("*.json")):
        data = _read(path)
        if not data:
            path.unlink(missing_ok=True)
            continue
        if _alive(data["driver"]["pid"], data["driver"]["created"]):
            continue  # a run in progress: its Ray is its own
        victims = []
        for entry in data.get("processes", []):
            if _alive(entry["pid"], entry["created"]):
                try:
                    victims.append(psutil.Process(entry["pid"]))
                except psutil.Error:
                    pass
        for proc in victims:
            try:
                proc.kill()
                ended += 1
            except psutil.Error:
                pass
        psutil.wait_procs(victims, timeout=5)
        path.unlink(missing_ok=True)
    return ended


def _alive(pid: int, created: float) -> bool:
    """The process `pid` exists and is the one recorded (not a reused pid)."""
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - created) < 1.0 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
