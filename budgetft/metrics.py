"""Classification metrics with honest uncertainty. Pure Python + numpy: no torch here."""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion: unlike the normal approximation it
    stays inside [0, 1] and behaves at accuracies near 0 or 1 and for small n."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def classification_metrics(y_true, y_pred, class_names: list[str]) -> dict:
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    n = int(len(y_true))
    k = len(class_names)
    correct = int((y_true == y_pred).sum())
    recalls, f1s = [], []
    for c in range(k):
        tp = int(((y_pred == c) & (y_true == c)).sum())
        support = int((y_true == c).sum())
        predicted = int((y_pred == c).sum())
        if support:
            recalls.append(tp / support)  # classes absent from the evaluation rows are skipped
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    low, high = wilson_interval(correct, n)
    return {
        "n": n,
        "accuracy": correct / n if n else 0.0,
        "accuracy_ci95": [low, high],
        "balanced_accuracy": float(np.mean(recalls)) if recalls else 0.0,
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "prediction_share": {name: float((y_pred == c).mean()) if n else 0.0 for c, name in enumerate(class_names)},
        "correct": [bool(x) for x in (y_true == y_pred)],
    }
