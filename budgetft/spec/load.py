"""Job files: a job named or given as a YAML path, read, overridden by `--set key=value`, and
validated into a JobSpec (budgetft.spec.job); the resolved spec written back as YAML."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from budgetft import methods as method_registry
from budgetft.spec.job import JobError, JobSpec

class JobLoader(yaml.SafeLoader):
    """YAML as PyYAML's safe loader reads it, and 5e-5 a number: YAML 1.1 wants a dot in a float
    (5.0e-5), so a learning rate written the usual way became the string '5e-5'."""


JobLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)

REPO_JOBS = Path(__file__).resolve().parents[2] / "jobs"
DEFAULT_JOB = "boolq-smollm2"


def resolve_job_path(job: str | Path | None) -> Path:
    """A job argument is a YAML path, or the name of a job shipped in jobs/."""
    if job is None:
        job = DEFAULT_JOB
    path = Path(job)
    if path.is_file():
        return path
    for folder in (Path.cwd() / "jobs", REPO_JOBS):
        for candidate in (folder / f"{job}.yaml", folder / str(job)):
            if candidate.is_file():
                return candidate
    shipped = sorted(p.stem for p in REPO_JOBS.glob("*.yaml")) if REPO_JOBS.is_dir() else []
    raise JobError(
        f"job {str(job)!r} not found: give a YAML file path or one of the shipped jobs: "
        f"{', '.join(shipped) or '(none)'}"
    )


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise JobError(f"--set {item!r}: write it as key=value, e.g. --set train.max_steps=100")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise JobError(f"--set {item!r}: the key is empty or has an empty part")
    try:
        value = yaml.load(raw, Loader=JobLoader) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # not YAML: take it as a plain string
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise JobError(f"--set {item!r}: {part!r} holds a value, not a section")
            node = child
        node[path[-1]] = value
    return data


def load_job(job: str | Path | None = None, overrides: list[str] | None = None) -> JobSpec:
    path = resolve_job_path(job)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=JobLoader) or {}
    except UnicodeDecodeError as exc:
        raise JobError(
            f"{path}: not a UTF-8 text file (byte {exc.start} is 0x{exc.object[exc.start]:02x}); "
            "save the job as UTF-8 YAML (e.g. `iconv -f latin1 -t utf-8`), or check that this is the job file"
        ) from None
    except IsADirectoryError:
        raise JobError(f"{path} is a directory; give a job YAML file or the name of a job in jobs/") from None
    except yaml.YAMLError as exc:
        raise JobError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise JobError(f"{path}: a job is a YAML mapping of fields, got {type(data).__name__}")
    data = apply_overrides(data, overrides or [])
    return validate_job(data, source=str(path))


def methods_override(job: str | Path | None, overrides: list[str], names: str | None) -> list[str]:
    """`overrides` plus one `--set methods=...` that keeps only the comma-separated `names`,
    each with the job's own search space (a registered method the job does not list gets its
    default space). As an override it reaches every path that loads the job, a cloud VM's
    included."""
    if names is None:
        return overrides
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    if not wanted:
        raise JobError("--methods: name one or more methods, e.g. --methods lora,bitfit")
    spaces = load_job(job, overrides).methods
    chosen: dict[str, Any] = {}
    for name in wanted:
        try:
            method = method_registry.get(name)
        except KeyError as exc:
            raise JobError(f"--methods: {exc.args[0]}") from None
        chosen[method.name] = spaces.get(method.name, {})
    return [*overrides, "methods=" + json.dumps(chosen)]


def validate_job(data: dict[str, Any], source: str = "job") -> JobSpec:
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        raise JobError(format_validation_error(exc, source)) from None


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid job spec"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            parent = _model_at(err["loc"][:-1])
            valid = f" (valid keys: {', '.join(parent.model_fields)})" if parent else ""
            lines.append(f"  {where}: unknown key{valid}")
        elif err["type"] == "missing":
            lines.append(f"  {where}: required field is missing")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            shown = repr(err.get("input"))
            lines.append(f"  {where}: {msg}" + (f" (got {shown})" if len(shown) <= 60 else ""))
    return "\n".join(lines)


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] = JobSpec
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def dump_job(job: JobSpec) -> str:
    """The resolved spec as YAML, written into every run directory."""
    return yaml.safe_dump(job.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
