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

# The attribute (a torch Parameter of shape [classes]) that budgetft.scoring adds to the scores.
ATTRIBUTE = "budgetft_class_bias"
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


def fit(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-class offsets b (summing to zero) minimising the mean cross-entropy of scores + b.

    scores: (rows, classes) log-probabilities; labels: (rows,) class indices. Newton's method on
    a convex objective; classes absent from the sample keep a finite offset through a small
    ridge term (1e-4), so one unlucky sample cannot push a class to minus infinity."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, k = scores.shape
    onehot = np.eye(k)[labels]
    ridge = 1e-4
    b = np.zeros(k)
    for _ in range(100):
        z = scores + b
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        grad = (p - onehot).mean(axis=0) + ridge * b
        hess = (np.diag(p.sum(axis=0)) - p.T @ p) / n + ridge * np.eye(k)
        # The objective is flat along b + c·1 (softmax ignores a common shift): solve in the
        # subspace orthogonal to it by adding the all-ones direction to the Hessian.
        step = np.linalg.solve(hess + np.ones((k, k)) / k, grad)
        b -= step
        if np.abs(step).max() < 1e-9:
            break
    return b - b.mean()


def planned_seconds(job, seconds_per_eval_row: float) -> float:
    """What fitting the bias adds to a trial's start, for the planner: FIT_ROWS rows scored at
    the evaluation rate (the same forward passes). Counted for encoders too, which skip the fit:
    the plan errs towards spending less."""
    return FIT_ROWS * seconds_per_eval_row if job.train.class_bias == "fit" else 0.0


def fit_on_training_rows(model, task, seed: int, precision=None, rows: int = FIT_ROWS, batch_size: int = 16) -> np.ndarray:
    """Fit the offsets on `rows` training rows (sampled with the seed) scored by `model` as it
    is, its forward passes under `precision` (default: its device's)."""
    from budgetft.trial import score_rows

    rng = np.random.default_rng(seed)
    sample = rng.choice(len(task.train), size=min(rows, len(task.train)), replace=False)
    return fit(score_rows(model, task, task.train, sample, batch_size, precision), task.train.labels[sample])
