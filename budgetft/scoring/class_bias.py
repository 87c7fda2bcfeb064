"""A per-class bias on the verbalizer's scores, fitted on training rows before training starts.

An untuned language model's label words carry a prior of their own that has nothing to do with
the task: SmolLM2-135M answers " no" to 91% of BoolQ questions, where 62% of the answers are
yes. Trained from there, a method's first steps go to shifting that prior, and at batch size 8
the shift overshoots back and forth (measured on rows held out from BoolQ's training split:
91% "no" at step 50, 99% "yes" at step 100). A classification head would learn a bias term for
this; the verbalizer gets one here. Before the first step the trial fits, on a sample of
training rows, the per-class offsets that minimise the cross-entropy of the untuned scores
(a convex problem: one value per class), so training starts from the training split's prior
and its gradient goes to telling the classes apart. The offsets are then trained with the
method (one parameter per class) and saved with it.

Encoders are left alone: their classification head already has a bias.
"""

from __future__ import annotations

import numpy as np

from budgetft.scoring.rows import score_rows
from budgetft.scoring.verbalizer import BIAS_ATTRIBUTE as ATTRIBUTE  # where the scores read it

# Imported inside functions: torch: importing this module must stay cheap (start-up time).

# Training rows the fit reads: one forward pass, no backward, about 8 s on a 2-core CPU for
# SmolLM2-135M; enough for a per-class offset (standard error ~0.25 nats for two classes).
FIT_ROWS = 64


def class_bias_of(model) -> list[float] | None:
    value = getattr(model, ATTRIBUTE, None)
    return None if value is None else [float(v) for v in value.detach().cpu()]


def attach(model, values) -> None:
    """Register the offsets as a trainable parameter of the model (on its device)."""
    import torch

    device = next(model.parameters()).device
    model.register_parameter(ATTRIBUTE, torch.nn.Parameter(torch.as_tensor(np.asarray(values, dtype=np.float32), device=device)))


# Newton's method with a line search (each step must lower the objective) and a trust region
# (no offset moves more than MAX_STEP_NATS in one iteration). Plain Newton diverges when a class's
# label word is far less likely than the others' for every row: the curvature along that class
# is tiny (its probability, ~1e-8) while the gradient is its share of the labels, so the first
# step was thousands of nats (seen on a three-class task: offsets of +4844, -6875, +2031).
MAX_STEP_NATS = 5.0
RIDGE = 1e-4


def _objective(scores: np.ndarray, onehot: np.ndarray, b: np.ndarray) -> float:
    z = scores + b
    top = z.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
    return float((lse - (onehot * z).sum(axis=1)).mean() + 0.5 * RIDGE * (b @ b))


def fit(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-class offsets b (summing to zero) minimising the mean cross-entropy of scores + b.

    scores: (rows, classes) log-probabilities; labels: (rows,) class indices. Damped Newton on a
    convex objective (see MAX_STEP_NATS); classes absent from the sample keep a finite offset
    through a small ridge term, so one unlucky sample cannot push a class to minus infinity."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, k = scores.shape
    onehot = np.eye(k)[labels]
    b = np.zeros(k)
    value = _objective(scores, onehot, b)
    for _ in range(200):
        z = scores + b
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        grad = (p - onehot).mean(axis=0) + RIDGE * b
        hess = (np.diag(p.sum(axis=0)) - p.T @ p) / n + RIDGE * np.eye(k)
        # The objective is flat along b + c·1 (softmax ignores a common shift): solve in the
        # subspace orthogonal to it by adding the all-ones direction to the Hessian.
        step = np.linalg.solve(hess + np.ones((k, k)) / k, grad)
        t = min(1.0, MAX_STEP_NATS / max(np.abs(step).max(), 1e-300))
        while t > 1e-10:  # backtracking (Armijo): accept only a step that lowers the objective
            candidate = b - t * step
            new_value = _objective(scores, onehot, candidate)
            if new_value <= value - 1e-4 * t * float(grad @ step):
                break
            t /= 2
        else:
            break  # no descent left: at the optimum to machine precision
        b, value = candidate, new_value
        if np.abs(t * step).max() < 1e-9:
            break
    return b - b.mean()


def planned_seconds(job, seconds_per_eval_row: float) -> float:
    """What fitting the bias adds to a trial's start, for the planner: FIT_ROWS rows scored at
    the evaluation rate (the same forward passes). Counted for encoders too, which skip the fit:
    the plan errs towards spending less."""
    return FIT_ROWS * seconds_per_eval_row if job.train.class_bias == "fit" else 0.0


def fit_on_training_rows(model, task, seed: int, precision=None, rows: int = FIT_ROWS, batch_size: int = 16) -> np.ndarray:
    """Fit the offsets on `rows` training rows (sampled with the seed) scored by `model` as it
    is, its forward passes under `precision` (default: its device's). An ensemble of adapters
    (PET) scores as the member that is training, on its own pattern's rows: each member's bias
    is fitted to its own prior."""
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(task.train), size=min(rows, len(task.train)), replace=False)
    return fit(score_rows(model, task, task.train, sample, batch_size, precision, live_member=True), task.train.labels[sample])
