"""Learning curves: how much accuracy a method buys over the majority answer after so many
training examples, for one model on one task. What the planner values methods by.

A curve is a few points: examples seen, the lift in points over the majority on held-out rows,
how much that lift varies from seed to seed (sd), how many held-out rows it was measured on, and
a low-high band. Each point is the end of a schedule: a trial of that length, its learning rate
decayed to zero there, as a plan's trial is. They come from two places:
- shipped priors (curves.csv beside this file): measured by us (benchmarks/curves.py), each row
  with its source, on rows held out from the TRAINING split (never a job's evaluation rows);
- this machine's earlier runs (cache/curves.json): each trial that ran its schedule to the end
  adds its final lift on the selection rows, and how many steps it trained against how many were
  planned (its pace). With a shipped prior, those outcomes correct the prior's bias (`corrected`:
  the whole curve moves by a shrunk mean of their residuals); without one they are the curve.

Between points a curve is linear in log(examples); past its last point it stays flat (no
promise of more than was seen); before its first point it falls linearly to 0 at 0 examples.
The curve a plan reads never falls as examples grow (never_falling).
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from budgetft.files import write_json
from budgetft.paths import cache_root

LEARNED_LIFT = 2.0  # points over the majority: the least lift that counts as learning the task
KEPT_RUNS = 8  # per (model, data, method): the runs kept on this machine
Z95 = 1.96
# How far a shipped prior's level may be off on another machine or data draw, points (one
# standard deviation of the prior over biases): what a machine's own outcomes must overcome
# before they move the curve. The 400-row MiniLM prior read 4 points above twenty-odd runs.
PRIOR_BIAS_SD = 2.0
ACCURACY = 0.65  # a BoolQ-like accuracy, for the binomial noise of a lift on n rows


@dataclass(frozen=True)
class Point:
    examples: int
    lift: float  # points over the majority answer, on held-out rows
    low: float
    high: float
    runs: int = 1  # how many runs (seeds) stand behind the point: a merge's weight
    sd: float | None = None  # the lift's standard deviation from seed to seed, points (None: unknown)
    rows: int | None = None  # held-out rows the lift was measured on (None: unknown)


@dataclass(frozen=True)
class Curve:
    model: str
    data: str
    method: str
    points: tuple[Point, ...]  # ascending examples
    source: str
    # What this machine's outcomes moved the curve by, points, and the standard deviation of that
    # estimate (0 and None: uncorrected); the runs behind it.
    bias: float = 0.0
    bias_sd: float | None = None
    bias_runs: int = 0

    def at(self, examples: float) -> Point:
        """The curve's point after `examples` training examples."""
        pts = self.points
        if examples <= 0 or not pts:
            return Point(0, 0.0, 0.0, 0.0)
        if examples <= pts[0].examples:
            f = examples / pts[0].examples
            first = pts[0]
            return Point(int(examples), f * first.lift, f * first.low, f * first.high, first.runs, first.sd, first.rows)
        for a, b in zip(pts, pts[1:]):
            if examples <= b.examples:
                f = (math.log(examples) - math.log(a.examples)) / (math.log(b.examples) - math.log(a.examples))
                mix = lambda x, y: x + f * (y - x)  # noqa: E731
                sd = mix(a.sd, b.sd) if a.sd is not None and b.sd is not None else (a.sd if b.sd is None else b.sd)
                rows = min(r for r in (a.rows, b.rows) if r) if (a.rows or b.rows) else None
                return Point(int(examples), mix(a.lift, b.lift), mix(a.low, b.low), mix(a.high, b.high), min(a.runs, b.runs), sd, rows)
        last = pts[-1]
        return replace(last, examples=int(examples))

    def slope(self, examples: float) -> float:
        """Points of lift per e-fold of examples around `examples` (0 past the curve's end, where it
        stays flat): what a run that trains more or fewer steps than planned gains or loses."""
        if examples <= 0:
            return 0.0
        up, down = self.at(examples * 1.1).lift, self.at(examples / 1.1).lift
        return (up - down) / (2 * math.log(1.1))

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
    """The priors in curves.csv. Its `sd` and `rows` columns (the seed-to-seed spread and the
    held-out rows) may be empty for a point measured without them."""
    text = resources.files("budgetft.planner").joinpath("curves.csv").read_text("utf-8")
    rows: dict[str, list] = {}
    sources: dict[str, str] = {}
    for row in csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#")):
        k = key(row["model"], row["data"], row["method"])
        sd, n = row.get("sd") or "", row.get("rows") or ""
        seeds = int(row.get("seeds") or 0) or None
        rows.setdefault(k, []).append(Point(int(row["examples"]), float(row["lift"]), float(row["low"]), float(row["high"]),
                                            seeds or 1, float(sd) if sd else None, int(n) if n else None))
        sources[k] = row["source"]
    return {k: Curve(*k.split("|"), tuple(sorted(v, key=lambda p: p.examples)), f"shipped prior: {sources[k]}") for k, v in rows.items()}


STORE_VERSION = 3  # version 2 kept every evaluation, mid-schedule rungs too, and no pace: dropped
BIN = 2 ** 0.25  # sizes within this factor of each other (about 19%) are one point of a stored curve


def _store() -> Path:
    return cache_root() / "curves.json"


def _read_store() -> dict:
    """key -> list of runs, each {"points": [[examples, lift], ...], "rows": n, "pace": [log of
    steps trained / planned, ...]}. A store of an earlier version is read as empty: version 2 held
    every evaluation of a trial, ASHA's mid-schedule rungs among them, which read below the end of
    a schedule that the curves are; version 1 held no row counts."""
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


def rows_sd(rows: int | None) -> float | None:
    """The binomial standard deviation, in points, of an accuracy measured on `rows` rows."""
    return 100 * math.sqrt(ACCURACY * (1 - ACCURACY) / rows) if rows else None


def stored_curves() -> dict[str, Curve]:
    """This machine's curves: the final lifts of its runs' trials. Points of different runs whose
    sizes fall within BIN of each other are pooled: the point's lift is the median over the runs,
    its sd their spread (two runs or more), its band the runs' spread widened by a 95% interval of
    each run's rows. A single run's point gets that interval alone (about +-6.9 points on 200
    rows), never a band narrower than its rows can support."""
    out = {}
    for k, runs in _read_store().items():
        measured = sorted((int(e), float(v), i, int(run.get("rows") or 0)) for i, run in enumerate(runs) for e, v in run.get("points") or [])
        groups: list[list[tuple[int, float, int, int]]] = []
        for m in measured:  # sizes within BIN of a group's smallest join it
            if groups and m[0] <= groups[-1][0][0] * BIN:
                groups[-1].append(m)
            else:
                groups.append([m])
        points = []
        for group in groups:
            per_run: dict[int, list[tuple[int, float, int, int]]] = {}
            for m in group:
                per_run.setdefault(m[2], []).append(m)
            # one value per run per point: its mean within the group
            vals = [(round(sum(m[0] for m in ms) / len(ms)), sum(m[1] for m in ms) / len(ms), ms[0][3]) for ms in per_run.values()]
            lifts = sorted(v for _, v, _ in vals)
            widest = max(_half_width(r) for _, _, r in vals)
            examples = round(sum(e for e, _, _ in vals) / len(vals))
            spread = statistics.stdev(lifts) if len(lifts) >= 2 else None
            points.append(Point(examples, statistics.median(lifts), lifts[0] - widest, lifts[-1] + widest, len(vals), spread,
                                min((r for _, _, r in vals if r), default=None)))
        if points:
            out[k] = Curve(*k.split("|"), tuple(points), f"measured in {len(runs)} earlier run(s) on this machine")
    return out


def paces(model: str, data: str, method: str) -> list[float]:
    """log(steps trained / steps planned) of this machine's stored trials of the option: a trial's
    end follows its measured pace (a busy neighbour, a faster hour), so a plan's steps are a guess."""
    return [float(p) for run in _read_store().get(key(model, data, method), []) for p in run.get("pace") or []]


def curves_for(model: str, data: str, methods: list[str]) -> dict[str, Curve]:
    """method -> its curve for this model and data: the shipped prior corrected by this machine's
    outcomes where both exist, else whichever exists; methods with neither are absent."""
    shipped, stored = shipped_curves(), stored_curves()
    found = {}
    for m in methods:
        k = key(model, data, m)
        curve = corrected(shipped[k], stored[k]) if k in shipped and k in stored else stored.get(k) or shipped.get(k)
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
    The bands and spreads stay as measured."""
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
    return replace(curve, points=tuple(replace(p, lift=lift) for p, lift in zip(curve.points, lifts)))


def corrected(shipped: Curve, stored: Curve) -> Curve:
    """The shipped prior moved by what this machine's outcomes say about its bias. Each stored
    point's residual (its lift minus the prior's at its size) estimates the bias with the noise
    of one run (the seed spread and its selection rows' binomial noise); their mean, weighted by
    the runs behind each point, is shrunk toward 0 as a normal prior of PRIOR_BIAS_SD would
    shrink it (few or noisy runs move the curve little, many move it all the way), and the whole
    curve moves by it: a machine whose runs land 3 points below the prior at 9,600 examples says
    the prior reads high at 5,600 too. The bands move with it; the seed spread stays the prior's."""
    residuals, weights, noise = [], [], []
    for p in stored.points:
        prior = shipped.at(p.examples)
        residuals.append(p.lift - prior.lift)
        weights.append(p.runs)
        one_run = (prior.sd or PRIOR_BIAS_SD) ** 2 + (rows_sd(p.rows) or rows_sd(200)) ** 2
        noise.append(one_run)
    n = sum(weights)
    mean = sum(r * w for r, w in zip(residuals, weights)) / n
    per_run = sum(v * w for v, w in zip(noise, weights)) / n
    shrink = PRIOR_BIAS_SD**2 / (PRIOR_BIAS_SD**2 + per_run / n)
    bias = shrink * mean
    bias_sd = math.sqrt(1 / (1 / PRIOR_BIAS_SD**2 + n / per_run))  # what is left unknown of the bias
    points = tuple(replace(p, lift=p.lift + bias, low=p.low + bias, high=p.high + bias) for p in shipped.points)
    return Curve(shipped.model, shipped.data, shipped.method, points,
                 f"{shipped.source}, moved {bias:+.1f} points by {n} earlier run(s) on this machine", bias, bias_sd, n)


def remember(model: str, data: str, method: str, points: list[tuple[int, float]], rows: int, pace: list[float] = ()) -> None:
    """Add one finished trial's (examples, lift in points) at the end of its schedule, measured
    on `rows` rows, to this machine's store, as one run, with how its steps went against the plan
    (`pace`: log of trained over planned); the last KEPT_RUNS runs per (model, data, method) are kept."""
    if not points:
        return
    store = _read_store()
    runs = store.setdefault(key(model, data, method), [])
    runs.append({"points": [[int(e), round(float(v), 2)] for e, v in points], "rows": int(rows), "pace": [round(float(p), 4) for p in pace]})
    del runs[:-KEPT_RUNS]
    write_json(_store(), {"version": STORE_VERSION, "curves": store})


def learned_from(job, run) -> None:
    """Store what a finished run measured: each trial that ran its schedule to its end (finished;
    ASHA's stopped trials ended mid-schedule), its lift over the majority on the selection rows at
    its last evaluation, and its steps trained against those planned. Never the held-out test
    rows: the next plan for the same task is a decision too, and no decision sees them."""
    batch = job.train.batch_size
    majority = (run.baselines().get("majority") or {}).get("accuracy")
    for trial in run.trials():
        scored = [e for e in trial.evals if "step" in e]
        if majority is None or not scored or trial.status != "finished":
            continue
        last = scored[-1]
        pace = [math.log(trial.steps / trial.max_steps)] if trial.steps and trial.max_steps else []
        remember(trial.model or job.model.name, job.data.name, trial.method, [(last["step"] * batch, 100 * (last["accuracy"] - majority))],
                 int(last.get("n") or 0), pace)
