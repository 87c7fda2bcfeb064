"""The README a new user reads: short, both fresh-machine commands, a job example that is a valid
job, and docs that cover every registered method."""

import re
from pathlib import Path

import yaml

from budgetft import methods
from budgetft.spec import validate_job

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_readme_is_short_and_holds_both_fresh_machine_commands():
    assert len(README.splitlines()) <= 120
    assert "./scripts/setup.sh && .venv/bin/budgetft run --budget" in README  # what scripts/smoke.sh runs
    assert "./scripts/test.sh" in README


def test_the_readme_job_example_is_a_valid_job():
    block = re.search(r"## A job.*?```yaml\n(.*?)```", README, re.S).group(1)
    job = validate_job(yaml.safe_load(block), source="README.md")
    assert job.methods and job.prompt.labels


def test_every_registered_method_is_in_docs_methods_md():
    table = (ROOT / "docs" / "methods.md").read_text(encoding="utf-8")
    missing = [name for name in methods.names() if f"`{name}`" not in table]
    assert not missing, f"docs/methods.md does not describe: {', '.join(missing)}"
