"""Training throughput: budgetft's step against a plain Hugging Face `Trainer` on the same model,
method and batch, in one run.

    python benchmarks/throughput.py [JOB] [--methods lora,last_k] [--steps 8] [--warmup 2] [--load-costs]

For each method: examples/s of budgetft's loop (its own precision choice, length-grouped
batches, the loss read at the answer position only) and of `transformers.Trainer` on the same
rows, tokenised the same way, with the answer token as the only label (the standard causal-LM
fine-tuning recipe), in fp32 (Trainer's default) and in bf16 (`bf16=True`). Both see the same
training rows in the same order of draws; the first `--warmup` steps of each are not timed.
Prints a table with the ratios. On 2 CPU cores, 8 timed LoRA steps take ~1-2 min per column.
--load-costs times instead what each trial pays to get its model: the first read from disk, then
the process's held copy (budgetft.models.cache) for every later trial.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def budgetft_rate(task, method: str, steps: int, warmup: int) -> tuple[float, str]:
    from budgetft import methods
    from budgetft.models.loading import load_model
    from budgetft.search_space import parse_space, point
    from budgetft.telemetry.precision import pick_device, precision_for
    from budgetft.train.trial import TrialSettings, run_trial

    m = methods.get(method)
    config = point(parse_space(task.job.space_for(m.name)), m.defaults)
    settings = TrialSettings.from_job(task, m.name, config, steps=steps + warmup)
    settings.eval_steps, settings.class_bias = [], "none"
    logs = []
    run_trial(task, settings, model=load_model(task.model), on_step=logs.append)
    timed = logs[warmup:]
    return len(timed) * settings.batch_size / sum(log.seconds for log in timed), precision_for(pick_device()).dtype_name


def trainer_rate(task, method: str, steps: int, warmup: int, bf16: bool) -> float:
    """A plain Trainer: the method applied as budgetft applies it (so the same parameters
    train), then Trainer's own loop over prompt + answer rows with the answer as the label."""
    import numpy as np
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from budgetft import methods
    from budgetft.methods.context import context_for
    from budgetft.models.loading import load_model
    from budgetft.search_space import parse_space, point

    m = methods.get(method)
    config = point(parse_space(task.job.space_for(m.name)), m.defaults)
    model = m.apply(load_model(task.model), config, context_for(task.job, task.tokenizer))
    rows = np.random.default_rng(task.job.seed).permutation(len(task.train))[: (steps + warmup) * task.job.train.batch_size]

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(rows)

        def __getitem__(self, i):
            r = int(rows[i])
            prompt = list(task.train.prompts[r])
            answer = task.class_tokens[int(task.train.labels[r])]
            ids = prompt + list(answer)
            return {"input_ids": ids, "labels": [-100] * len(prompt) + list(answer)}

    def collate(batch):
        width = max(len(b["input_ids"]) for b in batch)
        pad = task.pad_id
        return {
            "input_ids": torch.tensor([b["input_ids"] + [pad] * (width - len(b["input_ids"])) for b in batch]),
            "attention_mask": torch.tensor([[1] * len(b["input_ids"]) + [0] * (width - len(b["input_ids"])) for b in batch]),
            "labels": torch.tensor([b["labels"] + [-100] * (width - len(b["labels"])) for b in batch]),
        }

    marks: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            marks.append(time.perf_counter())

    args = TrainingArguments(
        output_dir=str(Path(os.environ.get("TMPDIR", "/tmp")) / "budgetft-throughput"), per_device_train_batch_size=task.job.train.batch_size,
        max_steps=steps + warmup, learning_rate=float(config.get("learning_rate", 1e-3)), report_to=[], save_strategy="no",
        logging_strategy="no", use_cpu=not torch.cuda.is_available(), bf16=bf16, dataloader_num_workers=0, seed=task.job.seed,
    )
    trainer = Trainer(model=model, args=args, train_dataset=Rows(), data_collator=collate, callbacks=[Clock()])
    trainer.train()
    timed = marks[warmup - 1:] if warmup else [marks[0], *marks]
    return (len(timed) - 1) * task.job.train.batch_size / (timed[-1] - timed[0])


def load_costs(task, method: str, trials: int = 3) -> str:
    """What a trial pays to get its model (budgetft.models.cache): the first read from disk, then
    each later trial's copy of the held model with the method applied and the weights it trains
    given storage of their own (Placement.prepare_trainable), seconds."""
    from budgetft import methods
    from budgetft.methods.context import context_for
    from budgetft.models import cache
    from budgetft.models.loading import load_model
    from budgetft.models.placement import placement_for

    m = methods.get(method)
    placement = placement_for()
    cache.release()
    seconds = []
    for _ in range(trials + 1):
        t0 = time.perf_counter()
        model = m.apply(load_model(task.model, placement), m.config(), context_for(task.job, task.tokenizer))
        placement.prepare_trainable(model)
        seconds.append(time.perf_counter() - t0)
        del model
    cache.release()
    copies = sorted(seconds[1:])
    return (f"{method}: the first trial's model {seconds[0]:.2f} s (read from disk, method applied); each later trial's "
            f"{copies[len(copies) // 2]:.3f} s (median of {trials}: a copy of the held model, method applied, trained weights copied)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("job", nargs="?", default=None)
    parser.add_argument("--methods", default="lora,last_k")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per column")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--load-costs", action="store_true", help="only time getting a trial's model: read once, then copies")
    args = parser.parse_args()
    import torch

    from budgetft.quiet import quiet_libraries
    from budgetft.spec import load_job
    from budgetft.task import prepare_task

    quiet_libraries()
    torch.set_num_threads(os.cpu_count() or 1)
    task = prepare_task(load_job(args.job, ["eval.limit=8"]))
    if args.load_costs:
        for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
            print(load_costs(task, method), flush=True)
        return 0
    print(f"{task.job.name}: {task.model.describe()}, batch {task.job.train.batch_size}, {args.steps} timed steps after {args.warmup}; "
          f"{torch.get_num_threads()} threads", flush=True)
    print("| method | budgetft ex/s (precision) | Trainer fp32 ex/s | Trainer bf16 ex/s | vs fp32 | vs bf16 |")
    print("|---|---:|---:|---:|---:|---:|")
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        ours, precision = budgetft_rate(task, method, args.steps, args.warmup)
        fp32 = trainer_rate(task, method, args.steps, args.warmup, bf16=False)
        bf16 = trainer_rate(task, method, args.steps, args.warmup, bf16=True)
        print(f"| {method} | {ours:.2f} ({precision}) | {fp32:.2f} | {bf16:.2f} | {ours / fp32:.2f}x | {ours / bf16:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
