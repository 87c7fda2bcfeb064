"""`budgetft predict`: each row's class and class probabilities from a run's winner (or a named
trial), scored exactly as the run evaluated it.

The same prompt encoding (budgetft.data.encode), the same scoring (the label words' summed
log-probabilities plus the trial's fitted class bias for a decoder, the classification head for
an encoder) and the same weights (methods/persist.load_trained) as evaluation. A row's class
probabilities are the softmax of its class scores, so they sum to 1 over the job's classes.

Order of work: every check that reads only files (run, trial, input rows, output file type,
tokenizer and label words) comes before the model loads.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable

import numpy as np

from budgetft.data.checks import class_lookup, class_of
from budgetft.spec import label_key
from budgetft.use import UseError, bridge
from budgetft.use.inputs import read_input
from budgetft.use.scoring_task import scoring_task
from budgetft.use.winner import choose_trial

SCHEMA = "budgetft.predictions"
SCHEMA_VERSION = 1
OUT_SUFFIXES = (".jsonl", ".json", ".csv")
# Rows scored between progress updates: enough batches that updating costs nothing, few enough
# that a long input shows movement every few seconds on a CPU.
CHUNK_BATCHES = 4

Progress = Callable[[int, int], None]  # (rows done, rows in all)


@dataclass
class PredictRequest:
    run_dir: Path
    source: str | None  # a file, "-" or None: standard input
    trial_id: str | None = None
    batch_size: int | None = None  # default: the job's eval.batch_size
    out: Path | None = None


def check_out(path: Path | None) -> None:
    if path is not None and path.suffix.lower() not in OUT_SUFFIXES:
        raise UseError(f"--out {path}: write predictions to a {', '.join(OUT_SUFFIXES)} file (the suffix picks the format)")


def predict(request: PredictRequest, stdin: IO[str] | None = None, progress: Progress | None = None,
            say: Callable[[str], None] = lambda text: None) -> dict:
    """The predictions document (see `document`) for the request's rows."""
    check_out(request.out)
    chosen = choose_trial(request.run_dir, request.trial_id)
    job = chosen.job()  # the trial's model's variant of the run's job
    found = read_input(request.source, job.prompt.fields, stdin)
    task = scoring_task(job)
    encoded = task.encode(found.rows)
    say(f"{len(found.rows)} rows from {found.origin}; "
        f"{'trial' if chosen.named else 'the winner,'} {chosen.trial_id} ({chosen.method}, "
        + (f"{_percent(chosen.row.accuracy)} on {chosen.row.n} evaluation rows)" if chosen.row.accuracy is not None and chosen.row.n
           else "never evaluated: no accuracy was measured)")
        + (f"; {encoded.truncated} rows shortened to fit prompt.max_length={job.prompt.max_length}" if encoded.truncated else ""))
    model = load_chosen(chosen, task)
    scores = score_all(model, task, encoded, request.batch_size or job.eval.batch_size, progress)
    return document(chosen, task, found, probabilities(scores), encoded.truncated)


def load_chosen(chosen: Any, task: Any) -> Any:
    """The chosen trial's model, as the run evaluated it."""
    context = bridge.apply_context(task.job, task.tokenizer)
    return bridge.load_trained_model(task.model, chosen.method, chosen.config, chosen.weights, context, task.job.seed)


def score_all(model: Any, task: Any, encoded: Any, batch_size: int, progress: Progress | None = None) -> np.ndarray:
    """(rows, classes) class scores, longest rows first in chunks so progress can be shown."""
    order = np.argsort(-encoded.lengths, kind="stable")  # similar lengths share a batch: less padding
    scores = np.zeros((len(encoded), len(task.class_tokens)))
    chunk = max(1, batch_size * CHUNK_BATCHES)
    for start in range(0, len(order), chunk):
        rows = order[start : start + chunk]
        scores[rows] = bridge.score_rows(model, task, encoded, rows, batch_size)
        if progress is not None:
            progress(min(start + chunk, len(order)), len(order))
    return scores


def probabilities(scores: np.ndarray) -> np.ndarray:
    """Softmax over the classes of each row's scores (nats)."""
    z = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def document(chosen: Any, task: Any, found: Any, probs: np.ndarray, truncated: int) -> dict:
    label_field = task.job.data.label_field
    lookup = class_lookup(task.job.prompt.labels)
    predictions, known, correct = [], 0, 0
    for i, (row, p) in enumerate(zip(found.rows, probs)):
        k = int(np.argmax(p))
        item: dict[str, Any] = {"index": i, "class": task.class_names[k],
                                "probabilities": {name: float(x) for name, x in zip(task.class_names, p)}}
        if row.get(label_field) is not None:
            item["label"] = label_key(row[label_field])
            gold = class_of(row[label_field], lookup)
            if gold is not None:
                known += 1
                correct += int(gold == k)
        predictions.append(item)
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "run_id": chosen.report.run_id,
        "run_dir": str(chosen.run_dir),
        "trial_id": chosen.trial_id,
        "chosen_by": "--trial" if chosen.named else "winner",
        "method": chosen.method,
        "config": chosen.config,
        "model": task.job.model.name,
        "classes": list(task.class_names),
        "label_words": task.label_words,
        "class_bias": chosen.class_bias,
        "input": found.origin,
        "rows": len(found.rows),
        "truncated_rows": truncated,
        # Only when rows carry the job's label field: a check on rows the user labelled.
        "accuracy": {"rows": known, "correct": correct, "accuracy": correct / known} if known else None,
        "predictions": predictions,
    }


def write_predictions(doc: dict, path: Path) -> None:
    """.json: the whole document; .jsonl: one prediction a line; .csv: index, class, one
    probability column per class (p_<class>), and the label when rows had one."""
    check_out(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".json":
        text = json.dumps(doc, indent=2) + "\n"
    elif suffix == ".jsonl":
        text = "".join(json.dumps(p) + "\n" for p in doc["predictions"])
    else:
        text = csv_text(doc)
    path.write_text(text, encoding="utf-8")


def csv_text(doc: dict) -> str:
    has_label = any("label" in p for p in doc["predictions"])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["index", "class", *(f"p_{c}" for c in doc["classes"]), *(["label"] if has_label else [])])
    for p in doc["predictions"]:
        writer.writerow([p["index"], p["class"], *(repr(p["probabilities"][c]) for c in doc["classes"]),
                         *([p.get("label", "")] if has_label else [])])
    return buffer.getvalue()


def _percent(x: float | None) -> str:
    return "no accuracy" if x is None else f"{100 * x:.1f}% accuracy"
