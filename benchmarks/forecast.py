"""Is the forecast right on average? Every stored run of the README command, its forecast against
its outcome on the held-out test rows.

    python benchmarks/forecast.py                         # the runs in benchmarks/results.md
    python benchmarks/forecast.py --from RUN_DIR ...      # these run directories instead
    python benchmarks/forecast.py --since 2026-12-08      # only runs started on or after a date
    python benchmarks/forecast.py --code abc1234,def5678  # only runs of these commits

Per setting (idle, or a core kept busy) and overall: how many runs, the mean error (outcome minus
forecast, points: negative means the forecast read high), its standard error, the share of
outcomes inside the forecast's range (the plan promises four in five), and the median width of
that range. A forecast is right on average when its mean error is near 0, and honest when its
coverage is what it promises.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import dollar  # noqa: E402 - benchmarks/dollar.py: the results table and run summaries

# What the done-when of issue 30 asks, printed beside the figures.
TARGET_MEAN_ERROR = 1.5  # points, either way
TARGET_COVERAGE = 0.80
TARGET_WIDTH = 10.0  # points


def _number(cell: str) -> float | None:
    try:
        return float(cell.replace("+", ""))
    except (AttributeError, ValueError):
        return None


def outcomes(rows: list[dict[str, str]]) -> list[dict]:
    """(setting, forecast, low, high, outcome) of each row that has all of them."""
    out = []
    for r in rows:
        f, lo, hi, y = (_number(r.get(c, "")) for c in ("forecast", "low", "high", "lift"))
        if None in (f, lo, hi, y):
            continue
        setting = "idle" if r.get("setting", "").startswith("idle") else "busy" if r.get("setting", "").startswith("busy") else "unknown"
        out.append({"run": r["run"], "setting": setting, "forecast": f, "low": lo, "high": hi, "outcome": y, "code": r.get("code", ""),
                    "date": r.get("date", "")})
    return out


def figures(runs: list[dict]) -> dict:
    errors = [r["outcome"] - r["forecast"] for r in runs]
    inside = [r["low"] <= r["outcome"] <= r["high"] for r in runs]
    widths = [r["high"] - r["low"] for r in runs]
    n = len(runs)
    return {
        "runs": n,
        "mean_error": statistics.mean(errors),
        "se": statistics.stdev(errors) / math.sqrt(n) if n > 1 else float("nan"),
        "coverage": sum(inside) / n,
        "median_width": statistics.median(widths),
        "below": sum(r["outcome"] < r["low"] for r in runs),
        "above": sum(r["outcome"] > r["high"] for r in runs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="dirs", nargs="+", type=Path, help="run directories (default: benchmarks/results.md)")
    parser.add_argument("--since", help="only runs started on or after this date (YYYY-MM-DD)")
    parser.add_argument("--code", help="only runs of these commits, comma-separated")
    args = parser.parse_args()
    rows = [dollar.row(dollar.summary(d)) for d in args.dirs] if args.dirs else dollar.read_results()
    runs = outcomes(rows)
    if args.since:
        runs = [r for r in runs if r["date"][:10] >= args.since]
    if args.code:
        wanted = {c.strip() for c in args.code.split(",")}
        runs = [r for r in runs if r["code"].split("+")[0] in wanted]
    if not runs:
        print("no run with a forecast and a held-out outcome")
        return 1
    print("| run | setting | forecast | range | outcome | error | inside |")
    print("|---|---|---:|---|---:|---:|---|")
    for r in runs:
        print(f"| {r['run']} | {r['setting']} | {r['forecast']:+.1f} | {r['low']:+.1f}..{r['high']:+.1f} | {r['outcome']:+.1f} | "
              f"{r['outcome'] - r['forecast']:+.1f} | {'yes' if r['low'] <= r['outcome'] <= r['high'] else 'no'} |")
    print()
    print("| setting | runs | mean error (outcome - forecast) | coverage | outside (below / above) | median range width |")
    print("|---|---:|---:|---:|---:|---:|")
    groups = {s: [r for r in runs if r["setting"] == s] for s in ("idle", "busy", "unknown")}
    for name, group in [*[(s, g) for s, g in groups.items() if g], ("all", runs)]:
        f = figures(group)
        se = f" ± {f['se']:.1f}" if not math.isnan(f["se"]) else ""
        print(f"| {name} | {f['runs']} | {f['mean_error']:+.2f}{se} | {100 * f['coverage']:.0f}% | {f['below']} / {f['above']} | {f['median_width']:.1f} |")
    overall = figures(runs)
    ok = abs(overall["mean_error"]) <= TARGET_MEAN_ERROR and overall["coverage"] >= TARGET_COVERAGE and overall["median_width"] <= TARGET_WIDTH
    print(f"\ntargets: |mean error| <= {TARGET_MEAN_ERROR}, coverage >= {100 * TARGET_COVERAGE:.0f}%, median width <= {TARGET_WIDTH:.0f}: "
          + ("met" if ok else "not met"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
