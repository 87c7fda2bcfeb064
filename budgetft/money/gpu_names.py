"""GPU names as data: the catalogue's GPUs (gpus.csv) and what NVML calls them (gpu_names.csv).

Three spellings of one GPU meet here: what a user types (`--gpu h100`), what the catalogue and
Compute Engine call it (`nvidia-h100-80gb`) and what NVML reports on the card (`NVIDIA H100 80GB
HBM3`). The tables live in the CSV files beside this module so that a new GPU is a new line of
data, not a code change. Nothing here imports torch, pynvml or a cloud SDK.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from dataclasses import dataclass
from importlib import resources

from budgetft.money.errors import UnknownName

MATCHES = ("exact", "nearest", "token")


@dataclass(frozen=True)
class NvmlMatch:
    """The catalogue GPU for a name NVML reported, and how sure that is."""

    gpu: str  # catalogue name, e.g. "nvidia-h100-80gb"
    match: str  # exact | nearest | token (see gpu_names.csv)
    reported: str  # the name as NVML gave it
    note: str = ""  # why a nearest or token match is not exact

    @property
    def is_exact(self) -> bool:
        return self.match == "exact"

    def describe(self) -> str:
        """For a price's reason: 'NVIDIA H100 PCIe -> nvidia-h100-80gb (nearest catalogue entry: ...)'."""
        if self.is_exact:
            return f"{self.reported} -> {self.gpu}"
        why = f": {self.note}" if self.note else ""
        return f"{self.reported} -> {self.gpu} (nearest catalogue entry, not this exact card{why})"


def _rows(filename: str) -> list[dict[str, str]]:
    text = resources.files("budgetft.money").joinpath(filename).read_text("utf-8")
    body = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return [{k: (v or "").strip() for k, v in row.items()} for row in csv.DictReader(io.StringIO("\n".join(body)))]


def _norm(name: str) -> str:
    return re.sub(r"\s+", " ", name.strip()).lower()


def _words(name: str) -> set[str]:
    """Whole words of a GPU name, split at spaces, dashes and underscores ("L4" is not in "L40S")."""
    return {w for w in re.split(r"[\s\-_/]+", name.strip().upper()) if w}


@functools.lru_cache(maxsize=1)
def _tables() -> tuple[dict[str, str], dict[str, str], list[tuple[str, str, str, str]]]:
    labels: dict[str, str] = {}
    aliases: dict[str, str] = {}
    for row in _rows("gpus.csv"):
        labels[row["gpu"]] = row["label"]
        for alias in filter(None, (a.strip().lower() for a in row["aliases"].split(";"))):
            aliases[alias] = row["gpu"]
    nvml = []
    for row in _rows("gpu_names.csv"):
        if row["match"] not in MATCHES:
            raise ValueError(f"gpu_names.csv: match {row['match']!r} for {row['nvml_name']!r}; valid: {', '.join(MATCHES)}")
        if row["gpu"] not in labels:
            raise ValueError(f"gpu_names.csv: {row['nvml_name']!r} maps to {row['gpu']!r}, which gpus.csv does not list")
        nvml.append((row["nvml_name"], row["gpu"], row["match"], row["note"]))
    return labels, aliases, nvml


# Read once at import: small files, and the names below are what other modules import.
GPU_LABELS: dict[str, str] = dict(_tables()[0])  # catalogue name -> "V100 16GB"
GPU_ALIASES: dict[str, str] = dict(_tables()[1])  # "v100" -> catalogue name
# Every NVML name that is listed (exact or nearest) -> catalogue name.
NVML_NAMES: dict[str, str] = {name: gpu for name, gpu, match, _ in _tables()[2] if match != "token"}


def nvml_match(name: str | bytes) -> NvmlMatch:
    """The catalogue GPU for the name NVML reports, so the GPU we actually got selects its price.

    Listed names first (exact, then nearest variants); then the token rows, in file order, for
    variants not listed. A name that matches nothing raises UnknownName: a guess could put a
    consumer card's run at a data-centre price, or the reverse."""
    if isinstance(name, bytes):  # older pynvml returns bytes
        name = name.decode("utf-8", "replace")
    text = str(name).strip()
    key = _norm(text)
    rows = _tables()[2]
    for nvml, gpu, match, note in rows:
        if match != "token" and _norm(nvml) == key:
            return NvmlMatch(gpu, match, text, note)
    words = _words(text)
    for nvml, gpu, match, note in rows:
        if match == "token" and _words(nvml) <= words:
            return NvmlMatch(gpu, "token", text, note or "matched by model name")

    raise UnknownName("NVML GPU name", text, list(NVML_NAMES))


def gpu_for_nvml_name(name: str | bytes) -> str:
    """Catalogue GPU name for an NVML name (see nvml_match)."""
    return nvml_match(name).gpu


def resolve_gpu(name: str) -> str:
    """Catalogue name for a user-typed GPU: an alias (v100, a100-80gb), a catalogue name
    (nvidia-tesla-v100) or an NVML name (Tesla V100-SXM2-16GB); case-insensitive."""
    key = name.strip().lower()
    if key in GPU_LABELS:
        return key
    if key in GPU_ALIASES:
        return GPU_ALIASES[key]
    for nvml, gpu in NVML_NAMES.items():
        if _norm(nvml) == _norm(key):
            return gpu

    raise UnknownName("GPU", name, sorted(GPU_ALIASES) + sorted(GPU_LABELS))
