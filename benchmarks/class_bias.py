"""Does fitting the verbalizer's class bias help? Train the same method with and without it and
score both on rows held out from the *training* split, so the job's evaluation rows are never
used to make this choice.

    python benchmarks/class_bias.py [JOB] [--method lora] [--steps 150] [--dev-rows 1000]
                                    [--set key=value ...] [--set-for-both ...]

Prints, per setting and evaluation step: accuracy, balanced accuracy, ROC AUC of the score
margin (binary jobs) and the share of "true"-class predictions, next to the dev rows' majority
accuracy. On the embedded default (2-core CPU, 150 steps, 1,000 dev rows) each setting takes
about 23 minutes.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def held_out_files(spec, dev_rows: int, folder: Path) -> list[str]:
    """Write the training split as two JSONL files: train minus dev_rows, and dev_rows."""
    from budgetft.data.sources import load_splits

    rows = list(load_splits(spec.data, spec.seed).train)
    random.Random(12345).shuffle(rows)
    if dev_rows >= len(rows) // 2:
        raise SystemExit(f"--dev-rows {dev_rows} leaves too little to train on ({len(rows)} training rows)")
    for name, part in (("train", rows[dev_rows:]), ("dev", rows[:dev_rows])):
        with open(folder / f"{name}.jsonl", "w") as f:
            for r in part:
                f.write(json.dumps(r, default=str) + "\n")
    return [
        f"data.files.{spec.data.train_split}={folder / 'train.jsonl'}",
        f"data.files.{spec.data.eval_split}={folder / 'dev.jsonl'}",
        "data.source=file",
        f"eval.limit={dev_rows}",
    ]


def roc_auc(margin: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive row has a larger margin than a random negative (ties half)."""
    pos, neg = margin[positive], margin[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def run(job: str, method: str, steps: int, overrides: list[str], class_bias: str) -> list[dict]:
    from budgetft.scoring.rows import score_rows
    from budgetft.train import trial as trial_module
    from budgetft.methods import get as get_method
    from budgetft.search_space import parse_space, point
    from budgetft.spec import load_job
    from budgetft.task import prepare_task

    spec = load_job(job, overrides + [f"train.max_steps={steps}", f"train.class_bias={class_bias}"])
    chosen = get_method(method)
    config = point(parse_space(spec.space_for(chosen.name)), chosen.defaults)
    task = prepare_task(spec)
    settings = trial_module.TrialSettings.from_job(task, chosen.name, config)
    rows: list[dict] = []
    holder: dict = {}

    def on_eval(step: int, metrics: dict) -> None:
        scores = score_rows(holder["model"], task, task.eval, batch_size=settings.eval_batch_size)
        labels = task.eval.labels
        auc = roc_auc(scores[:, 0] - scores[:, 1], labels == 0) if scores.shape[1] == 2 else float("nan")
        rows.append({
            "class_bias": class_bias, "step": step, "accuracy": metrics["accuracy"],
            "balanced_accuracy": metrics["balanced_accuracy"], "auc": auc,
            "first_class_share": float(np.mean(scores.argmax(1) == 0)),
            "majority": float(np.mean(labels == task.majority_class)),
        })
        print(f"  class_bias={class_bias} step {step}: acc {metrics['accuracy']:.3f}", flush=True)

    trial_module.run_trial(task, settings, on_eval=on_eval, on_model=lambda m: holder.update(model=m))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("job", nargs="?", default=str(ROOT / "jobs" / "boolq-smollm2.yaml"))
    parser.add_argument("--method", default="lora")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--dev-rows", type=int, default=1000)
    parser.add_argument("--set", dest="sets", action="append", default=[], help="job override, e.g. train.eval_every=75")
    args = parser.parse_args()

    from budgetft.spec import load_job

    spec = load_job(args.job, args.sets)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        overrides = args.sets + held_out_files(spec, args.dev_rows, Path(tmp))
        for setting in ("none", "fit"):
            results += run(args.job, args.method, args.steps, overrides, setting)
    print(f"\n{args.method}, {args.steps} steps, {args.dev_rows} rows held out from the training split")
    print(f"{'class_bias':>10} {'step':>5} {'acc %':>6} {'bal %':>6} {'AUC':>6} {'first class %':>14} {'majority %':>11}")
    for r in results:
        print(
            f"{r['class_bias']:>10} {r['step']:>5} {100 * r['accuracy']:6.1f} {100 * r['balanced_accuracy']:6.1f} "
            f"{r['auc']:6.3f} {100 * r['first_class_share']:14.1f} {100 * r['majority']:11.1f}"
        )


if __name__ == "__main__":
    main()
