"""The report's two PNGs, readable without the table.

- accuracy_vs_cost.png: every trial's accuracy on the selection rows against what it had cost
  at each evaluation, its kept result with the 95% CI, the majority and zero-shot baselines as
  horizontal lines, the Pareto front of accuracy vs cost, and the winner's result on the held-out
  test rows (a star, filled when it beats their majority significantly) beside its own point.
- spend_over_time.png: cumulative spend by category against the cap, over the run's minutes.

Figures are drawn with matplotlib's object API (Figure + Agg canvas), never pyplot, so no
global state or display backend is touched; matplotlib is imported only when plotting.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from budgetft.report import fmt
from budgetft.report.load import RunReport, parse_ts

# Imported inside functions: matplotlib: importing this module must stay cheap (start-up time).

SIZE_IN = (9.0, 5.6)  # inches; at DPI 150 this is 1350 x 840 px
DPI = 150
# Marker shape says how a trial ended; filled means it beat the majority significantly.
ENDED_MARKERS = {"finished": "o", "stopped_early": "v", "stopped_by_cap": "s", "failed": "X",
                 "running": "D", "interrupted": "D"}
CATEGORY_COLORS = {"boot": "#8c564b", "upload": "#e377c2", "baselines": "#7f7f7f", "calibration": "#bcbd22",
                   "training": "#1f77b4", "evaluation": "#2ca02c", "overhead": "#ff7f0e", "report": "#17becf",
                   "teardown": "#9467bd", "minimum": "#c7c7c7"}


def _place_labels(fig, ax, labels: list[tuple[str, float, float, str]]) -> None:
    """Name each point, moving a name down a line at a time (at most 6) while its box would
    overlap one already placed: trials often share a cost and an accuracy."""
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    # The markers are taken space too: 9 points around each point (a Pareto ring is 8 points
    # in radius), converted to the renderer's pixels.
    r = 9 * fig.dpi / 72
    taken = [Bbox.from_bounds(px - r, py - r, 2 * r, 2 * r) for px, py in (ax.transData.transform((x, y)) for _, x, y, _ in labels)]
    own = list(taken)
    for (text, x, y, color), marker in zip(labels, own):
        for line in range(7):
            note = ax.annotate(text, (x, y), xytext=(6, 5 - 10 * line), textcoords="offset points", fontsize=8, color=color)
            box = note.get_window_extent(renderer)
            if line == 6 or not any(box.overlaps(other) for other in taken if other is not marker):
                taken.append(box)
                break
            note.remove()


def _text(s: str) -> str:
    """Matplotlib reads a pair of '$' as maths; every dollar in our labels is money."""
    return s.replace("$", r"\$")


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=SIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _held_out_winner(ax, report: RunReport, labels: list) -> list:
    """The winner on the held-out test rows (test.json), drawn at the winner's cost: a star with
    its 95% interval, filled when McNemar's test on those rows says it beats always answering the
    majority class, and that majority as a short dotted line. Returns its legend entries."""
    from matplotlib.lines import Line2D

    test = report.test or {}
    metrics = test.get("metrics") or {}
    row = next((t for t in report.trials if t.id == test.get("winner")), None)
    if row is None or row.cost is None or metrics.get("accuracy") is None:
        return []
    x, y = float(row.cost), 100 * metrics["accuracy"]
    vs = test.get("vs_majority") or {}
    won = vs.get("p_value") is not None and vs["p_value"] < 0.05 and (vs.get("lift_points") or 0) > 0
    ci = metrics.get("accuracy_ci95")
    if ci:
        ax.errorbar(x, y, yerr=[[y - 100 * ci[0]], [100 * ci[1] - y]], color="#b8860b", capsize=4, lw=1.2, zorder=6)
    ax.scatter(x, y, s=220, marker="*", zorder=7, linewidths=1.4, edgecolors="#b8860b", facecolors="#ffd700" if won else "white")
    majority = (test.get("majority") or {}).get("accuracy")
    if majority is not None:
        ax.plot([x * 0.85, x * 1.15], [100 * majority] * 2, color="#b8860b", ls=":", lw=1.5, zorder=6)
    labels.append((_text(f"{row.id}: held-out test"), x, y, "#b8860b"))
    p = f"p = {vs['p_value']:.2g}" if vs.get("p_value") is not None else "no test"
    verdict = "beats" if won else "does not significantly beat"
    return [Line2D([], [], color="#b8860b", marker="*", ms=11, ls="", mfc="#ffd700" if won else "white",
                   label=_text(f"winner on {test.get('rows', '?')} held-out test rows: {verdict} their majority ({p})")),
            Line2D([], [], color="#b8860b", ls=":", lw=1.5, label="majority on the held-out test rows")]


def accuracy_vs_cost(report: RunReport, path: Path) -> Path:
    from matplotlib.lines import Line2D

    fig, ax = _figure()
    methods = sorted({t.method for t in report.trials})
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    color = {m: palette[i % len(palette)] for i, m in enumerate(methods)}
    scored = [t for t in report.trials if t.accuracy is not None and t.cost is not None]

    labels: list[tuple[str, float, float, str]] = []  # placed once the axes are final

    for t in scored:
        c = color[t.method]
        path_pts = [(float(cost), 100 * acc) for _, acc, cost in t.trajectory if cost is not None]
        if len(path_pts) > 1:  # how accuracy moved as the trial spent
            ax.plot(*zip(*path_pts), color=c, alpha=0.35, lw=1.2, marker=".", ms=5, zorder=2)
        x, y = float(t.cost), 100 * t.accuracy
        lo, hi = (100 * t.ci95[0], 100 * t.ci95[1]) if t.ci95 else (y, y)
        ax.errorbar(x, y, yerr=[[y - lo], [hi - y]], color=c, alpha=0.5, capsize=3, lw=1, zorder=3)
        ax.scatter(x, y, s=80, marker=ENDED_MARKERS.get(t.status, "o"), zorder=4, linewidths=1.6,
                   facecolors=c if t.beats_majority else "white", edgecolors=c)
        labels.append((_text(t.id), x, y, c))

    test_handles = _held_out_winner(ax, report, labels)

    front = sorted((t for t in scored if t.on_pareto_front), key=lambda t: (t.cost, -t.accuracy))
    if front:
        xs = [float(t.cost) for t in front]
        ys = [100 * t.accuracy for t in front]
        # A staircase: the best accuracy that at most x dollars bought.
        ax.step(xs, ys, where="post", color="black", lw=1.5, ls="-", alpha=0.8, zorder=1)
        ax.scatter(xs, ys, s=260, facecolors="none", edgecolors="black", lw=1.2, zorder=5)

    costs = [float(t.cost) for t in scored] + [float(c) for t in scored for _, _, c in t.trajectory if c is not None]
    xmax = max(costs + [0.01]) * 1.2
    # Baselines are named in the legend, not on the plot: trials often sit right on the
    # majority line, where a label would cover theirs.
    baseline_handles = []
    for row, style, name in ((report.majority, "--", "majority"), (report.zero_shot, ":", "zero-shot")):
        if row is not None and row.accuracy is not None:
            label = f"{name} ({fmt.method_and_settings(row)}) {fmt.pct(row.accuracy)}%"
            ax.axhline(100 * row.accuracy, color="0.3", ls=style, lw=1.3, zorder=1)
            baseline_handles.append(Line2D([], [], color="0.3", ls=style, lw=1.3, label=_text(label)))
    if not scored:
        ax.text(0.5, 0.5, "no trial evaluated yet", transform=ax.transAxes, ha="center", va="center", fontsize=12, color="0.4")
        ax.set_ylim(0, 100)
    unplotted = [t for t in report.trials if t not in scored]
    if unplotted:
        names = ", ".join(f"{t.id} ({t.ended})" for t in unplotted[:4]) + (" …" if len(unplotted) > 4 else "")
        ax.text(0.01, 0.01, _text(f"not shown, no evaluation: {names}"), transform=ax.transAxes, fontsize=8, color="0.35")

    ax.set_xlim(0, xmax)
    _place_labels(fig, ax, labels)
    ax.set_xlabel("cost of the trial (USD)")
    ax.set_ylabel("accuracy (%)")
    ax.grid(True, alpha=0.25)
    rows = f", {report.eval_rows:,} evaluation rows" if report.eval_rows else ""
    ax.set_title(_text(f"{report.job}: accuracy against cost ({len(report.trials)} trials{rows})"), fontsize=11, loc="left")

    handles = [Line2D([], [], color=color[m], marker="o", ls="", label=fmt.method(m)) for m in methods]
    handles += [Line2D([], [], color="0.3", marker=ENDED_MARKERS[s], ls="", mfc="white", label=label)
                for s, label in (("finished", "finished"), ("stopped_early", "stopped by ASHA"),
                                 ("stopped_by_cap", "stopped by cap"), ("failed", "failed"))
                if any(t.status == s for t in scored)]
    handles += [Line2D([], [], color="0.3", marker="o", ls="", label="filled: beats majority (p < 0.05), selection rows"),
                Line2D([], [], color="0.3", marker="o", mfc="white", ls="", label="hollow: not a significant win there"),
                Line2D([], [], color="black", lw=1.5, marker="o", mfc="none", ms=11, label="Pareto front"),
                Line2D([], [], color="0.3", alpha=0.35, marker=".", label="accuracy at each evaluation")]
    handles += test_handles + baseline_handles
    if scored:
        ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    fig.savefig(path, format="png")  # a path or an open binary file (budgetft.files.atomic_write)
    return path


def spend_over_time(report: RunReport, path: Path) -> Path:
    fig, ax = _figure()
    stamps = [parse_ts(c.ts) for c in report.charges]
    start = parse_ts(report.run.get("started") or "") or next((s for s in stamps if s), None)
    charges = [(s, c) for s, c in zip(stamps, report.charges) if s is not None]
    if charges and start is not None:
        minutes = [0.0] + [(s - start).total_seconds() / 60 for s, _ in charges]
        categories = [cat for cat in CATEGORY_COLORS if any(c.category == cat for _, c in charges)]
        categories += sorted({c.category for _, c in charges} - set(categories))
        running = {cat: Decimal(0) for cat in categories}
        series: dict[str, list[float]] = {cat: [0.0] for cat in categories}
        for _, c in charges:
            running[c.category] += c.amount
            for cat in categories:
                series[cat].append(float(running[cat]))
        ax.stackplot(minutes, [series[c] for c in categories], step="post", alpha=0.85,
                     colors=[CATEGORY_COLORS.get(c, "0.6") for c in categories],
                     labels=[_text(f"{c} {fmt.usd(running[c])}") for c in categories])
        ax.step(minutes, [0.0] + [float(c.total) for _, c in charges], where="post", color="black", lw=1.2)
        ax.set_xlim(0, max(minutes[-1] * 1.05, 1))
    else:
        ax.text(0.5, 0.5, "no charges recorded yet", transform=ax.transAxes, ha="center", va="center", fontsize=12, color="0.4")
    for amount, name, style in ((report.cap, "cap", "-"), (report.budget, "budget", "--")):
        if amount is not None and (name == "cap" or amount != report.cap):
            ax.axhline(float(amount), color="#d62728", ls=style, lw=1.5)
            ax.text(0.01, float(amount), _text(f" {name} {fmt.usd(amount)}"), transform=ax.get_yaxis_transform(),
                    va="bottom", color="#d62728", fontsize=9)
    top = max([float(x) for x in (report.cap, report.budget, report.spent) if x is not None] + [0.01])
    ax.set_ylim(0, top * 1.12)
    ax.set_xlabel("minutes since the run started")
    ax.set_ylabel("cumulative spend (USD)")
    ax.grid(True, alpha=0.25)
    against = f" of the {fmt.usd(report.cap)} cap" if report.cap is not None else ""
    ax.set_title(_text(f"{report.job}: spent {fmt.usd(report.spent)}{against} over time (run {report.status})"), fontsize=11, loc="left")
    if charges:  # legend top-down in the order the bands are stacked
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles[::-1], labels[::-1], loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                  frameon=False, title="by category", title_fontsize=8)
    fig.savefig(path, format="png")  # a path or an open binary file (budgetft.files.atomic_write)
    return path
