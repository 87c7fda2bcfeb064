"""What every fine-tuning method declares. One module per method fills in a `Method`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

# Hyperparameters every method accepts on top of its own: the optimiser's learning rate.
COMMON_DEFAULTS = {"learning_rate": 1e-3}


@dataclass(frozen=True)
class ApplyContext:
    """What a method may need besides the model: the tokenizer (for text-initialised prompts)
    and the task's instruction text."""

    tokenizer: Any = None
    init_text: str = ""


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    # Every parameter the method understands, with the value a single trial uses by default.
    defaults: dict[str, Any]
    # The search space used when a job lists the method without one (YAML form, see search_space).
    default_space: dict[str, Any]
    # apply(model, config, context) -> model with only the method's parameters trainable.
    apply: Callable[..., Any]
    uses_peft: bool = True
    notes: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)

    @property
    def params(self) -> set[str]:
        return set(self.defaults)

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
