"""Prior-guided plans: spend the training money where the learning curves say it buys the most.

For every method with a learning curve (budgetft.planner.curves) and a rate, the options are k
trials of n steps each (k = 1, 2, ...: the first trial is the method's known-good default, the
others sampled around it), every trial at least as long as the curve says the method needs to
learn this task; or, when the money buys enough trials for it to pay, an ASHA bracket. An
option's value is the curve's lift after n steps plus what choosing the best of k
configurations adds (below). The best option wins; its curve's band is the forecast.

Short-horizon evaluations pick learning rates that are too small (Wu et al., ICLR 2018), and
with few affordable trainings, sampling around a known-good prior beats uniform search
(PriorBand, 2023): so a small budget buys one long trial of the default, not many short ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from budgetft.planner.forecast import Pace, forecast

# What the best of k configurations sampled around a known-good default adds to the default's
# lift, in points: the expected maximum of k standard normals times an assumed spread of one
# point between such configurations. Our assumption (stated, not measured here), and small on
# purpose: a second trial must buy more than its share of steps costs.
CONFIG_SPREAD_POINTS = 1.0
_EXPECTED_MAX = {1: 0.0, 2: 0.56, 3: 0.85, 4: 1.03, 5: 1.16, 6: 1.27, 8: 1.42, 9: 1.49, 12: 1.63, 27: 1.99, 81: 2.46}
ASHA_MIN_TRIALS = 9  # below this many trials, rungs stop too few to pay for their evaluations


# The best of k is chosen on the selection rows, whose scores are noisy: a trial's accuracy on
# n rows has a binomial standard error of 100 * sqrt(p (1 - p) / n) points (p a BoolQ-like 0.65:
# 3.4 points on 200 rows). What the choice gains in truth is the noiseless gain times
# spread / sqrt(spread^2 + noise^2), the regression of a trial's true lift on its score.
SELECTION_ACCURACY = 0.65


def best_of_bonus(k: int, selection_rows: int | None = None) -> float:
    """Points that choosing the best of k configurations adds, chosen on `selection_rows` rows
    (None: as if they were noiseless)."""
    keys = sorted(_EXPECTED_MAX)
    below = max(x for x in keys if x <= k)
    gain = CONFIG_SPREAD_POINTS * _EXPECTED_MAX[below]
    if selection_rows:
        noise = 100 * math.sqrt(SELECTION_ACCURACY * (1 - SELECTION_ACCURACY) / selection_rows)
        gain *= CONFIG_SPREAD_POINTS / math.sqrt(CONFIG_SPREAD_POINTS ** 2 + noise ** 2)
    return gain


@dataclass(frozen=True)
class Option:
    method: str
    trials: int
    steps: int
    seconds: float  # expected machine (slot) seconds
    lift: float  # forecast points over the majority, configuration choice included
    low: float  # the forecast's range (budgetft.planner.forecast.COVERAGE of outcomes inside it)
    high: float
    min_steps: int  # the fewest steps the curve says this method needs to learn the task
    asha: bool = False
    grace: int = 0
    rungs: tuple[int, ...] = ()
    sd: float = 0.0  # the forecast's standard deviation, points
    parts: tuple[tuple[str, float], ...] = ()  # (reason, its standard deviation in points): budgetft.planner.forecast
    examples: int = 0  # the size the curve was read at


def options_for(method: str, seconds_per_step: float, curve, seconds: float, trial_startup: float, eval_seconds: float,
                max_steps: int, batch_size: int, max_trials: int, selection_rows: int | None = None,
                test_rows: int | None = None, pace: Pace = Pace()) -> list[Option]:
    """The viable k-trial options of one method within `seconds` of slot time; the best of k is
    chosen on `selection_rows` rows (best_of_bonus), and the outcome judged on `test_rows` rows
    at this machine's `pace` (budgetft.planner.forecast)."""
    examples = curve.examples_to_learn()
    if examples is None:
        return []
    min_steps = max(4, math.ceil(examples / batch_size))
    found = []
    for k in range(1, max_trials + 1):
        # Every trial is scored once on the selection rows, at its last step: k > 1 to choose
        # between them, and a lone trial too, so that its learning-curve point comes from rows
        # the report does not claim on (the held-out test rows inform no plan).
        per_trial = trial_startup + eval_seconds
        steps = min(max_steps, math.floor((seconds - k * per_trial) / (k * seconds_per_step))) if seconds > k * per_trial else 0
        if steps < min_steps:
            break
        f = forecast(curve, steps * batch_size, best_of_bonus(k, selection_rows), test_rows, pace)
        found.append(Option(method, k, steps, k * (per_trial + steps * seconds_per_step), f.lift, f.low, f.high, min_steps,
                            sd=f.sd, parts=tuple(f.parts.items()), examples=f.examples))
        if steps < max_steps and k >= 2 and found[-2].lift > found[-1].lift:
            break  # more trials only shorten each one further
    return found


def best_option(options: list[Option]) -> Option | None:
    """The option with the most forecast lift; on a tie (within 0.1 point), the cheaper."""
    if not options:
        return None
    top = max(o.lift for o in options)
    return min((o for o in options if o.lift >= top - 0.1), key=lambda o: o.seconds)


def plan_words(option: Option, budget_text: str, curve_source: str, more_fits: Option | None, max_steps: int) -> str:
    """The plan in one sentence a user reads."""
    trials = f"one {option.method} trial" if option.trials == 1 else f"{option.trials} {option.method} trials"
    text = f"{budget_text} buys {trials} of {option.steps} steps"
    if option.steps >= max_steps and option.trials > 1:
        text += f"; each runs the job's train.max_steps ({max_steps}), and the rest buys configurations sampled around the default"
    elif more_fits is None or more_fits.steps < option.min_steps:
        text += (f"; more trials would each be too short to learn: {option.method} needs ~{option.min_steps} steps "
                 f"here to lift accuracy over the majority ({curve_source})")
    else:
        text += f"; {more_fits.trials} shorter trials ({more_fits.steps} steps) would forecast less ({more_fits.lift:+.1f} against {option.lift:+.1f} points)"
    return text
