"""What a dollar buys: `budgetft run` on the embedded default at a few budgets, and what each
bought on the held-out test rows.

    python benchmarks/dollar.py [--budgets 0.25,0.50] [--price-per-hour 1.00] [--seed 0] [--keep DIR]
                                [--set key=value ...]
    python benchmarks/dollar.py --from RUN_DIR [RUN_DIR ...]     # tabulate runs already made

Per budget: the winner's test accuracy, the majority and zero-shot baselines on the same rows,
the lift, McNemar's exact p, the spend by category (and training's share), and the plan's
forecast against the outcome. Each run is a real `budgetft run` at the stated price: on a 2-core
CPU at $1.00/h, $0.25 is 15 minutes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def one(budget: str, price: str, seed: int, out: Path, overrides: list[str]) -> dict:
    cmd = [sys.executable, "-m", "budgetft", "run", "--budget", budget, "--price-per-hour", price, "--out", str(out), "--set", f"seed={seed}"]
    for o in overrides:
        cmd += ["--set", o]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    tail = proc.stderr.strip().splitlines()[-1:] if proc.returncode else []
    return summary(out, budget, proc.returncode, wall, tail)


def summary(out: Path, budget: str | None = None, exit_code: int = 0, wall: float | None = None, tail: list[str] = ()) -> dict:
    """What one run directory says it bought."""
    from budgetft.money.ledger import read_charges

    charges = read_charges(out / "ledger.jsonl") if (out / "ledger.jsonl").exists() else []
    spent = charges[-1].total if charges else Decimal(0)
    by_cat: dict[str, Decimal] = {}
    for c in charges:
        by_cat[c.category] = by_cat.get(c.category, Decimal(0)) + c.amount
    info = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else {}
    if wall is None and info.get("started") and info.get("finished"):
        from datetime import datetime

        wall = (datetime.fromisoformat(info["finished"]) - datetime.fromisoformat(info["started"])).total_seconds()
    test = json.loads((out / "test.json").read_text()) if (out / "test.json").exists() else {}
    plan = json.loads((out / "plan.json").read_text()) if (out / "plan.json").exists() else {}
    rounds = plan.get("rounds") or [plan]
    return {"budget": budget or str(info.get("cap_usd", "?")), "exit": exit_code, "wall": wall or 0.0, "spent": spent, "by_cat": by_cat,
            "test": test, "forecast": (rounds[0] or {}).get("forecast"), "stderr_tail": list(tail)}


def pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", default="0.25,0.50", help="comma-separated caps in USD; on a 2-core CPU at $1.00/h the embedded job needs at least $0.15 for one trial long enough to learn")
    parser.add_argument("--price-per-hour", default="1.00")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="keep the run directories here")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="job overrides for every run")
    parser.add_argument("--from", dest="dirs", nargs="+", type=Path, help="tabulate these finished run directories instead of running")
    args = parser.parse_args()
    results = []
    if args.dirs:
        results = [summary(d) for d in args.dirs]
    work = Path(args.keep or tempfile.mkdtemp(prefix="budgetft-dollar-"))
    work.mkdir(parents=True, exist_ok=True)
    for budget in [] if args.dirs else [b.strip() for b in args.budgets.split(",") if b.strip()]:
        r = one(budget, args.price_per_hour, args.seed, work / f"run-{budget}-seed{args.seed}", args.overrides)
        results.append(r)
        print(f"${budget}: exit {r['exit']}, ${r['spent']} spent in {r['wall'] / 60:.1f} min" + (f" ({r['stderr_tail']})" if r["stderr_tail"] else ""), flush=True)
    print()
    print("| budget | winner | test rows | winner % | majority % | zero-shot % | lift | McNemar p | training share | evaluation share | spend by category | forecast (range) | outcome in range |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|")
    for r in results:
        t, f = r["test"], r["forecast"]
        vs = t.get("vs_majority") or {}
        spent = r["spent"] or Decimal(1)
        share = lambda cat: f"{100 * r['by_cat'].get(cat, Decimal(0)) / spent:.0f}%"  # noqa: E731
        evaluation = r["by_cat"].get("evaluation", Decimal(0)) + r["by_cat"].get("baselines", Decimal(0))
        cats = ", ".join(f"{c} ${v}" for c, v in sorted(r["by_cat"].items(), key=lambda kv: -kv[1]))
        forecast = f"{f['lift_points']:+.1f} ({f['low_points']:+.1f}..{f['high_points']:+.1f})" if f else "–"
        inside = ("yes" if f["low_points"] <= vs["lift_points"] <= f["high_points"] else "no") if f and vs else "–"
        print(f"| ${r['budget']} | {t.get('winner') or '–'} ({t.get('method') or ''}) | {t.get('rows', '–')} | {pct((t.get('metrics') or {}).get('accuracy'))} | "
              f"{pct((t.get('majority') or {}).get('accuracy'))} | {pct((t.get('zero_shot') or {}).get('accuracy'))} | "
              f"{vs.get('lift_points', 0):+.1f} | {vs.get('p_value', float('nan')):.3g} | {share('training')} | {100 * evaluation / spent:.0f}% | {cats} | {forecast} | {inside} |")
    return 0 if all(r["exit"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
