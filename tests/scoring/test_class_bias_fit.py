"""The class bias fit on awkward label words."""


import numpy as np


def test_class_bias_fit_stays_finite_on_three_classes():
    """A label word far less likely than the others for every row: plain Newton jumped by
    thousands of nats (+4844, -6875, +2031) and every prediction became one class."""
    from budgetft.scoring.class_bias import fit

    rng = np.random.default_rng(0)
    n = 64
    labels = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    scores = np.stack([np.full(n, -2.0), np.full(n, -3.0), np.full(n, -22.0)], axis=1) + rng.normal(0, 0.5, (n, 3))
    b = fit(scores, labels)
    assert np.abs(b).max() < 30
    z = scores + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    # At the optimum the mean predicted probability of each class is its share of the labels.
    assert np.allclose(p.mean(axis=0), np.bincount(labels, minlength=3) / n, atol=0.01)
