"""The plan's options: every (model, method) pair a job names.

A job with one model keeps its methods' names as option keys (lora, bitfit); with several
models (JobSpec.models) a key also names the model (full@all-MiniLM-L6-v2), so rates, learning
curves, calibration records and plans can all be keyed by one string.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Choice:
    key: str
    model: str  # the model's name in the job
    method: str  # the registered method's name


def short_name(model: str) -> str:
    """A model's name without its owner or path: all-MiniLM-L6-v2, SmolLM2-135M-Instruct."""
    return model.rstrip("/").split("/")[-1]


def choices(job) -> list[Choice]:
    """Every (model, method) pair of the job, the job's own model first."""
    variants = job.variants()
    several = len(variants) > 1
    return [Choice(f"{method}@{short_name(v.model.name)}" if several else method, v.model.name, method) for v in variants for method in v.methods]


def choice_of(job, key: str) -> Choice:
    for c in choices(job):
        if c.key == key:
            return c
    raise KeyError(f"no option {key!r} in job {job.name}; options: {', '.join(c.key for c in choices(job))}")
