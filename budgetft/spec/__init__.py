"""The job spec: its fields (budgetft.spec.job) and its files (budgetft.spec.load: YAML, `--set`
overrides, validation errors in words). Everything a caller needs is importable from here."""

from budgetft.spec.job import (
    DataSpec, EvalSpec, JobError, JobSpec, ModelOption, ModelSpec, PromptSpec, TrainSpec, label_key, pattern_name, template_fields,
)
from budgetft.spec.load import (
    DEFAULT_JOB, REPO_JOBS, apply_overrides, dump_job, format_validation_error, load_job, methods_override, parse_override,
    resolve_job_path, validate_job,
)

__all__ = [
    "DEFAULT_JOB", "REPO_JOBS", "DataSpec", "EvalSpec", "JobError", "JobSpec", "ModelOption", "ModelSpec", "PromptSpec",
    "TrainSpec", "apply_overrides", "dump_job", "format_validation_error", "label_key", "load_job", "methods_override",
    "parse_override", "pattern_name", "resolve_job_path", "template_fields", "validate_job",
]
