"""What the VM installs: the same budgetft as the launching machine.

From a source checkout (the usual case while budgetft is young) we build a wheel of exactly this
code and ship it through the bucket; an installed release is installed on the VM by version.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import budgetft
from budgetft.cloud.errors import CloudError


@dataclass(frozen=True)
class InstallSource:
    wheel: str | None  # file name of a wheel to ship (built at launch), or None
    pip_spec: str  # what pip installs on the VM when there is no wheel

    def describe(self) -> str:
        return f"wheel {self.wheel} built from this checkout" if self.wheel else f"{self.pip_spec} from PyPI"


def source_root() -> Path | None:
    root = Path(budgetft.__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "budgetft").is_dir() else None


def wheel_name() -> str:
    return f"budgetft-{budgetft.__version__}-py3-none-any.whl"


def install_source() -> InstallSource:
    spec = f"budgetft[gpu]=={budgetft.__version__}"  # a VM has a GPU: NVML telemetry (the [gpu] extra)
    return InstallSource(wheel_name() if source_root() else None, spec)


def build_wheel(out_dir: Path) -> Path:
    """Build the wheel from a copy of the checkout (no build/ or egg-info left in the tree that
    other people are editing). About 5 s."""
    root = source_root()
    if root is None:
        raise CloudError("budgetft is not running from a source checkout; nothing to build")
    with tempfile.TemporaryDirectory(prefix="budgetft-src-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            if (root / name).is_file():
                shutil.copy2(root / name, src / name)
        shutil.copytree(root / "budgetft", src / "budgetft", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        done = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out_dir), str(src)],
            capture_output=True,
            text=True,
        )
    wheel = Path(out_dir) / wheel_name()
    if done.returncode != 0 or not wheel.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise CloudError(f"could not build the budgetft wheel for the VM: {' / '.join(tail)}")
    return wheel


def sha256_of(path: Path) -> str:
    """The file's SHA-256 in hex: the VM installs the wheel only if its digest is this one."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
