"""The README run beside what a user would do instead: the textbook Hugging Face recipe for the
same task and model, given the same wall-clock seconds, scored on the same held-out test rows.

    python benchmarks/vs_trainer.py --run RUN_DIR [--seed 0]             # a finished README run
    python benchmarks/vs_trainer.py --budget 0.25 --seed 0 [--keep DIR]  # run the README command first

The recipe (what the transformers docs and the BERT paper do for a sentence-pair task):
AutoModelForSequenceClassification on the run winner's model, the question and passage as a
tokenizer pair truncated to the job's max_length, `Trainer` with AdamW at 2e-5, batch 16,
weight decay 0.01, 10% warm-up and linear decay over one epoch of the training split, the
Trainer's default precision (fp32; --bf16 for bf16 autocast). It starts when the process starts
(imports and model load count, as they do for the run) and is stopped at the seconds the run's
budget bought (cap / price), wherever its schedule stands. Then both are scored on the run's
held-out test rows: accuracy, lift over always answering the majority class, McNemar's exact
test against the majority and between the two, and the examples each saw.
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

T0 = time.time()  # the recipe's clock starts with the process, as a user's script's would
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def readme_run(budget: str, price: str, seed: int, out: Path) -> None:
    cmd = [sys.executable, "-m", "budgetft", "run", "--budget", budget, "--price-per-hour", price, "--out", str(out), "--set", f"seed={seed}"]
    subprocess.run(cmd, check=True)


def run_facts(run_dir: Path) -> dict:
    """What the comparison needs from a finished run: its job, the seconds its budget bought, the
    winner's model and per-row results on the test rows, and the examples it trained on."""
    import yaml

    info = json.loads((run_dir / "run.json").read_text())
    test = json.loads((run_dir / "test.json").read_text())
    if not test.get("winner"):
        raise SystemExit(f"{run_dir}: the run has no held-out test winner ({test.get('why')})")
    trial = json.loads((run_dir / "trials" / test["winner"] / "trial.json").read_text())
    job = yaml.safe_load((run_dir / "job.yaml").read_text())
    seconds = float(Decimal(info["cap_usd"]) * 3600 / Decimal(info["price_per_hour"]))
    return {"job": job, "seconds": seconds, "test": test, "model": test.get("model") or job["model"]["name"],
            "examples": int(trial.get("steps") or 0) * int(job["train"]["batch_size"])}


def recipe(job: dict, model_name: str, seconds: float, seed: int, bf16: bool, lr: float, batch: int) -> tuple[list[int], list[int], int, float]:
    """Train the textbook recipe until `seconds` after this process started; (predictions on the
    test rows, their labels, examples seen, seconds it trained). The rows are the run's: its
    job's splits and seed (budgetft.task.split_eval_rows)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments

    from budgetft.data.sources import load_splits
    from budgetft.models.loading import resolve_model
    from budgetft.quiet import quiet_libraries
    from budgetft.spec import label_key, validate_job
    from budgetft.task import split_eval_rows

    quiet_libraries()
    spec = validate_job(job).variant(model_name)
    splits = load_splits(spec.data, spec.seed)
    test_idx, _ = split_eval_rows(len(splits.eval), int(spec.eval.test_rows), spec.eval.limit, spec.seed)
    classes = list(spec.prompt.labels)
    field = spec.data.label_field
    location = resolve_model(spec.model).location
    tokenizer = AutoTokenizer.from_pretrained(location)
    model = AutoModelForSequenceClassification.from_pretrained(location, num_labels=len(classes))
    max_length = spec.prompt.max_length

    def encode(rows):
        enc = tokenizer([r["question"] for r in rows], [r["passage"] for r in rows], truncation="only_second", max_length=max_length)
        return [{"input_ids": ids, "attention_mask": mask, "labels": classes.index(label_key(r[field]))}
                for ids, mask, r in zip(enc["input_ids"], enc["attention_mask"], rows)]

    train = encode(splits.train)
    test_rows = [splits.eval[i] for i in test_idx]
    test = encode(test_rows)

    class Deadline(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if time.time() - T0 >= seconds:
                control.should_training_stop = True
            return control

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, learning_rate=lr, per_device_train_batch_size=batch, num_train_epochs=1, weight_decay=0.01,
                                 warmup_ratio=0.1, lr_scheduler_type="linear", logging_steps=50, save_strategy="no", report_to=[],
                                 seed=seed, bf16=bf16, use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0)
        trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=_collator(tokenizer), callbacks=[Deadline()])
        started = time.time()
        state = trainer.train()
        trained_s = time.time() - started
        examples = int(trainer.state.global_step) * batch
        _ = state
        predictions = trainer.predict(test).predictions.argmax(axis=-1).tolist()
    return predictions, [t["labels"] for t in test], examples, trained_s


def _collator(tokenizer):
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(tokenizer)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="a finished README run directory")
    parser.add_argument("--budget", default="0.25", help="without --run: run the README command at this budget first")
    parser.add_argument("--price-per-hour", default="1.00")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="where the README run goes (without --run)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for the recipe (the Trainer's default is fp32)")
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    run_dir = args.run
    if run_dir is None:
        run_dir = (args.keep or Path(tempfile.mkdtemp(prefix="budgetft-vs-trainer-"))) / f"run-{args.budget}-seed{args.seed}"
        readme_run(args.budget, args.price_per_hour, args.seed, run_dir)
        global T0
        T0 = time.time()  # the recipe's own clock starts after the run it is compared with
    facts = run_facts(run_dir)
    predictions, labels, examples, trained_s = recipe(facts["job"], facts["model"], facts["seconds"], args.seed, args.bf16, args.lr, args.batch)

    from budgetft.report.stats import mcnemar_exact

    theirs = [int(p == y) for p, y in zip(predictions, labels)]
    ours = [int(c) for c in facts["test"]["metrics"]["correct"]]
    if len(ours) != len(theirs):
        raise SystemExit(f"the run scored {len(ours)} test rows, the recipe {len(theirs)}: not the same rows")
    majority_class = max(set(labels), key=labels.count)
    majority = [int(y == majority_class) for y in labels]
    n = len(labels)
    acc = lambda v: 100 * sum(v) / n  # noqa: E731
    ours_vs_majority = mcnemar_exact(ours, majority)
    theirs_vs_majority = mcnemar_exact(theirs, majority)
    between = mcnemar_exact(ours, theirs)
    print(f"{n} held-out test rows of {run_dir}; {facts['seconds']:.0f} s each (the run's budget at its price); majority {acc(majority):.1f}%")
    print("| | accuracy % | lift over majority | McNemar p vs majority | examples seen |")
    print("|---|---:|---:|---:|---:|")
    print(f"| budgetft (`{facts['test']['winner']}`) | {acc(ours):.1f} | {acc(ours) - acc(majority):+.1f} | {ours_vs_majority.p_value:.2g} | {facts['examples']:,} |")
    print(f"| Trainer recipe (lr {args.lr:g}, batch {args.batch}, {'bf16' if args.bf16 else 'fp32'}; trained {trained_s:.0f} s) | {acc(theirs):.1f} | "
          f"{acc(theirs) - acc(majority):+.1f} | {theirs_vs_majority.p_value:.2g} | {examples:,} |")
    print(f"budgetft against the recipe: {acc(ours) - acc(theirs):+.1f} points, McNemar exact p = {between.p_value:.2g} "
          f"({between.better} rows only budgetft got right, {between.worse} only the recipe)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
