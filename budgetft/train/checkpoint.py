"""A trial's training state on disk, to go on from a step as if it had never stopped (issue 27).

`trials/<id>/checkpoint/` holds, written whole through budgetft.files.atomic_dir (a kill or a
full disk mid-write leaves the previous checkpoint):
- `training.pt`: the trained tensors, AdamW's state, the learning-rate scheduler's and the
  schedule's (a moved end included), the step, the examples seen, the last step planned and the
  random state (dropout draws the same masks from there);
- `weights/`: the same weights as budgetft.train.persist saves a trial's kept weights, so the
  held-out test, `predict` and `export` read a checkpoint as they read any weights.
The data order needs nothing stored: a trial's batches are one seeded stream
(budgetft.train.steps.batches), drawn once per step, so going on from step k skips k batches.

When a checkpoint is taken comes from the plan (budgetft.planner.checkpoints), priced there.

torch is imported inside the functions that use it: importing this module must stay cheap.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from budgetft.files import atomic_dir
from budgetft.planner.checkpoints import NOT_CONTINUABLE, continuable  # noqa: F401 - where callers have read them
from budgetft.scoring import class_bias
from budgetft.train.persist import save_trained

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "training.pt"
WEIGHTS_DIR = "weights"
def folder_of(trial_dir: Path) -> Path:
    return Path(trial_dir) / CHECKPOINT_DIR


def find(trial_dir: Path) -> Path | None:
    """The trial's last whole checkpoint: its folder, or the previous one that a kill between
    atomic_dir's two renames left aside; None when it has none."""
    for folder in (folder_of(trial_dir), Path(trial_dir) / f".{CHECKPOINT_DIR}.old"):
        if (folder / STATE_FILE).is_file():
            return folder
    return None


def save(trial_dir: Path, model, method_name: str, config: dict, optimizer, scheduler, schedule, *, step: int, end: int, examples: int) -> int:
    """Write the checkpoint at `step` (atomic_dir: DiskFull on a full disk, the previous kept);
    returns its size in bytes."""
    import torch

    def write(folder: Path) -> None:
        save_trained(model, method_name, config, folder / WEIGHTS_DIR)
        state = {
            "params": {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "schedule": asdict(schedule),
            "step": int(step),
            "end": int(end),
            "examples": int(examples),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        torch.save(state, folder / STATE_FILE)

    folder = atomic_dir(folder_of(trial_dir), write, "the trial's checkpoint")
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def load(folder: Path) -> dict:
    """A checkpoint's training state (training.pt), tensors on the CPU."""
    import torch

    return torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)


def restore_parameters(model, state: dict) -> None:
    """The checkpoint's trained tensors into a model the same method was just applied to (the
    verbalizer's class bias attached first when the checkpoint has one, so the loop does not
    fit it again)."""
    import torch

    params = state["params"]
    if class_bias.ATTRIBUTE in params and getattr(model, class_bias.ATTRIBUTE, None) is None:
        class_bias.attach(model, params[class_bias.ATTRIBUTE].float().numpy())
    live = dict(model.named_parameters())
    unknown = sorted(set(params) - set(live))
    if unknown:
        raise ValueError(f"the checkpoint holds tensors this trial's model does not have, e.g. {unknown[0]}: it was written for another configuration")
    with torch.no_grad():
        for name, value in params.items():
            live[name].copy_(value.to(live[name].device, live[name].dtype))
            live[name].requires_grad_(True)


def restore_training(state: dict, optimizer, scheduler, schedule, batches) -> None:
    """The optimiser, scheduler, schedule and random state of the checkpoint; the batch stream
    moved past the batches its steps drew."""
    import torch

    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    for key, value in state["schedule"].items():
        setattr(schedule, key, value)
    for _ in range(int(state["step"])):
        next(batches)
    torch.set_rng_state(state["rng"])
    if state.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
