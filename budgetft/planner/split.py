"""How many held-out test rows a run scores its winner on, and why that many.

The headline of a report is the winner against the majority answer on rows that no decision
saw, with McNemar's exact test on the same rows. Its power depends on the rows: to show a lift
of d (a fraction) over the majority at alpha = 0.05 with 80% power, McNemar's test needs about

    n = (z_0.975 + z_0.80)^2 * q / d^2        (q: the share of rows where the two disagree)

rows (the normal approximation to the paired test). Scoring costs two passes over the test rows
(the untuned model for the zero-shot baseline, and the winner), and every second they take is a
second not spent training, so a run scores the rows its claim needs (a 5-point lift shown with
80% power: ~942 rows) and no more, unless more cost next to nothing (EXTRA_SHARE of the budget);
where the claim's rows cost more than TEST_SHARE, it takes what that buys, and stretches to the
500-row standard up to MAX_TEST_SHARE.

Measured on the README run ($0.25 at $1/h on a 2-core CPU, MiniLM scoring ~64 rows/s): a 15%
share had bought all 3,070 spare rows of BoolQ's validation split, ~96 s of its 900; the
claim's 942 rows take ~29 s, and the difference trains (~95 more steps of ~0.7 s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z_ALPHA, Z_POWER = 1.96, 0.8416  # two-sided alpha = 0.05; 80% power
# Share of test rows where a trained winner and "always the majority class" answer differently.
# Measured: 0.20-0.30 for SmolLM2 LoRA trials on BoolQ (the trained model answers the minority
# class on a fifth to a third of rows); the larger figure is the conservative one.
DISCORDANT = 0.30
CLAIM_LIFT = 0.05  # the lift (a fraction) a headline claim is sized to show: issue 13's bar
TEST_SHARE = 0.15  # of the budget's machine time: the most the claim's rows may take
MAX_TEST_SHARE = 0.20  # ... stretched this far to reach PROOF_ROWS
EXTRA_SHARE = 0.03  # beyond the claim's rows, more only while both passes take no more than this
PROOF_ROWS = 500  # the rows a headline claim is held to when the budget allows it
MIN_TEST_ROWS = 50  # below this a test is noise; a budget that small gets it and a warning


@dataclass(frozen=True)
class HeldOutSplit:
    rows: int
    reason: str


def rows_to_show(lift: float, discordant: float = DISCORDANT) -> int:
    """Test rows needed to show a lift of `lift` (a fraction) with 80% power at p < 0.05."""
    return math.ceil((Z_ALPHA + Z_POWER) ** 2 * discordant / lift**2)


def smallest_lift(rows: int, discordant: float = DISCORDANT) -> float:
    """The smallest lift (a fraction) that `rows` test rows show with 80% power at p < 0.05."""
    return (Z_ALPHA + Z_POWER) * math.sqrt(discordant / max(rows, 1))


def held_out_rows_for(budget_seconds: float, eval_rows_per_s: float, available: int) -> HeldOutSplit:
    """The test rows a run of `budget_seconds` scores twice at `eval_rows_per_s`, out of the
    `available` rows of the evaluation split that the selection rows leave."""

    def bought(share: float) -> int:  # rows whose two passes take `share` of the budget
        return int(share * budget_seconds * eval_rows_per_s / 2)

    claim = max(PROOF_ROWS, rows_to_show(CLAIM_LIFT))
    if available <= 0:
        return HeldOutSplit(0, (
            "no test rows: the selection rows take every row of the evaluation split, so the winner is chosen and measured "
            f"on the same rows and nothing proves it on rows no decision saw (a {100 * CLAIM_LIFT:.0f}-point lift needs ~{claim} held-out rows); "
            "give a larger evaluation split, or lower eval.limit to leave rows for the test"))
    rows = max(min(claim, bought(TEST_SHARE)), min(PROOF_ROWS, bought(MAX_TEST_SHARE)), bought(EXTRA_SHARE), MIN_TEST_ROWS)
    rows = min(rows, available)
    seconds = 2 * rows / eval_rows_per_s
    reason = (
        f"{rows} test rows: scoring the untuned model and the winner on them takes ~{seconds:.0f} s "
        f"({100 * seconds / budget_seconds:.0f}% of the budget's {budget_seconds:.0f} s at {eval_rows_per_s:.1f} rows/s); "
        f"showing a {100 * CLAIM_LIFT:.0f}-point lift over the majority at p < 0.05 with 80% power needs ~{claim} rows "
        f"(with {100 * DISCORDANT:.0f}% of answers differing from it), and {rows} rows show "
        f"{100 * smallest_lift(rows):.1f} points or more"
    )
    if rows == available and rows < max(claim, bought(EXTRA_SHARE)):
        reason += f"; the evaluation split has only {available} rows to spare"
    elif rows < claim:
        reason += f"; fewer than {claim}: a larger budget would buy a firmer test"
    elif rows == claim:
        reason += "; more rows would take seconds from training"
    return HeldOutSplit(rows, reason)
