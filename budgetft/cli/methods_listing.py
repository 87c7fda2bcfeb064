"""The facts `budgetft methods` shows: per method, its trainable parameters on the job's model,
its search space, and what calibration measured on this machine (if it ran)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from budgetft import methods

# Imported inside functions: budgetft's domain code and transformers: `budgetft --help` loads none
# of it (start-up time).


@dataclass
class MethodFacts:
    method: str
    summary: str
    architectures: list[str]
    supported: bool  # supports the job's model's architecture
    trainable_params: int | None  # at counted_config: what `budgetft train` would run
    total_params: int | None  # the model with the method applied (adapters included)
    share: float | None  # trainable / the base model's parameters
    space: dict[str, Any]
    space_source: str  # job | default
    saves_as: str
    passes: str  # what one optimiser step costs, in passes
    seconds_per_step: float | None = None
    examples_per_s: float | None = None
    peak_memory_mb: float | None = None
    error: str = ""
    # Another of the job's models the counts are on, when the job's own model cannot run the
    # method (e.g. an encoder-only method on a job whose model is a decoder): None otherwise.
    counted_on: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


def space_text(space: dict[str, Any]) -> str:
    """A search space as one line: `r ∈ {4, 8, 16}; learning_rate ~ loguniform[0.0002, 0.003]`."""
    from budgetft.search_space import parse_space

    parts = []
    for name, param in parse_space(space).items():
        if param.kind == "fixed":
            parts.append(f"{name} = {param.values[0]}")
        elif param.kind == "choice":
            parts.append(f"{name} ∈ {{{', '.join(map(str, param.values))}}}")
        else:
            parts.append(f"{name} ~ {param.kind}[{param.values[0]:g}, {param.values[1]:g}]")
    return "; ".join(parts)


def counted_config(method, space: dict[str, Any]) -> dict[str, Any]:
    """The configuration a single trial runs (`budgetft train`): the method's default where
    the space allows it, else the space's first choice or (geometric) centre."""
    from budgetft.search_space import parse_space, point

    return point(parse_space(space), method.defaults)


def model_config(spec) -> Any:
    """The job's model configuration, without its weights."""
    from transformers import AutoConfig

    from budgetft.models.loading import resolve_model

    resolved = resolve_model(spec.model)
    return AutoConfig.from_pretrained(resolved.location, revision=resolved.revision)


def describe(spec, config=None, rates: dict | None = None) -> tuple[list[MethodFacts], int, str]:
    """Facts for every registered method on the job's model. Returns (facts, the base model's
    parameter count, its architecture)."""
    import warnings

    from budgetft.methods.counting import build_meta_model, count_model
    from budgetft.models.architecture import architecture_of

    config = config if config is not None else model_config(spec)
    base = build_meta_model(config, spec.model.architecture, num_labels=len(spec.prompt.labels))
    architecture = architecture_of(base)
    base_total = count_model(base)[1]
    rates = rates or {}
    others: dict = {}  # the job's other models, built on the meta device when first needed
    facts = []
    for method in methods.REGISTRY.values():
        in_job = method.name in spec.methods and bool(spec.methods[method.name])
        space = spec.methods[method.name] if in_job else dict(method.default_space)
        passes = f"{method.forward_passes} forward" + (" + backward" if method.backward else ", no backward")
        fact = MethodFacts(
            method.name, method.summary, list(method.architectures), method.supports(architecture),
            None, None, None, space, "job" if in_job else "default", method.saves_as, passes,
        )
        on, on_total, variant = (base, base_total, spec) if fact.supported else _other_model(spec, method, others)
        if on is not None:
            if variant is not spec:  # counted on another model: at that model's own search space
                in_variant = method.name in variant.methods and bool(variant.methods[method.name])
                space = variant.methods[method.name] if in_variant else dict(method.default_space)
                fact.space, fact.space_source = space, "job" if in_variant else "default"
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    trainable, total = method.count_params(on, counted_config(method, space))
                fact.trainable_params, fact.total_params = trainable, total
                fact.share = trainable / on_total
                fact.counted_on = None if fact.supported else on.budgetft_name
            except Exception as exc:  # one method failing to apply must not hide the others
                fact.error = f"{type(exc).__name__}: {exc}"
        rate = rates.get(method.name)
        if rate is not None:
            fact.seconds_per_step = rate.seconds_per_step
            fact.examples_per_s = rate.examples_per_s
            fact.peak_memory_mb = rate.peak_memory_mb
        facts.append(fact)
    return facts, base_total, architecture


def _other_model(spec, method, built: dict) -> tuple[Any, int, Any]:
    """(meta model, its parameter count, its job variant) of the first of the job's other models
    whose architecture the method supports, or (None, 0, None)."""
    from budgetft.methods.counting import build_meta_model, count_model
    from budgetft.models.architecture import architecture_of

    for variant in spec.variants()[1:]:
        name = variant.model.name
        if name not in built:
            try:
                model = build_meta_model(model_config(variant), variant.model.architecture, num_labels=len(variant.prompt.labels))
            except Exception:  # a model that cannot be read here is simply not offered
                built[name] = None
                continue
            model.budgetft_name = name
            built[name] = model
        model = built[name]
        if model is not None and method.supports(architecture_of(model)):
            return model, count_model(model)[1], variant
    return None, 0, None


def stored_rates_for(spec) -> tuple[dict, str]:
    """Rates calibration stored on this machine for this job's model, batch size and length."""
    from budgetft.planner.rates import stored_rates
    from budgetft.telemetry.device import device_name

    device = device_name()
    rates, _ = stored_rates(spec, device, methods.names())
    return rates, device
