"""Search spaces for method hyperparameters, as written in job YAML.

A parameter is one of:
  - a fixed value:                 `r: 8`
  - a list, meaning a choice:      `r: [4, 8, 16]`
  - a distribution (one key):      `learning_rate: {loguniform: [1.0e-4, 3.0e-3]}`
    keys: choice, uniform, loguniform, randint (inclusive integer range)

The same space drives a single trial (`point`) and Ray Tune (`to_tune`), so what a user
writes once means the same thing everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# Imported inside functions: ray: importing this module must stay cheap (start-up time).

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint")


@dataclass(frozen=True)
class Param:
    kind: str  # "fixed" or one of DISTRIBUTIONS
    values: tuple  # the fixed value as a 1-tuple, the choices, or (low, high)

    def contains(self, value: Any) -> bool:
        if self.kind in ("fixed", "choice"):
            return value in self.values
        low, high = self.values
        return isinstance(value, (int, float)) and low <= value <= high

    def midpoint(self) -> Any:
        """A sensible single value: the first choice, or the (geometric) centre of a range."""
        if self.kind in ("fixed", "choice"):
            return self.values[0]
        low, high = self.values
        if self.kind == "loguniform":
            return math.sqrt(low * high)
        if self.kind == "randint":
            return (low + high) // 2
        return (low + high) / 2


def parse_param(name: str, raw: Any) -> Param:
    """Turn one YAML value into a Param, or raise ValueError naming the parameter."""
    if isinstance(raw, list):
        if not raw:
            raise ValueError(f"{name}: an empty list has nothing to choose from")
        return Param("choice", tuple(raw))
    if isinstance(raw, dict):
        if len(raw) != 1 or next(iter(raw)) not in DISTRIBUTIONS:
            raise ValueError(
                f"{name}: a distribution is a mapping with one key among {', '.join(DISTRIBUTIONS)}; "
                f"got {raw!r}"
            )
        kind, arg = next(iter(raw.items()))
        if kind == "choice":
            return parse_param(name, list(arg) if isinstance(arg, (list, tuple)) else arg)
        if not (isinstance(arg, (list, tuple)) and len(arg) == 2 and all(_is_number(a) for a in arg)):
            raise ValueError(f"{name}: {kind} takes [low, high]; got {arg!r}")
        low, high = arg
        if low > high:
            raise ValueError(f"{name}: {kind} low {low} is above high {high}")
        if kind == "loguniform" and low <= 0:
            raise ValueError(f"{name}: loguniform needs a positive low bound; got {low}")
        if kind == "randint" and not all(isinstance(a, int) for a in arg):
            raise ValueError(f"{name}: randint takes integer bounds; got {arg!r}")
        return Param(kind, (low, high))
    return Param("fixed", (raw,))


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def parse_space(space: dict[str, Any]) -> dict[str, Param]:
    return {name: parse_param(name, raw) for name, raw in space.items()}


def point(space: dict[str, Param], defaults: dict[str, Any]) -> dict[str, Any]:
    """One configuration for a single trial: the method default where the space allows it,
    else the space's midpoint. Parameters the space does not mention keep their default."""
    config = dict(defaults)
    for name, param in space.items():
        default = defaults.get(name)
        config[name] = default if default is not None and param.contains(default) else param.midpoint()
    return config


def to_tune(space: dict[str, Param]) -> dict[str, Any]:
    """The same space as Ray Tune search-space objects (imports ray lazily)."""
    from ray import tune

    out: dict[str, Any] = {}
    for name, p in space.items():
        if p.kind == "fixed":
            out[name] = p.values[0]
        elif p.kind == "choice":
            out[name] = tune.choice(list(p.values))
        elif p.kind == "uniform":
            out[name] = tune.uniform(*p.values)
        elif p.kind == "loguniform":
            out[name] = tune.loguniform(*p.values)
        else:  # randint: Ray's upper bound is exclusive, ours inclusive
            out[name] = tune.randint(p.values[0], p.values[1] + 1)
    return out
