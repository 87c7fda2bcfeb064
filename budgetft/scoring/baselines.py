"""The baselines every trial is ranked against, scored on the same rows as the trials."""

from __future__ import annotations

import time

import numpy as np

from budgetft.metrics import classification_metrics
from budgetft.scoring.rows import evaluate


def majority_baseline(task) -> dict:
    """Always answer the training split's most frequent class, scored on the same rows."""
    preds = np.full(len(task.eval), task.majority_class, dtype=np.int64)
    metrics = classification_metrics(task.eval.labels, preds, task.class_names)
    metrics["majority_class"] = task.class_names[task.majority_class]
    return metrics


def zero_shot_baseline(model, task, batch_size: int = 16) -> dict:
    """The untuned model's own label-word scores (no class bias, no training), and the seconds
    it took: what an evaluation of these rows costs, for the plan."""
    t0 = time.perf_counter()
    metrics = evaluate(model, task, batch_size)
    metrics["seconds"] = time.perf_counter() - t0
    return metrics
