"""Where a run's money went, and how well the planner predicted it.

    python benchmarks/run_spend.py RUN_DIR [RUN_DIR ...]

Prints, per run: the share of the spend that bought training steps against everything else
(start-up, baselines, calibration, evaluation, scheduling gaps, report), each trial's steps
and seconds per step, and the planner's expected spend and steps against the actual ones.
Reads only the run directory (ledger.jsonl, plan.json, calibration.json, trials/).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

from budgetft.money.ledger import read_charges
from budgetft.rundir import RunDir


def describe(path: Path) -> None:
    run = RunDir(path)
    if not run.ledger.exists():
        print(f"{path}: no ledger.jsonl; not a run directory")
        return
    charges = read_charges(run.ledger)
    total = sum((c.amount for c in charges), Decimal(0))
    by_cat: dict[str, Decimal] = defaultdict(Decimal)
    for c in charges:
        by_cat[c.category] += c.amount
    info, plan = run.run(), run.plan()
    print(f"run {path}  status {info.get('status')}  price ${info.get('price_per_hour')}/h  cap ${info.get('cap_usd')}")
    print(f"  spent ${total} ({100 * total / Decimal(info.get('cap_usd') or total or 1):.1f}% of the cap), {len(charges)} charges")
    for cat, amount in sorted(by_cat.items(), key=lambda kv: -kv[1]):
        print(f"  {cat:<12} ${amount:<10} {100 * amount / total if total else 0:5.1f}%")
    training = by_cat.get("training", Decimal(0))
    print(f"  training steps bought {100 * training / total if total else 0:.1f}% of the spend; overhead (everything else) {100 * (total - training) / total if total else 0:.1f}%")
    trials = run.trials()
    planned = {t["trial_id"]: t for t in plan.get("trials", [])}
    rounds = plan.get("rounds") or ([plan] if plan.get("expected_usd") else [])
    for i, r in enumerate(rounds, 1):
        # Each round is planned with the money left when it starts (spent_usd): its expected
        # and worst-case figures are run totals at that point.
        print(f"  planner round {i}: {len(r.get('trials', []))} trials planned with ${r['spent_usd']} spent; "
              f"expected total ${r['expected_usd']}, worst case ${r['worst_case_usd']}")
    if rounds:
        first = rounds[0]
        print(f"  actual ${total}: {float(total) / float(first['expected_usd']):.2f}× the first plan's expected total"
              + (f", the rest bought by {len(rounds) - 1} more round(s) with money ASHA freed" if len(rounds) > 1 else ""))
    steps_planned = sum(t["max_steps"] for t in planned.values())
    steps_done = sum(t.get("steps", 0) for t in trials)
    print(f"  steps: {steps_done} run of {steps_planned} planned at most ({len(trials)} trials of {len(planned)} planned)")
    calib = (run.calibration_json.exists() and __import__("json").loads(run.calibration_json.read_text())) or {}
    for t in trials:
        predicted = calib.get("methods", {}).get(t["method"], {}).get("seconds_per_step")
        actual = t.get("train_seconds", 0) / t["steps"] if t.get("steps") and t.get("train_seconds") else None
        line = f"    {t['trial_id']:<22} {t['status']:<15} {t.get('steps', 0):>4} steps  ${t.get('cost_usd', '?')}"
        if predicted and actual:
            line += f"  s/step predicted {predicted:.2f}, actual {actual:.2f}"
        if t.get("startup_s") is not None:
            line += f"  start-up {t['startup_s']:.0f} s"
        print(line)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    for path in argv:
        describe(Path(path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
