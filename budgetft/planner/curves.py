"""Learning curves: how much accuracy a method buys over the majority answer after so many
training examples, for one model on one task. What the planner values methods by.

A curve is a few points (examples seen, lift in points over the majority on held-out rows, with
a low-high band). They come from two places:
- shipped priors (curves.csv beside this file): measured by us, each row with its source, on
  rows held out from the TRAINING split (never on a job's evaluation rows);
- this machine's earlier runs (cache/curves.json): every evaluated trial adds its points, so the
  next plan for the same model, data and method knows more. Measurements of a run are kept per
  (model, data, method) as the median lift at each size, the band the spread of what was seen.

Between points a curve is linear in log(examples); past its last point it stays flat (no
promise of more than was seen); before its first point it falls linearly to 0 at 0 examples.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from budgetft.paths import cache_root

LEARNED_LIFT = 2.0  # points over the majority: the least lift that counts as learning the task
KEPT_RUNS = 8  # per curve point size: measurements kept from earlier runs


@dataclass(frozen=True)
class Point:
    examples: int
    lift: float  # points over the majority answer, on held-out rows
    low: float
    high: float


@dataclass(frozen=True)
class Curve:
    model: str
    data: str
    method: str
    points: tuple[Point, ...]  # ascending examples
    source: str

    def at(self, examples: float) -> Point:
        """The curve's (lift, low, high) after `examples` training examples."""
        pts = self.points
        if examples <= 0 or not pts:
            return Point(0, 0.0, 0.0, 0.0)
        if examples <= pts[0].examples:
            f = examples / pts[0].examples
            return Point(int(examples), f * pts[0].lift, f * pts[0].low, f * pts[0].high)
        for a, b in zip(pts, pts[1:]):
            if examples <= b.examples:
                f = (math.log(examples) - math.log(a.examples)) / (math.log(b.examples) - math.log(a.examples))
                mix = lambda x, y: x + f * (y - x)  # noqa: E731
                return Point(int(examples), mix(a.lift, b.lift), mix(a.low, b.low), mix(a.high, b.high))
        last = pts[-1]
        return Point(int(examples), last.lift, last.low, last.high)

    def examples_to_learn(self, lift: float = LEARNED_LIFT) -> int | None:
        """The fewest examples after which the curve's lift reaches `lift` points; None if never."""
        for p in self.points:
            if p.lift >= lift:
                lo = 1
                hi = p.examples
                while lo < hi:  # the curve is monotone up to here: bisect for the crossing
                    mid = (lo + hi) // 2
                    if self.at(mid).lift >= lift:
                        hi = mid
                    else:
                        lo = mid + 1
                return lo
        return None


def key(model: str, data: str, method: str) -> str:
    return f"{model}|{data}|{method}"


def shipped_curves() -> dict[str, Curve]:
    text = resources.files("budgetft.planner").joinpath("curves.csv").read_text("utf-8")
    rows: dict[str, list] = {}
    sources: dict[str, str] = {}
    for row in csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#")):
        k = key(row["model"], row["data"], row["method"])
        rows.setdefault(k, []).append(Point(int(row["examples"]), float(row["lift"]), float(row["low"]), float(row["high"])))
        sources[k] = row["source"]
    return {k: Curve(*k.split("|"), tuple(sorted(v, key=lambda p: p.examples)), f"shipped prior: {sources[k]}") for k, v in rows.items()}


def _store() -> Path:
    return cache_root() / "curves.json"


def stored_curves() -> dict[str, Curve]:
    try:
        data = json.loads(_store().read_text())
    except (FileNotFoundError, ValueError):
        return {}
    out = {}
    for k, by_size in data.items():
        points = []
        for size, lifts in sorted(by_size.items(), key=lambda kv: int(kv[0])):
            vals = sorted(float(v) for v in lifts)
            points.append(Point(int(size), vals[len(vals) // 2], vals[0] - 2.0, vals[-1] + 2.0))
        if points:
            out[k] = Curve(*k.split("|"), tuple(points), f"measured in {max(len(v) for v in by_size.values())} earlier run(s) on this machine")
    return out


def curves_for(model: str, data: str, methods: list[str]) -> dict[str, Curve]:
    """method -> its curve for this model and data: this machine's measurements where they
    exist, else the shipped prior; methods with neither are absent."""
    shipped, stored = shipped_curves(), stored_curves()
    found = {}
    for m in methods:
        k = key(model, data, m)
        curve = merged(shipped[k], stored[k]) if k in shipped and k in stored else stored.get(k) or shipped.get(k)
        if curve is not None:
            found[m] = curve
    return found


def merged(shipped: Curve, stored: Curve) -> Curve:
    """The shipped prior's points with this machine's measurements added; where both measured
    the same number of examples, this machine's point wins."""
    points = {p.examples: p for p in shipped.points} | {p.examples: p for p in stored.points}
    return Curve(shipped.model, shipped.data, shipped.method, tuple(points[k] for k in sorted(points)), f"{stored.source}, and the {shipped.source}")


def remember(model: str, data: str, method: str, points: list[tuple[int, float]]) -> None:
    """Add a finished trial's (examples, lift in points) to this machine's store."""
    if not points:
        return
    path = _store()
    try:
        store = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        store = {}
    entry = store.setdefault(key(model, data, method), {})
    for examples, lift in points:
        kept = entry.setdefault(str(int(examples)), [])
        kept.append(round(float(lift), 2))
        del kept[:-KEPT_RUNS]
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(store, indent=1))
    tmp.replace(path)


def learned_from(job, run) -> None:
    """Store what a finished run measured, as points of its methods' curves: every evaluated
    trial's lift over the majority on the selection rows at each evaluation. Never the held-out
    test rows: the next plan for the same task is a decision too, and no decision sees them."""
    batch = job.train.batch_size
    majority = (run.baselines().get("majority") or {}).get("accuracy")
    for trial in run.trials():
        if majority is not None and trial.evals:
            points = [(e["step"] * batch, 100 * (e["accuracy"] - majority)) for e in trial.evals if "step" in e]
            remember(trial.model or job.model.name, job.data.name, trial.method, points)
