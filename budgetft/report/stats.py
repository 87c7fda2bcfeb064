"""Pure statistics for reports: exact tests against a baseline, and the Pareto front.

No numpy or scipy: the evaluation sets are small (tens to a few thousand rows) and exact
integer arithmetic (math.comb) keeps p-values exact where a normal approximation would not be.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

from budgetft.metrics import wilson_interval

ALPHA = 0.05  # two-sided significance level used throughout the report

# Verdicts of a trial against a baseline.
BETTER = "better"  # more accurate, and the test rejects "no difference" at ALPHA
WORSE = "worse"  # less accurate, and the test rejects "no difference" at ALPHA
NOT_SIGNIFICANT = "not_significant"
UNTESTED = "untested"  # no baseline, or no evaluation to compare


@dataclass(frozen=True)
class PairedTest:
    """Result of comparing a model with a baseline on the same evaluation rows."""

    test: str  # "mcnemar_exact" or "binomial_exact"
    p_value: float
    better: int  # rows the model gets right and the baseline wrong (McNemar's b)
    worse: int  # rows the model gets wrong and the baseline right (McNemar's c)
    verdict: str


def binomial_two_sided(k: int, n: int, p: float | Fraction = Fraction(1, 2)) -> float:
    """Exact two-sided binomial test of k successes in n trials against success rate p.

    The p-value sums the probabilities of every outcome no more likely than the observed one
    (the "minimum likelihood" rule, as scipy.stats.binomtest). For p = 1/2 that is exactly
    twice the smaller tail, capped at 1. Fractions keep the arithmetic exact when p is a ratio.
    """
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 1.0
    p = Fraction(p) if not isinstance(p, float) else Fraction(p).limit_denominator(10**12)
    if p in (0, 1):
        return 1.0 if k == n * p else 0.0
    probs = [math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(n + 1)]
    observed = probs[k]
    # A relative tolerance so outcomes tied with the observed one in exact arithmetic count too.
    total = sum(q for q in probs if q <= observed * (1 + Fraction(1, 10**7)))
    return float(min(Fraction(1), total))


def mcnemar_exact(model_correct: Sequence[bool], baseline_correct: Sequence[bool], alpha: float = ALPHA) -> PairedTest:
    """McNemar's exact test: on rows where exactly one of the two is right (the discordant
    pairs), is the model right more often than chance (a fair coin, p = 1/2) would make it?"""
    if len(model_correct) != len(baseline_correct):
        raise ValueError(f"paired test needs the same rows: {len(model_correct)} vs {len(baseline_correct)}")
    better = sum(1 for m, b in zip(model_correct, baseline_correct) if m and not b)
    worse = sum(1 for m, b in zip(model_correct, baseline_correct) if b and not m)
    p_value = binomial_two_sided(min(better, worse), better + worse)
    return PairedTest("mcnemar_exact", p_value, better, worse, _verdict(better - worse, p_value, alpha))


def binomial_vs_rate(correct: int, n: int, baseline_accuracy: float, alpha: float = ALPHA) -> PairedTest:
    """Fallback when the per-row vectors are missing: an exact binomial test of the model's
    correct count against the baseline's accuracy taken as a fixed rate (ignores the pairing,
    so it is less powerful than McNemar's test)."""
    p_value = binomial_two_sided(correct, n, baseline_accuracy)
    return PairedTest("binomial_exact", p_value, 0, 0, _verdict(correct / n - baseline_accuracy if n else 0, p_value, alpha))


def _verdict(direction: float, p_value: float, alpha: float) -> str:
    if p_value >= alpha or direction == 0:
        return NOT_SIGNIFICANT
    return BETTER if direction > 0 else WORSE


def accuracy_ci95(correct: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of an accuracy (the interval `budgetft train` prints)."""
    return wilson_interval(correct, n)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points (cost, accuracy) that no other point dominates, cheapest first.

    A point is dominated when another costs no more and is at least as accurate, and is strictly
    better in one of the two. Equal points do not dominate each other, so both stay.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best_acc = -math.inf
    best_cost = math.nan  # cost at which best_acc was reached
    for i in order:
        cost, acc = points[i]
        if acc > best_acc or (acc == best_acc and cost == best_cost):
            front.append(i)
            best_acc, best_cost = acc, cost
    return front
