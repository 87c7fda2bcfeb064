"""`budgetft doctor`'s look at this machine: Python, the torch build, a GPU, free disk, and the
[gcp] extra for cloud runs. Nothing here imports torch or a cloud client (either takes seconds):
versions are read from the installed files, the GPU from the driver's own files.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

PYTHON_MIN = (3, 10)  # pyproject.toml's requires-python
# Free disk a run needs where its run directory and the model cache live: a local run downloads
# the model and data (~2 GB for the embedded job, more for bigger models); a cloud run only
# brings its results home and builds a wheel.
LOCAL_FREE_GB = 5.0
CLOUD_FREE_GB = 1.0


MARKS = {"ok": "ok  ", "warn": "warn", "fail": "FAIL", "skip": "skip"}


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail | skip
    detail: str
    fix: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def line(check: Check) -> str:
    """One check, one line: mark, name, what was found, and the fix when there is one."""
    text = f"{MARKS[check.status]}  {check.name:<24} {check.detail}"
    return text + (f" — fix: {check.fix}" if check.fix else "")


def local_checks(cloud: bool, runs_dir: Path | None = None) -> list[Check]:
    """This machine's part of what a run needs: for a cloud run (`cloud`), the launcher's."""
    checks = [python_check(), torch_check(cloud), gpu_check(cloud), disk_check(runs_dir or Path.cwd() / "runs", cloud)]
    if cloud:
        checks.append(extra_check())
    return checks


def python_check() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] < PYTHON_MIN:
        return Check("python", "fail", f"{version} is older than {'.'.join(map(str, PYTHON_MIN))}", "install Python 3.10 or newer and reinstall budgetft")
    return Check("python", "ok", f"{version} ({sys.executable})")


def torch_build() -> tuple[str, str | None] | None:
    """(torch version, the CUDA it was built for or None for a CPU build), from its files."""
    try:
        version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None
    spec = importlib.util.find_spec("torch")
    cuda = None
    for root in (spec.submodule_search_locations or []) if spec else []:
        text = (Path(root) / "version.py").read_text(encoding="utf-8") if (Path(root) / "version.py").is_file() else ""
        found = re.search(r"^cuda(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, flags=re.M)
        cuda = found.group(1) if found else None
    return version, cuda


def torch_check(cloud: bool) -> Check:
    build = torch_build()
    if build is None:
        fix = "pip install budgetft (it brings torch); a CUDA build for a local GPU: see pytorch.org/get-started"
        return Check("torch", "warn" if cloud else "fail", "not installed" + (" (a cloud run installs it on the VM; `predict` and `export` need it here)" if cloud else ""), fix)
    version, cuda = build
    return Check("torch", "ok", f"{version}, " + (f"built for CUDA {cuda}" if cuda else "a CPU build"))


def driver_version() -> str | None:
    path = Path("/proc/driver/nvidia/version")
    if path.is_file():
        found = re.search(r"Kernel Module\s+([0-9.]+)", path.read_text(errors="replace"))
        return found.group(1) if found else "present"
    return None


def gpu_check(cloud: bool) -> Check:
    driver = driver_version()
    if cloud:
        return Check("cuda", "ok", "not needed here: the VM's image brings its GPU driver and CUDA" + (f" (this machine has driver {driver})" if driver else ""))
    build = torch_build()
    cuda = build[1] if build else None
    if driver and cuda:
        return Check("cuda", "ok", f"NVIDIA driver {driver}; torch built for CUDA {cuda}")
    if driver:
        return Check("cuda", "warn", f"NVIDIA driver {driver}, but torch is a CPU build: runs use the CPU", "install a CUDA build of torch (pytorch.org/get-started)")
    return Check("cuda", "warn", "no NVIDIA GPU here: local runs use the CPU (slow past ~100M parameters)", "run on a GPU machine, or rent one: budgetft run --cloud gcp")


def disk_check(runs_dir: Path, cloud: bool) -> Check:
    need = CLOUD_FREE_GB if cloud else LOCAL_FREE_GB
    where = runs_dir
    while not where.exists() and where != where.parent:
        where = where.parent
    places = {where}
    if not cloud:  # the model and data go to the Hugging Face cache
        cache = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
        while not cache.exists() and cache != cache.parent:
            cache = cache.parent
        places.add(cache)
    short = []
    for place in sorted(places):
        free = shutil.disk_usage(place).free / 1e9
        if free < need:
            short.append(f"{place}: {free:.1f} GB free")
    free_here = shutil.disk_usage(where).free / 1e9
    if short:
        return Check("disk", "fail", f"less than {need:g} GB free ({'; '.join(short)})", "free some space, or point --out at a disk with room")
    return Check("disk", "ok", f"{free_here:.0f} GB free at {where}")


def extra_check() -> Check:
    from budgetft.extras import install_command, missing

    gone = missing("gcp")
    if gone:
        return Check("cloud clients", "fail", f"{' and '.join(gone)} not installed", install_command("gcp"))
    return Check("cloud clients", "ok", "google-cloud-compute and google-cloud-storage installed")
