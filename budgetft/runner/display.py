"""The live view of a run: spend against the cap, the stage, trials and the best accuracy
so far against the majority baseline. Rendered by rich, refreshed twice a second.

Without a terminal (a log file, a pipe, a cloud VM's console) nothing can be redrawn: the run
prints a plain line at each trial event and, every PROGRESS_EVERY_S, one progress line (stage,
each running trial's step and examples a second, the spend, the best accuracy so far), so a
log shows a quarter-hour trial moving instead of nothing between "started" and "finished".
"""

from __future__ import annotations

import threading

from rich.markup import escape
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from budgetft.money.usd import seconds_to_usd
from budgetft.runner.summary import results_table
from budgetft.telemetry.summary import live_text


PROGRESS_EVERY_S = 30.0  # between plain progress lines when there is no terminal to redraw


class RunDisplay:
    def __init__(self, run, live: bool = True, progress_every_s: float = PROGRESS_EVERY_S):
        self.r = run
        self.console = run.console
        self.live = Live(self, console=self.console, refresh_per_second=2, transient=True) if live else None
        self.lines: list[str] = []
        self.progress_every_s = progress_every_s
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self):
        if self.live:
            self.live.__enter__()
        else:
            self._stop.clear()
            self._ticker = threading.Thread(target=self._tick, name="budgetft-progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc):
        if self.live:
            self.live.__exit__(*exc)
        if self._ticker is not None:
            self._stop.set()
            self._ticker.join(timeout=5)
            self._ticker = None

    def _tick(self) -> None:
        while not self._stop.wait(self.progress_every_s):
            try:
                self.console.print(self.progress_line(), highlight=False, markup=False)
            except Exception:  # noqa: BLE001 - a progress line is never worth a failed run
                pass

    def progress_line(self) -> str:
        """One plain line: the stage, each running trial's step (of its last) and examples a
        second, the spend against the cap, and the best accuracy so far against the majority."""
        r = self.r
        parts = [f"{r.meter.stage}" if r.meter is not None else "starting"]
        for trial_id in sorted(r.tuning.running) if r.tuning is not None else ():
            trial = r.run.trial(trial_id)
            if trial is None:
                continue
            end = (trial.end_moved or {}).get("to") or trial.max_steps
            speed = f", {trial.examples_per_s:.1f} examples/s" if trial.examples_per_s else ""
            parts.append(f"{trial_id}: step {trial.steps} of {end}{speed}")
        if r.ledger is not None:
            parts.append(f"spent ${r.ledger.spent:.4f} of ${r.ledger.cap}")
        if r.tracker is not None and r.tracker.best:
            acc, best_id = r.tracker.best
            majority = r.run.baselines().get("majority")
            parts.append(f"best {100 * acc:.1f}% ({best_id})" + (f" vs majority {100 * majority['accuracy']:.1f}%" if majority else ""))
        return "progress: " + "; ".join(parts)

    def refresh(self, event: str | None = None) -> None:
        """Redraw the live view; without a terminal (a log file, a cloud VM's console), print
        each trial event as a plain line with the spend so far."""
        if self.live:
            self.live.refresh()
        elif event:
            r = self.r
            best = ""
            if r.tracker is not None and r.tracker.best:
                best = f"; best {100 * r.tracker.best[0]:.1f}%"
                majority = r.run.baselines().get("majority")
                if majority:
                    best += f" vs majority {100 * majority['accuracy']:.1f}%"
            self.console.print(f"{event}  [spent ${r.ledger.spent:.4f} of ${r.ledger.cap}{best}]", highlight=False, markup=False)

    def note(self, line: str) -> None:
        self.console.print(line)

    def __rich__(self):
        r = self.r
        spent, cap = r.ledger.spent, r.ledger.cap
        bar = ProgressBar(total=float(cap), completed=float(min(spent, cap)), width=40)
        head = Table.grid(padding=(0, 1))
        head.add_row(Text("spend", style="bold"), bar, Text(f"${spent:.4f} of ${cap}  ({r.meter.stage})"))
        rows = [head]
        sampler = getattr(r, "sampler", None)
        if sampler is not None and sampler.latest():
            rows.append(Text(live_text(sampler.latest()), style="dim"))
        baselines = r.run.baselines()
        if r.tracker is not None:
            trials = r.run.trials()
            counts: dict[str, int] = {}
            for t in trials:
                counts[t["status"]] = counts.get(t["status"], 0) + 1
            rows.append(Text("trials: " + ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in sorted(counts.items())) or "trials: starting"))
            if r.tracker.best:
                acc, tid = r.tracker.best
                line = f"best accuracy {100 * acc:.1f}% ({tid})"
                if baselines.get("majority"):
                    line += f" vs majority {100 * baselines['majority']['accuracy']:.1f}%"
                rows.append(Text(line, style="green" if baselines and acc > baselines["majority"]["accuracy"] else "yellow"))
        return Panel(Group(*rows), title=f"budgetft run {r.run.root.name}", title_align="left")

    def show_plan(self, plan, trials: list[dict]) -> None:
        self.console.print(plan_table(plan, len(trials)))
        packing = self.r.packing_decision()
        if packing:
            self.console.print(f"packing: {packing['reason']}", highlight=False)

    def final(self, written: list) -> None:
        self.console.print(results_table(self.r.run))
        if written:
            self.console.print("report: " + ", ".join(str(p) for p in written))
        self.console.print(f"ledger total: ${self.r.ledger.spent} of the ${self.r.ledger.cap} cap ({self.r.run.ledger})")
        test = self.r.run.test() if self.r.run.test_json.exists() else None
        if test and test.get("winner") and (test.get("missing") or not test.get("metrics")):
            self.console.print(f"[bold yellow]{escape(test.get('missing') or 'the held-out test is missing')}[/]", highlight=False)


def plan_table(plan, n_trials: int | None = None) -> Group:
    table = Table(title="plan", title_justify="left")
    for col in ("method", "trials", "max steps", "rungs (steps)", "expected", "worst case"):
        table.add_column(col, justify="left" if col in ("method", "rungs (steps)") else "right")

    for m in plan.methods:
        table.add_row(
            m.method,
            str(m.trials),
            str(m.max_steps),
            ", ".join(map(str, m.rungs)) or "–",
            f"${seconds_to_usd(m.expected_seconds / plan.concurrency, plan.usd_per_hour)}",
            f"${seconds_to_usd(m.worst_seconds / plan.concurrency, plan.usd_per_hour)}",
        )
    lines = [
        table,
        Text(
            f"price ${plan.usd_per_hour}/h; cap ${plan.cap_usd}, already spent ${plan.spent_usd}; "
            f"ASHA reduction factor {plan.reduction_factor}, {plan.concurrency} trial(s) at a time"
        ),
        Text(
            f"expected spend ${plan.expected_usd}; worst case if ASHA stops nothing ${plan.worst_case_usd}, "
            f"but training stops before the cap: ${plan.reserve_usd} is reserved for the report and shutdown"
        ),
    ]
    if plan.words:
        lines.append(Text(plan.words))
    if plan.forecast:
        f = plan.forecast
        double = f.get("double_budget_lift_points")
        lines.append(Text(
            f"forecast: {f['lift_points']:+.1f} points over the majority answer on held-out rows "
            f"({100 * f.get('coverage', 0.8):.0f}% range {f['low_points']:+.1f} to {f['high_points']:+.1f}; {f['basis']})"
            + (f"; double the budget: {double:+.1f}" if double is not None else "")
        ))
        parts = f.get("sd_parts") or {}
        if parts:
            words = {"seed": "the seed", "prior": "the curve's own error", "test_rows": "the test rows", "pace": "this machine's pace"}
            lines.append(Text("  the range: " + ", ".join(f"±{v:.1f} from {words.get(k, k)}" for k, v in parts.items())
                              + (f"; the curve moved {f['bias_points']:+.1f} points by this machine's earlier runs" if f.get("bias_points") else "")))
    for method, why in plan.dropped.items():
        lines.append(Text(f"{method}: no trials ({why})", style="yellow"))
    return Group(*lines)
