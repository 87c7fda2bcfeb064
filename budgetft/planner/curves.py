"""Learning curves: how much accuracy a method buys over the majority answer after so many
training examples, for one model on one task. What the planner values methods by.

A curve is a few points (examples seen, lift in points over the majority on held-out rows, with
a low-high band). They come from two places:
- shipped priors (curves.csv beside this file): measured by us, each row with its source, on
  rows held out from the TRAINING split (never on a job's evaluation rows);
- this machine's earlier runs (cache/curves.json): every evaluated trial adds its points, so the
  next plan for the same model, data and method knows more. The last few runs are kept per
  (model, data, method); see stored_curves and merged for how they become one curve.

Between points a curve is linear in log(examples); past its last point it stays flat (no
promise of more than was seen); before its first point it falls linearly to 0 at 0 examples.
The curve a plan reads never falls as examples grow (never_falling).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import statistics
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from budgetft.paths import cache_root
from budgetft.files import write_json

LEARNED_LIFT = 2.0  # points over the majority: the least lift that counts as learning the task
KEPT_RUNS = 8  # per (model, data, method): the runs kept on this machine


@dataclass(frozen=True)
class Point:
    examples: int
    lift: float  # points over the majority answer, on held-out rows
    low: float
    high: float
    runs: int = 1  # how many runs (seeds) stand behind the point: a merge's weight


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


STORE_VERSION = 2  # earlier stores kept one lift per exact size with no row count: dropped (see stored_curves)
Z95 = 1.96
BIN = 2 ** 0.25  # sizes within this factor of each other (about 19%) are one point of a stored curve
SHIPPED_RUNS = re.compile(r"seeds ([0-9][0-9,\- ]*)")


def _store() -> Path:
    return cache_root() / "curves.json"


def _read_store() -> dict:
    """key -> list of runs, each {"points": [[examples, lift], ...], "rows": n}. A store written
    before version 2 is read as empty: its entries held one lift per exact size, without the
    number of rows behind it, so no honest interval can be drawn around them, and they were
    recorded when a Ray worker gave every run's fresh head the same draw."""
    try:
        data = json.loads(_store().read_text())
    except (FileNotFoundError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != STORE_VERSION:
        return {}
    return data.get("curves") or {}


def _half_width(rows: int) -> float:
    """A 95% interval's half-width, in points, around one accuracy measured on `rows` rows, at the
    worst case p = 0.5 (a lift's band must not claim more than its rows can show)."""
    return Z95 * 100 * math.sqrt(0.25 / max(1, rows))


def stored_curves() -> dict[str, Curve]:
    """This machine's curves. Each run adds a few (examples, lift) points measured on its
    selection rows. Points of different runs whose sizes fall within BIN of each other are pooled:
    the point's lift is the median over the runs, its band the runs' spread widened by a 95%
    interval of each run's rows. A single run's point gets that interval alone (about +-6.9 points
    on 200 rows), never a band narrower than its rows can support."""
    out = {}
    for k, runs in _read_store().items():
        measured = sorted((int(e), float(v), i, int(run.get("rows") or 0)) for i, run in enumerate(runs) for e, v in run.get("points") or [])
        groups: list[list[tuple[int, float, int, int]]] = []
        for m in measured:  # sizes within BIN of a group's smallest join it
            if groups and m[0] <= groups[-1][0][0] * BIN:
                groups[-1].append(m)
            else:
                groups.append([m])
        by_bin = {}
        for b, group in enumerate(groups):
            per_run: dict[int, list[tuple[int, float, int, int]]] = {}
            for m in group:
                per_run.setdefault(m[2], []).append(m)
            # one value per run per point: its mean within the group
            by_bin[b] = [(round(sum(m[0] for m in ms) / len(ms)), sum(m[1] for m in ms) / len(ms), ms[0][3]) for ms in per_run.values()]
        points = []
        for b in sorted(by_bin):
            vals = by_bin[b]
            lifts = sorted(v for _, v, _ in vals)
            widest = max(_half_width(r) for _, _, r in vals)
            examples = round(sum(e for e, _, _ in vals) / len(vals))
            points.append(Point(examples, statistics.median(lifts), lifts[0] - widest, lifts[-1] + widest, len(vals)))
        if points:
            out[k] = Curve(*k.split("|"), tuple(points), f"measured in {len(runs)} earlier run(s) on this machine")
    return out


def curves_for(model: str, data: str, methods: list[str]) -> dict[str, Curve]:
    """method -> its curve for this model and data: the shipped prior combined with this
    machine's measurements where both exist, else whichever exists; methods with neither are
    absent."""
    shipped, stored = shipped_curves(), stored_curves()
    found = {}
    for m in methods:
        k = key(model, data, m)
        curve = merged(shipped[k], stored[k]) if k in shipped and k in stored else stored.get(k) or shipped.get(k)
        if curve is not None:
            found[m] = never_falling(curve)
    return found


def never_falling(curve: Curve) -> Curve:
    """The curve with its lifts pooled wherever a later point reads below an earlier one (pool
    adjacent violators: each run of such points takes their mean), so that the lift never falls
    as examples grow. Within the first pass over the training rows, more examples of the same
    recipe do not unlearn: a fall between points is noise, or, merged, this machine's runs
    reaching only some sizes. Left as it was, a fall at the long end made two trials of half the
    length forecast more than one long trial (the plan split $0.25 into two 850-step trials).
    The bands stay as measured."""
    blocks: list[list[float]] = []  # [sum of lifts, count] per pooled run of points
    for p in curve.points:
        blocks.append([p.lift, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, n = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += n
    lifts = [total / n for total, n in blocks for _ in range(n)]
    if all(abs(a - p.lift) < 1e-12 for a, p in zip(lifts, curve.points)):
        return curve
    points = tuple(Point(p.examples, lift, p.low, p.high, p.runs) for p, lift in zip(curve.points, lifts))
    return Curve(curve.model, curve.data, curve.method, points, curve.source)


def _shipped_runs(curve: Curve) -> int:
    """How many seeds a shipped prior's points stand for, read from its source ("seeds 0,1")."""
    found = SHIPPED_RUNS.search(curve.source)
    if not found:
        return 1
    count = 0
    for part in found.group(1).replace(" ", "").strip(",").split(","):
        lo, _, hi = part.partition("-")
        count += int(hi) - int(lo) + 1 if hi else 1
    return max(1, count)


def merged(shipped: Curve, stored: Curve) -> Curve:
    """The shipped prior and this machine's measurements as one curve. Over the sizes this
    machine measured, each point's lift is the mean of the two weighted by how many runs stand
    behind each (the prior's seeds, this machine's runs), and its band spans both bands: a
    machine that saw a run stall keeps that possibility in the range. Outside those sizes the
    prior stands alone (a run that stopped at 8,000 examples says nothing about 800)."""
    first, last = stored.points[0].examples, stored.points[-1].examples
    w_prior = _shipped_runs(shipped)
    sizes = sorted({p.examples for p in shipped.points} | {p.examples for p in stored.points})
    points = []
    for size in sizes:
        prior = shipped.at(size)
        if not first <= size <= last:
            points.append(Point(size, prior.lift, prior.low, prior.high))
            continue
        here = stored.at(size)
        above = next(p for p in stored.points if p.examples >= size)
        below = next(p for p in reversed(stored.points) if p.examples <= size)
        w_here = min(above.runs, below.runs)  # the thinner of the two measured points around it
        lift = (w_prior * prior.lift + w_here * here.lift) / (w_prior + w_here)
        points.append(Point(size, lift, min(prior.low, here.low), max(prior.high, here.high)))
    return Curve(shipped.model, shipped.data, shipped.method, tuple(points), f"{stored.source}, and the {shipped.source}")


def remember(model: str, data: str, method: str, points: list[tuple[int, float]], rows: int) -> None:
    """Add one finished trial's (examples, lift in points) measured on `rows` rows to this
    machine's store, as one run; the last KEPT_RUNS runs per (model, data, method) are kept."""
    if not points:
        return
    path = _store()
    store = _read_store()
    runs = store.setdefault(key(model, data, method), [])
    runs.append({"points": [[int(e), round(float(v), 2)] for e, v in points], "rows": int(rows)})
    del runs[:-KEPT_RUNS]
    write_json(path, {"version": STORE_VERSION, "curves": store})


def learned_from(job, run) -> None:
    """Store what a finished run measured, as points of its methods' curves: every evaluated
    trial's lift over the majority on the selection rows at each evaluation. Never the held-out
    test rows: the next plan for the same task is a decision too, and no decision sees them."""
    batch = job.train.batch_size
    majority = (run.baselines().get("majority") or {}).get("accuracy")
    for trial in run.trials():
        if majority is not None and trial.evals:
            scored = [e for e in trial.evals if "step" in e]
            points = [(e["step"] * batch, 100 * (e["accuracy"] - majority)) for e in scored]
            remember(trial.model or job.model.name, job.data.name, trial.method, points, min((e.get("n") or 0) for e in scored) if scored else 0)
