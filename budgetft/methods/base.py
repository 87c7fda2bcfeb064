"""What every fine-tuning method declares. One module per method fills in a `Method`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

# Architectures a method can declare. "decoder": a causal LM scored by its label words'
# log-probabilities (budgetft.scoring.verbalizer). "encoder": a bidirectional encoder with a
# sequence-classification head (e.g. BertForSequenceClassification), scored by the head's logits.
from budgetft.methods.context import ApplyContext  # noqa: F401 - what apply() receives
from budgetft.methods.counting import count_params
from budgetft.models.architecture import ARCHITECTURES, DECODER, ENCODER

# Hyperparameters every method accepts on top of its own: the optimiser's learning rate.
COMMON_DEFAULTS = {"learning_rate": 1e-3}
# Task types, in the words of the scoring path each architecture uses.
VERBALIZER, CLASSIFICATION_HEAD = "verbalizer", "classification_head"
TASK_TYPE_OF = {DECODER: VERBALIZER, ENCODER: CLASSIFICATION_HEAD}


@dataclass(frozen=True)
class Phase:
    """One part of a multi-phase method's trial (budgetft.methods.phased): a registered
    single-phase method, its configuration, and its share of the trial's steps."""

    method: str
    config: dict[str, Any]
    share: float
    # The prompt pattern whose encoding of the training rows this phase trains on: 0 is the
    # job's prompt.template, k its prompt.patterns[k - 1] (PET: one phase per pattern).
    pattern: int = 0
    # A name for an adapter of this phase's own, added beside the earlier phases' adapters
    # instead of training on from them; the phases' adapters are then the members of an ensemble
    # (budgetft.scoring.ensemble), scored by the mean of their class scores. None: the phase
    # trains the model as the earlier phases left it.
    adapter: str | None = None
    # Self-training (iPET): the generation of the ensemble this phase's adapter belongs to. When
    # a later generation's first phase starts, the ensemble the earlier one left labels rows of
    # the job's unlabelled split (budgetft.scoring.pseudo_labels), the generation's phases train
    # on the trial's training rows plus those, and its adapters replace the earlier ones.
    generation: int = 0
    # How many rows that labelling adds, as a multiple of the trial's training rows (0: none).
    pseudo_labels: float = 0.0


class MethodUnsupported(ValueError):
    """A method asked for where it cannot run: on an architecture it does not support, or on a
    job without the prompt patterns it trains on; the message names both and the fix."""


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    # Every parameter the method understands, with the value a single trial uses by default.
    defaults: dict[str, Any]
    # The search space used when a job lists the method without one (YAML form, see search_space).
    # Ranges chosen for small budgets: a few hundred steps at batch size 8.
    default_space: dict[str, Any]
    # apply(model, config, context) -> model with only the method's parameters trainable.
    apply: Callable[..., Any]
    uses_peft: bool = True
    notes: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)
    architectures: tuple[str, ...] = ARCHITECTURES
    # Optional replacement for backward + AdamW in the trial loop (MeZO):
    #   train_step(model, params, batch_loss, lr, config) -> (loss, tokens, padding tokens)
    # where batch_loss() runs the forward passes of one batch with no backward pass and
    # returns the same tuple (train_step runs it under torch.no_grad). The trial's warm-up and
    # decay schedule supplies `lr`; its AdamW is never stepped, so it allocates no state.
    train_step: Callable[..., Any] | None = None
    # Optional call after each optimiser step, before gradients are cleared:
    #   after_step(model, step, total_steps). AdaLoRA reallocates its ranks here.
    after_step: Callable[..., Any] | None = None
    # Passes per optimiser step, for a planner's estimate before calibration: MeZO runs two
    # forward passes and no backward pass (memory close to inference).
    forward_passes: int = 1
    backward: bool = True
    # Optional: a trial of this method runs these phases in order, each its own method with its
    # own configuration, optimiser and learning-rate schedule over its share of the steps, on
    # the one model and batch stream, under the trial's one budget (MeZO, then the top k blocks):
    #   phases(config) -> [Phase, ...]
    phases: Callable[[dict[str, Any]], list[Phase]] | None = None
    # The base model's weights stored quantized for this method (QLoRA's "nf4": budgetft.models.
    # placement); None: in the run's weight dtype.
    quantization: str | None = None

    @property
    def params(self) -> set[str]:
        return set(self.defaults)

    @property
    def task_types(self) -> tuple[str, ...]:
        return tuple(TASK_TYPE_OF[a] for a in self.architectures)

    @property
    def saves_as(self) -> str:
        """How persist.save_trained writes it: a peft adapter directory or our trainable tensors."""
        return "peft adapter" if self.uses_peft else "trainable tensors"

    def supports(self, architecture: str) -> bool:
        return architecture in self.architectures


    def config(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        config = dict(self.defaults)
        for key, value in (overrides or {}).items():
            if key not in config:
                raise ValueError(
                    f"method {self.name!r} has no parameter {key!r}; "
                    f"valid: {', '.join(sorted(config))}"
                )
            config[key] = value
        return config

    def count_params(self, model_or_config: Any, overrides: dict[str, Any] | None = None) -> tuple[int, int]:
        """(trainable, total) parameters once the method is applied with its defaults (plus
        overrides). Given a model, a deep copy is used; given a transformers config, the model
        is built on the meta device, which holds no weights and takes milliseconds."""
        return count_params(self, model_or_config, overrides)
