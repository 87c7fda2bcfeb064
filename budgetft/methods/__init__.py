"""The method registry: every fine-tuning method budgetft can run, by name.

Adding a method is one module with a `METHOD` and one line in `_MODULES`. The first seven keep
their historical order (error messages and docs list them first).
"""

from __future__ import annotations

import importlib

from budgetft.methods.base import ARCHITECTURES, DECODER, ENCODER, ApplyContext, Method, MethodUnsupported, Phase

_MODULES = (
    # via Hugging Face peft
    "lora", "prompt_tuning", "p_tuning", "prefix_tuning", "ia3",
    # ours
    "bitfit", "full",
    # LoRA variants and relatives (peft)
    "rslora", "dora", "pissa", "olora", "adalora", "vera", "loha", "lokr", "ln_tuning",
    # ours
    "last_k", "houlsby", "pfeiffer", "mezo",
    # ours: what the studies compare and no library ships (issue 15)
    "siva", "pasta", "mezo_top_k", "lst", "adamix", "fish_mask", "mezo_lst",
    # ours: PET's ensemble of prompt patterns, one LoRA adapter each
    "pet", "ipet",
    # LoRA over a 4-bit NF4 base (bitsandbytes, the [gpu] extra)
    "qlora",
)

REGISTRY: dict[str, Method] = {}
for _name in _MODULES:
    _method = importlib.import_module(f"budgetft.methods.{_name}").METHOD
    if _method.name in REGISTRY:
        raise RuntimeError(f"two methods named {_method.name!r}")
    REGISTRY[_method.name] = _method


def names() -> list[str]:
    return list(REGISTRY)


def get(name: str) -> Method:
    key = name.strip().lower().replace("-", "_")
    for method in REGISTRY.values():
        if key == method.name or key in method.aliases:
            return method
    raise KeyError(f"unknown method {name!r}; valid methods: {', '.join(REGISTRY)}")


def for_architecture(architecture: str) -> list[Method]:
    return [m for m in REGISTRY.values() if m.supports(architecture)]


def check_supports(name: str, architecture: str) -> Method:
    """The method called `name`, refused before anything is spent if it cannot run on this
    architecture (MethodUnsupported, naming both and the methods that can)."""
    method = get(name)
    if not method.supports(architecture):
        others = [m.name for m in for_architecture(architecture)][:6]
        why = f" ({method.notes})" if method.notes else ""
        raise MethodUnsupported(
            f"method {method.name!r} does not run on {architecture} models{why}; "
            f"remove it from the job's methods (or --methods), or use one of: {', '.join(others)}"
        )
    return method


__all__ = ["ARCHITECTURES", "DECODER", "ENCODER", "ApplyContext", "Method", "MethodUnsupported", "Phase", "REGISTRY", "check_supports", "for_architecture", "get", "names"]
