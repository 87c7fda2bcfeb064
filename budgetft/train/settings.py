"""What one trial is asked to do (TrialSettings) and what it reports (StepLog per step,
TrialResult at its end). budgetft.train.trial runs it."""

from __future__ import annotations

from dataclasses import dataclass, field

from budgetft import methods
from budgetft.task import Task


@dataclass
class TrialSettings:
    method: str
    config: dict
    steps: int
    batch_size: int = 8
    micro_batch_size: int | None = None
    warmup_ratio: float = 0.06
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    eval_every: int = 50
    eval_batch_size: int = 16
    seed: int = 0
    # Evaluate at exactly these steps (e.g. ASHA's rungs); None: every eval_every and the last.
    eval_steps: list[int] | None = None
    loss: str = "classes"  # see TrainSpec.loss
    class_bias: str = "fit"  # see TrainSpec.class_bias
    reuse_frozen_layers: bool = True  # see TrainSpec.reuse_frozen_layers
    dropout: float | None = None  # see TrainSpec.dropout
    # Where frozen blocks' states are shared between the trials of a run (None: this trial only).
    frozen_states: str | None = None
    # Activation checkpointing: each block's activations recomputed in the backward pass (see
    # TrainSpec.gradient_checkpointing; "auto" is decided by the memory plan, which sets this).
    checkpointing: bool = False

    def is_eval_step(self, step: int) -> bool:
        if self.eval_steps is not None:
            return step in self.eval_steps
        return step % self.eval_every == 0 or step == self.steps

    @classmethod
    def from_job(cls, task: Task, method: str, config: dict, steps: int | None = None) -> "TrialSettings":
        t = task.job.train
        methods.check_supports(method, task.model.architecture)
        return cls(
            method=methods.get(method).name,
            config=config,
            steps=steps or t.max_steps,
            batch_size=t.batch_size,
            micro_batch_size=t.micro_batch_size,
            warmup_ratio=t.warmup_ratio,
            weight_decay=t.weight_decay,
            max_grad_norm=t.max_grad_norm,
            eval_every=t.eval_every,
            eval_batch_size=task.job.eval.batch_size,
            seed=task.job.seed,
            loss=t.loss,
            class_bias=t.class_bias,
            reuse_frozen_layers=t.reuse_frozen_layers,
            dropout=t.dropout,
            checkpointing=t.gradient_checkpointing == "true",
        )


@dataclass
class StepLog:
    step: int
    loss: float  # mean label-token NLL of this step's batch, nats
    examples_per_s: float  # over the trial so far
    lr: float
    seconds: float = 0.0  # wall-clock of this step
    tokens: int = 0  # tokens processed in this step, padding included


@dataclass
class TrialResult:
    method: str
    config: dict
    steps: int
    examples: int
    trainable_params: int
    total_params: int
    train_seconds: float
    eval_seconds: float
    examples_per_s: float
    padded_share: float  # share of processed tokens that were padding
    losses: list[tuple[int, float]] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    stop_reason: str = ""
    precision: dict = field(default_factory=dict)
    class_bias: list[float] | None = None  # the fitted per-class bias before training, nats
    class_bias_seconds: float = 0.0  # what fitting it took
    # Frozen blocks served from stored states (budgetft.train.frozen_prefix): the lowest
    # trained block, and how many rows' states this trial computed and how many it reused.
    frozen_prefix: dict | None = None
    # iPET: what labelling rows for each later generation did (budgetft.scoring.pseudo_labels:
    # rows scored and added, chunks, seconds), and the seconds it took in all (not training's).
    pseudo_labels: list[dict] = field(default_factory=list)
    labelling_seconds: float = 0.0
    # Where its weights lived (budgetft.models.placement), whether activations were
    # checkpointed, and what out of memory made smaller: {"placement", "checkpointing",
    # "shrunk": [{"what": "micro-batch" | "evaluation batch" | "class-bias batch", "at", "from", "to"}]}.
    memory: dict = field(default_factory=dict)

    @property
    def final(self) -> dict:
        return self.evals[-1] if self.evals else {}
