"""How long all-MiniLM-L6-v2 sits on BoolQ's majority answer before it learns, under variants of
the default job's first trial (issue 13: the README runs that "stalled").

Like curves.py it never reads the job's evaluation split: it trains on BoolQ's training split
less 400 held-out rows (the same rows as curves.py) and scores those rows at a few steps, printing
the mean training loss of every 50 steps beside. A variant changes one thing about the trial:

    base       the default job's first trial (full fine-tuning, lr 5e-5, linear decay; --method picks
               another method at its first-trial configuration)
    lr=X       another learning rate
    sep        the question and passage joined by the tokenizer's [SEP] ("{question}? [SEP] {passage}")
    mean_pool  the classification head reads the mean of the token states (how all-MiniLM-L6-v2 was
               trained: its 1_Pooling config) instead of the [CLS] pooler
    reinit     the top block and the pooler drawn afresh (Zhang et al., ICLR 2021)
    wsd        warm-up, a constant rate, then linear decay over the last 20% (warmup-stable-decay)
    no_dropout every dropout off
    fp32       no bf16 autocast
    lpft[=N]   linear probe, then fine-tune (Kumar et al., ICLR 2022): before step 1 the head is
               fitted by logistic regression on the frozen model's pooled features of N training
               rows (default 1024), so the encoder's first gradients come through a head that
               already reads something, not a near-zero random one
    lpft_mean[=N]  the same on the mean_pool head
    head_lr=M  the freshly drawn classification head (and the pooler it reads) trains at M times
               the encoder's rate: its near-zero start (std 0.02) moves ~lr a step under AdamW, and
               the gradient the encoder receives passes through it

    .venv/bin/python benchmarks/plateau.py --seed 4 --variants base,mean_pool --stop 400

Minutes: ~4 per variant to step 400, ~8 to 780, on a 2-core CPU. The patches below are this
script's own (a research probe), not options of the tool.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
HELD_OUT_ROWS = 400  # as curves.py's MiniLM option
WSD_DECAY = 0.2  # the decay's share of the steps


def _patch_wsd() -> None:
    from budgetft.train.schedule import Schedule

    def factor(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        return min(1.0, max(0.0, (self.total - step) / max(1, round(WSD_DECAY * self.total))))

    Schedule.factor = factor


def _mean_pooling(model) -> None:
    """Replace the BERT pooler by a masked mean of the last token states (the attention mask is
    caught by a pre-hook on the encoder, since BertModel hands its pooler the states alone)."""
    import torch

    bert = model.bert

    class MeanPool(torch.nn.Module):
        mask = None

        def forward(self, states):
            m = self.mask.unsqueeze(-1).to(states.dtype)
            return (states * m).sum(1) / m.sum(1).clamp(min=1)

    pool = MeanPool()
    bert.register_forward_pre_hook(lambda mod, args, kwargs: setattr(pool, "mask", kwargs.get("attention_mask")), with_kwargs=True)
    bert.pooler = pool


def _linear_probe(model, task, rows: int, seed: int) -> None:
    """Fit the classifier (the Linear after the pooler) by L2-regularised logistic regression on
    the frozen model's pooled features of `rows` training rows; print its cost and accuracy on
    the held-out rows."""
    import numpy as np
    import torch

    from budgetft.data.batching import pad_right, sorted_batches

    def features(encoded, idx):
        out = []
        prompts = [encoded.prompts[i] for i in idx]
        lengths = np.array([len(p) for p in prompts])
        model.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            for b in sorted_batches(lengths, 64):
                ids, mask = pad_right([prompts[i] for i in b], task.pad_id)
                pooled = model.bert(input_ids=ids, attention_mask=mask).pooler_output
                out.append((b, pooled.float()))
        feats = torch.zeros(len(idx), out[0][1].shape[1])
        for b, f in out:
            feats[torch.as_tensor(b)] = f
        return feats

    t0 = time.perf_counter()
    idx = np.random.default_rng(seed).permutation(len(task.train))[:rows]
    x = features(task.train, idx)
    y = torch.as_tensor(task.train.labels[idx], dtype=torch.long)
    t_feat = time.perf_counter() - t0
    head = model.classifier
    w = torch.zeros_like(head.weight, requires_grad=True)
    b = torch.zeros_like(head.bias, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")
    l2 = 1e-3  # per row, on the weights (not the bias)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w.T + b, y) + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        head.weight.copy_(w)
        head.bias.copy_(b)
        train_acc = float(((x @ w.T + b).argmax(1) == y).float().mean())
    xe = features(task.eval, np.arange(len(task.eval)))
    with torch.no_grad():
        eval_acc = float(((xe @ w.T + b).argmax(1) == torch.as_tensor(task.eval.labels)).float().mean())
    model.train()
    print(f"  probe on {rows} rows: features {t_feat:.0f} s, fit+held-out {time.perf_counter() - t0 - t_feat:.0f} s; "
          f"accuracy training rows {100 * train_acc:.2f}%, held-out {100 * eval_acc:.2f}%, |w| {float(w.norm()):.2f}", flush=True)


def _patch_head_lr(lr: float, multiple: float) -> None:
    """AdamW's groups: the head (classifier and pooler) at `multiple` times the trial's rate `lr`."""
    from budgetft.train import steps

    plain = steps.param_groups

    def groups(model, params):
        head = {id(p) for n, p in model.named_parameters() if n.startswith(("classifier.", "bert.pooler."))}
        base = plain(model, [p for p in params if id(p) not in head])
        base = base if base and isinstance(base[0], dict) else [{"params": base}]
        return [*base, {"params": [p for p in params if id(p) in head], "lr": lr * multiple}]

    steps.param_groups = groups


def run_variant(variant: str, seed: int, steps: int, stop: int, method: str = "full") -> None:
    """One variant in this process (called in a child per variant: the patches are global)."""
    import torch

    from budgetft.planner.configs import trial_configs
    from budgetft.quiet import quiet_libraries
    from budgetft.scoring.baselines import majority_baseline
    from budgetft.spec import load_job
    from budgetft.task import prepare_task
    from budgetft.train.trial import TrialSettings, run_trial
    from curves import held_out_job

    quiet_libraries()
    if variant == "fp32":
        os.environ["BUDGETFT_PRECISION"] = "fp32"
    if variant == "wsd":
        _patch_wsd()
    with tempfile.TemporaryDirectory() as tmp:
        job = held_out_job(load_job("boolq-smollm2"), MODEL, HELD_OUT_ROWS, Path(tmp)).model_copy(update={"seed": seed})
        if variant == "sep":
            job = job.model_copy(update={"prompt": job.prompt.model_copy(update={"template": "{question}? [SEP] {passage}"})})
        task = prepare_task(job)
        config = trial_configs(job.space_for(method), method, 1, seed)[0]
        if variant.startswith("lr="):
            config["learning_rate"] = float(variant[3:])
        if variant.startswith("head_lr="):
            _patch_head_lr(float(config["learning_rate"]), float(variant.split("=")[1]))
        settings = TrialSettings.from_job(task, method, config, steps=steps)
        settings.eval_steps = sorted({s for s in (100, 200, 300, 400, 600, steps) if s <= stop})
        majority = majority_baseline(task)["accuracy"]
        losses: list[float] = []
        t0 = time.perf_counter()

        def on_model(model) -> None:
            if variant == "no_dropout":
                for module in model.modules():
                    if isinstance(module, torch.nn.Dropout):
                        module.p = 0.0
            if variant == "reinit":
                torch.manual_seed(seed)
                model.bert.encoder.layer[-1].apply(model._init_weights)
                model.bert.pooler.apply(model._init_weights)
            if variant.split("=")[0] in ("mean_pool", "lpft_mean"):
                _mean_pooling(model)
            if variant.startswith("lpft"):
                _linear_probe(model, task, int(variant.split("=")[1]) if "=" in variant else 1024, seed)

        def on_step(log) -> None:
            losses.append(log.loss)
            if len(losses) % 50 == 0:
                print(f"  {variant} seed {seed}: step {len(losses):4d} training loss (last 50) {statistics.mean(losses[-50:]):.4f}, "
                      f"lr {log.lr:.2e}, {time.perf_counter() - t0:.0f} s", flush=True)

        def on_eval(step: int, metrics: dict) -> bool:
            false = metrics.get("prediction_share", {}).get("false", 0.0)
            print(f"RESULT {method} {variant} seed {seed} step {step} accuracy {100 * metrics['accuracy']:.2f}% "
                  f"majority {100 * majority:.2f}% lift {100 * (metrics['accuracy'] - majority):+.2f} answers 'false' {100 * false:.1f}%", flush=True)
            return step >= stop

        print(f"{variant} seed {seed}: {method} {config}, {steps} steps (stop at {stop})", flush=True)
        run_trial(task, settings, on_step=on_step, on_eval=on_eval, on_model=on_model)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--method", default="full", help="the trial's method (its first-trial configuration)")
    parser.add_argument("--steps", type=int, default=780, help="the schedule's length (the README trial's, about)")
    parser.add_argument("--stop", type=int, help="stop after the evaluation at this step (default: --steps)")
    parser.add_argument("--variants", default="base,sep,mean_pool,reinit,wsd,no_dropout,lr=1e-4")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child's variant
    args = parser.parse_args()
    stop = args.stop or args.steps
    if args.one:
        run_variant(args.one, args.seed, args.steps, stop, args.method)
        return 0
    results = []
    for variant in args.variants.split(","):
        cmd = [sys.executable, __file__, "--one", variant, "--seed", str(args.seed), "--steps", str(args.steps), "--stop", str(stop), "--method", args.method]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        print("\n".join(lines), flush=True)
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
        results += [line for line in lines if line.startswith("RESULT")]
    print("\nsummary:")
    print("\n".join(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
