"""The job spec's fields: one pydantic model (JobSpec) and its sections, each field checked
where it is declared. Unknown keys are errors that name the key; every error names the field
and the fix. Loading a job from YAML with `--set` overrides is budgetft.spec.load."""

from __future__ import annotations

import string
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from budgetft import methods as method_registry
from budgetft.search_space import parse_space

class JobError(ValueError):
    """A job spec that cannot run. The message names the field and how to fix it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSpec(_Strict):
    # A hub id (e.g. HuggingFaceTB/SmolLM2-135M-Instruct) or a local directory.
    name: str
    # auto: a local directory if it exists, else the hub when reachable, else an embedded copy.
    source: Literal["auto", "hub", "local", "embedded"] = "auto"
    revision: str | None = None
    # decoder: a causal LM scored by its label words (the verbalizer); encoder: a model given a
    # sequence-classification head with one output per class. auto: read from its config.
    architecture: Literal["auto", "decoder", "encoder"] = "auto"


class DataSpec(_Strict):
    # A hub data set (google/boolq), or a local .jsonl/.json/.csv/.parquet file.
    name: str
    source: Literal["auto", "hub", "file", "embedded"] = "auto"
    # Split name -> file, for local data in several files. A single file in `name` is the
    # train split, and `eval_fraction` of it is held out for evaluation.
    files: dict[str, str] | None = None
    subset: str | None = None  # hub configuration name, e.g. "boolq" of super_glue
    train_split: str = "train"
    eval_split: str = "validation"
    eval_fraction: float = Field(0.2, gt=0, lt=1)
    label_field: str = "label"
    # A split of rows whose labels are not read (BoolQ's test split: 3,245 rows), for a method that
    # labels rows itself (iPET: budgetft.methods.ipet); None: no such rows. Never the evaluation
    # split (its rows are the selection and held-out test rows) nor the train split.
    unlabelled_split: str | None = None

    @model_validator(mode="after")
    def _unlabelled_apart(self) -> "DataSpec":
        if self.unlabelled_split is not None and self.unlabelled_split in (self.eval_split, self.train_split):
            which = "evaluation" if self.unlabelled_split == self.eval_split else "train"
            raise ValueError(
                f"unlabelled_split {self.unlabelled_split!r} is the {which} split; name a split of other rows "
                "(e.g. BoolQ's test split), since a method labels these rows itself and trains on them"
            )
        return self


class PromptSpec(_Strict):
    # Python format string over the data's text fields, e.g. "{passage}\nQuestion: {question}?\nAnswer:"
    template: str
    # The verbalizer: class label (as it appears in the data) -> the word(s) that answer it.
    # Booleans in the data are matched as "true"/"false".
    labels: dict[str, str]
    # The field shortened when a row does not fit in max_length (the question, template and
    # answer slot are always kept whole).
    truncate_field: str | None = None
    max_length: int = Field(256, ge=8, le=32768)
    # Text used to initialise soft prompts (prompt tuning); default: the template's fixed words.
    init_text: str | None = None
    # More prompt patterns: format strings over the data's fields, each another wording of the
    # same question, answered by the same label words (PET, budgetft.methods.pet, trains one
    # adapter per pattern and scores by their ensemble). The template is pattern 0, these follow.
    patterns: list[str] = Field(default_factory=list)

    @field_validator("labels", mode="before")
    @classmethod
    def _label_keys_as_text(cls, value: Any) -> Any:
        # YAML reads `true:`/`1:` keys as bool/int; the data's labels are matched as text.
        if isinstance(value, dict):
            return {label_key(k): v for k, v in value.items()}
        return value

    @field_validator("labels")
    @classmethod
    def _two_classes(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) < 2:
            raise ValueError(f"needs two or more classes, got {len(value)}: {list(value)}")
        for key, words in value.items():
            if not words.strip():
                raise ValueError(f"class {key!r} has an empty label word")
        return value

    @property
    def templates(self) -> list[str]:
        """Every prompt pattern, the template first."""
        return [self.template, *self.patterns]

    @property
    def fields(self) -> list[str]:
        """The data fields any pattern uses (the template's first): what every row must have."""
        out: list[str] = []
        for i, template in enumerate(self.templates):
            out += [f for f in template_fields(template, pattern_name(i)) if f not in out]
        return out

    @model_validator(mode="after")
    def _template_ok(self) -> "PromptSpec":
        for i, template in enumerate(self.templates):
            fields, name = template_fields(template, pattern_name(i)), pattern_name(i)
            if not fields:
                raise ValueError(f"{name} uses no data field; write fields as {{field_name}}")
            # Every pattern must be shortened the same way when a row does not fit.
            if self.truncate_field is not None and self.truncate_field not in fields:
                raise ValueError(f"truncate_field {self.truncate_field!r} is not in {name}'s fields {fields}")
            if i and template in self.templates[:i]:
                raise ValueError(f"{name} repeats an earlier pattern; each pattern is another wording of the prompt")
        return self


class TrainSpec(_Strict):
    # classes: cross-entropy over the classes' label-word scores (what the verbalizer decides);
    # lm: the gold label word's next-token loss over the whole vocabulary.
    loss: Literal["classes", "lm"] = "classes"
    batch_size: int = Field(8, ge=1)
    # Rows per forward pass; smaller than batch_size means gradient accumulation. None: the
    # whole batch, halved automatically if it does not fit in GPU memory.
    micro_batch_size: int | None = Field(None, ge=1)
    max_steps: int = Field(200, ge=1)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    eval_every: int = Field(50, ge=1)  # optimiser steps between evaluations
    train_limit: int | None = Field(None, ge=1)  # use at most this many training rows
    # fit: before training, fit a per-class bias on the verbalizer's scores to training rows,
    # then train it with the method (see budgetft.scoring.class_bias); none: the raw label-word scores.
    class_bias: Literal["fit", "none"] = "fit"
    # Methods whose trained parts all sit above frozen blocks (last_k), or read them from beside
    # (LST's side network), compute the frozen blocks once per row and reuse the result in every
    # step, evaluation and trial of the run (budgetft.train.frozen_prefix); false: every
    # forward runs every block.
    reuse_frozen_layers: bool = True
    # Every dropout probability of the model while it trains (budgetft.models.dropout); None:
    # the model's own (e.g. all-MiniLM-L6-v2's 0.1). A method's own dropout (LoRA's) is its setting.
    dropout: float | None = Field(None, ge=0, lt=1)
    # Activation checkpointing: each block keeps only its input and recomputes the rest in the
    # backward pass (~1/3 more compute, a fraction of the activations' memory). auto: where the
    # memory plan needs it to fit the micro-batch on the GPU (budgetft.planner.memory_plan).
    gradient_checkpointing: Literal["auto", "true", "false"] = "auto"

    @field_validator("gradient_checkpointing", mode="before")
    @classmethod
    def _checkpointing_words(cls, value: Any) -> Any:
        return {True: "true", False: "false"}.get(value, value) if isinstance(value, bool) else value


class EvalSpec(_Strict):
    # The evaluation split is cut, with the seed, into test rows that no decision sees (the
    # report's headline: the winner and the baselines are scored on them once, at the end) and
    # selection rows (what trials are evaluated on: ASHA's rung decisions and the choice of the
    # winner). test_rows: a number, "auto" (a run sizes it from its budget: budgetft.planner.
    # split), or 0 for no held-out test (the selection rows are then all there is).
    test_rows: Annotated[int, Field(ge=0)] | Literal["auto"] = 0
    limit: int | None = Field(500, ge=1)  # selection rows, sampled with the seed (None: the rest)
    # Rows per scoring pass. On 2 CPU cores 8 scored more rows a second than 16 or 32 (SmolLM2,
    # BoolQ, bf16: 7.5 against 7.2 and 6.4 rows/s): shorter length-sorted batches pad less.
    batch_size: int = Field(8, ge=1)


class ModelOption(ModelSpec):
    """Another model the plan may choose instead of the job's `model`: the (model, method) pairs
    of all of them are the plan's options. Its own prompt template (an encoder reads the
    question first, say) and methods are optional; the job's are used otherwise."""

    template: str | None = None
    methods: dict[str, dict[str, Any]] | None = None


class JobSpec(_Strict):
    name: str
    description: str = ""
    model: ModelSpec
    # More models the plan may choose between (see ModelOption): each (model, method) pair is an
    # option, valued by its learning curve and measured speed on this machine.
    models: list[ModelOption] = Field(default_factory=list)
    data: DataSpec
    prompt: PromptSpec
    train: TrainSpec = TrainSpec()
    eval: EvalSpec = EvalSpec()
    # Method name -> its search space (see search_space). An empty mapping uses the method's
    # default space.
    methods: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"lora": {}})
    seed: int = 0

    def variants(self) -> list["JobSpec"]:
        """One job per model: this one, then one for each of `models`, with its template and
        methods; each variant names one model and no alternatives. A model with a template of
        its own asks its question in that one wording: the job's prompt.patterns (other wordings
        of the job's template, for PET) are not its."""
        out = [self.model_copy(update={"models": []})]
        for option in self.models:
            base = ModelSpec(**option.model_dump(include=set(ModelSpec.model_fields)))
            prompt = self.prompt.model_copy(update={"template": option.template, "patterns": []}) if option.template else self.prompt
            data = self.model_dump() | {"model": base.model_dump(), "prompt": prompt.model_dump(), "models": []}
            if option.methods is not None:
                data["methods"] = option.methods
            out.append(JobSpec.model_validate(data))
        return out

    @model_validator(mode="after")
    def _models_distinct(self) -> "JobSpec":
        names = [self.model.name, *(m.name for m in self.models)]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(f"models: {', '.join(doubled)} named more than once; each model appears once (model, then models)")
        return self

    def variant(self, model_name: str) -> "JobSpec":
        """The variant whose model is `model_name` (a trial's model)."""
        for v in self.variants():
            if v.model.name == model_name:
                return v
        raise JobError(f"model {model_name!r} is not one of the job's models: {', '.join(v.model.name for v in self.variants())}")

    @field_validator("methods", mode="before")
    @classmethod
    def _methods_known(cls, value: Any) -> Any:
        if isinstance(value, list):  # a plain list of names: default spaces
            value = {name: {} for name in value}
        if not isinstance(value, dict) or not value:
            raise ValueError("list one or more methods, e.g. `methods: {lora: {}}`")
        out = {}
        for name, space in value.items():
            try:
                method = method_registry.get(str(name))
            except KeyError as exc:
                raise ValueError(str(exc.args[0])) from None
            space = dict(space or {})
            unknown = set(space) - method.params
            if unknown:
                raise ValueError(
                    f"{method.name}: unknown parameter(s) {', '.join(sorted(unknown))}; "
                    f"valid: {', '.join(sorted(method.params))}"
                )
            parse_space(space)  # raises ValueError naming the parameter
            out[method.name] = space
        return out

    def space_for(self, method_name: str) -> dict[str, Any]:
        method = method_registry.get(method_name)
        return self.methods.get(method.name) or dict(method.default_space)


def label_key(value: Any) -> str:
    """A class label as text: booleans as "true"/"false", numbers without a trailing .0."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def pattern_name(index: int) -> str:
    """How errors name prompt pattern `index`: the template, or an entry of prompt.patterns."""
    return "prompt.template" if index == 0 else f"prompt.patterns[{index - 1}]"


def template_fields(template: str, where: str = "prompt.template") -> list[str]:
    fields: list[str] = []
    try:
        for _, field, _, _ in string.Formatter().parse(template):
            if field is not None and field not in fields:
                if not field.isidentifier():
                    raise JobError(f"{where}: field {{{field}}} is not a plain field name")
                fields.append(field)
    except ValueError as exc:
        raise JobError(f"{where}: {exc}; write literal braces as {{{{ and }}}}") from None
    return fields
