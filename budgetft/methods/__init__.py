"""The method registry: every fine-tuning method budgetft can run, by name.

Adding a method is one module with a `METHOD` and one line in `_MODULES`.
"""

from __future__ import annotations

import importlib

from budgetft.methods.base import ApplyContext, Method

_MODULES = ("lora", "prompt_tuning", "p_tuning", "prefix_tuning", "ia3", "bitfit", "full")

REGISTRY: dict[str, Method] = {}
for _name in _MODULES:
    _method = importlib.import_module(f"budgetft.methods.{_name}").METHOD
    REGISTRY[_method.name] = _method


def names() -> list[str]:
    return list(REGISTRY)


def get(name: str) -> Method:
    key = name.strip().lower().replace("-", "_")
    for method in REGISTRY.values():
        if key == method.name or key in method.aliases:
            return method
    raise KeyError(f"unknown method {name!r}; valid methods: {', '.join(REGISTRY)}")


__all__ = ["ApplyContext", "Method", "REGISTRY", "get", "names"]
