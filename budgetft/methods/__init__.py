"""The method registry: every fine-tuning method budgetft can run, by name.

Adding a method is one module with a `METHOD` and one line in `_MODULES`. The first seven keep
their historical order (error messages and docs list them first).
"""

from __future__ import annotations

import importlib

from budgetft.methods.base import ARCHITECTURES, DECODER, ENCODER, ApplyContext, Method, MethodUnsupported

_MODULES = (
    # via Hugging Face peft
    "lora", "prompt_tuning", "p_tuning", "prefix_tuning", "ia3",
    # ours
    "bitfit", "full",
    # LoRA variants and relatives (peft)
    "rslora", "dora", "pissa", "olora", "adalora", "vera", "loha", "lokr", "ln_tuning",
    # ours
    "last_k", "houlsby", "pfeiffer", "mezo",
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


__all__ = ["ARCHITECTURES", "DECODER", "ENCODER", "ApplyContext", "Method", "MethodUnsupported", "REGISTRY", "for_architecture", "get", "names"]
