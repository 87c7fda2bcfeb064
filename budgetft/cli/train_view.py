"""Rich views for `budgetft train`: a progress bar and the result table."""

from __future__ import annotations

from rich.console import Console, Group
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

# Imported inside functions: budgetft's domain code: `budgetft --help` loads none of it (start-up
# time).


class TrainProgress:
    def __init__(self, console: Console, total_steps: int):
        self.progress = Progress(
            TextColumn("[bold]training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[speed]} ex/s"),
            TextColumn("{task.fields[acc]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self.task_id = self.progress.add_task("train", total=total_steps, loss="–", speed="–", acc="")

    def __enter__(self) -> "TrainProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def step(self, log) -> None:
        self.progress.update(self.task_id, completed=log.step, loss=f"{log.loss:.3f}", speed=f"{log.examples_per_s:.2f}")
        if not self.progress.console.is_terminal and log.step % 10 == 0:
            # No live bar in a log file: a line every 10 steps instead.
            self.progress.console.print(f"step {log.step}: loss {log.loss:.3f}, {log.examples_per_s:.2f} examples/s")

    def evaluated(self, step: int, metrics: dict) -> None:
        self.progress.update(self.task_id, acc=f"acc {metrics['accuracy']:.1%} @ {step}")
        if not self.progress.console.is_terminal:
            lo, hi = metrics["accuracy_ci95"]
            self.progress.console.print(f"step {step}: accuracy {metrics['accuracy']:.1%} (95% CI {lo:.1%}–{hi:.1%}), balanced {metrics['balanced_accuracy']:.1%}")
        return None


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def result_table(record: dict, class_names: list[str]) -> Group:
    table = Table(title=f"{record['job']}: {record['method']} vs baselines on {record['final']['n']} evaluation rows", title_justify="left")
    for col, justify in (("run", "left"), ("acc %", "right"), ("95% CI", "right"), ("bal. acc %", "right"), ("macro-F1", "right"), ("eval loss", "right"), ("predicted " + "/".join(class_names), "right")):
        table.add_column(col, justify=justify)
    majority_acc = record["baselines"]["majority"]["accuracy"]

    def row(name: str, m: dict, style: str = "") -> None:
        lo, hi = m["accuracy_ci95"]
        share = "/".join(f"{100 * m['prediction_share'][c]:.0f}" for c in class_names)
        loss = f"{m['eval_loss']:.3f}" if "eval_loss" in m else "–"
        table.add_row(name, _pct(m["accuracy"]), f"{_pct(lo)}–{_pct(hi)}", _pct(m["balanced_accuracy"]), f"{m['macro_f1']:.3f}", loss, share, style=style)

    row(f"majority ({record['baselines']['majority']['majority_class']!r} always)", record["baselines"]["majority"], "dim")
    row("zero-shot (untuned)", record["baselines"]["zero_shot"], "dim")
    for e in record["evals"][:-1]:
        row(f"{record['method']} @ step {e['step']}", e, "dim")
    final = record["final"]
    beat = final["accuracy"] > majority_acc
    row(f"{record['method']} @ step {final['step']}", final, "bold green" if beat else "bold yellow")
    lift = 100 * (final["accuracy"] - majority_acc)
    verdict = Text(
        f"{record['method']}: {lift:+.1f} points over always answering {record['baselines']['majority']['majority_class']!r}"
        + ("" if beat else " — not better than the majority baseline"),
        style="green" if beat else "yellow",
    )
    facts = Text(
        f"{record['steps']} steps, {record['examples']:,} examples in {record['train_seconds']:.0f} s "
        f"({record['examples_per_s']:.2f} ex/s), padding {100 * record['padded_share']:.1f}% of tokens; "
        f"trainable {record['trainable_params']:,} of {record['total_params']:,} parameters "
        f"({100 * record['trainable_params'] / record['total_params']:.2f}%); wall {record['wall_seconds']:.0f} s"
    )
    parts = [table, verdict, facts]
    if record.get("class_bias"):
        from budgetft.scoring.class_bias import FIT_ROWS

        offsets = ", ".join(f"{name!r} {value:+.2f}" for name, value in record["class_bias"].items())
        parts.append(Text(
            f"class bias fitted on {FIT_ROWS} training rows before step 1 ({record['class_bias_seconds']:.0f} s): {offsets} nats",
            style="dim",
        ))
    return Group(*parts)
