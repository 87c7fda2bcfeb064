"""The learning-rate schedule of a trial's phase, and the pace a trial's end is judged by."""

from __future__ import annotations

from dataclasses import dataclass


# The pace a trial's end is judged by: seconds per token over its last PACE_STEPS steps, times
# the data's mean tokens per step (a step's time follows its batch's length, and length-grouped
# batches vary: a README run's first 200 steps ran at 0.89 s a step, its whole trial at 0.69),
# once it has PACE_MIN_STEPS of them; a phase's first step is left out (allocation, caches, a
# store's first visits).
PACE_STEPS = 50
PACE_MIN_STEPS = 30


@dataclass
class Schedule:
    """Linear warm-up, then linear decay to zero at `total` steps (of a phase). The end may move
    while the phase runs (a machine slower or faster than calibrated: run_trial's `horizon`):
    from the step where it moved, the factor then falls linearly from where it stood to zero at
    the new end, so the trial still ends decayed, without a jump."""

    warmup: int
    total: int
    cut_at: int | None = None  # the step the end moved at
    cut_factor: float = 0.0  # the factor there

    def factor(self, step: int) -> float:
        if self.cut_at is not None and step >= self.cut_at:
            return max(0.0, self.cut_factor * (self.total - step) / max(1, self.total - self.cut_at))
        if step < self.warmup:
            return (step + 1) / self.warmup
        return max(0.0, (self.total - step) / max(1, self.total - self.warmup))

    def end_at(self, step: int, total: int) -> None:
        """Decay from `step` (the next to run, counted in the phase) to zero at `total`."""
        self.cut_factor = self.factor(step)
        self.cut_at, self.total = step, total


def pace(recent, mean_tokens: float) -> float:
    """Seconds a mean step takes at the recent rate: recent seconds per token (padding
    included) times the data's mean tokens per step; the plain mean of the recent steps where
    their tokens are unknown."""
    seconds = sum(s for s, _ in recent)
    tokens = sum(t for _, t in recent)
    if tokens <= 0 or mean_tokens <= 0:
        return seconds / len(recent)
    return seconds / tokens * mean_tokens

