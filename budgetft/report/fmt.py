"""Formatting shared by every view (terminal, Markdown, HTML, plots): one spelling per number."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from budgetft.money.usd import round_up

DASH = "–"  # an en dash: "no value", distinct from a minus sign

METHOD_NAMES = {
    "lora": "LoRA",
    "ia3": "IA3",
    "prompt_tuning": "prompt tuning",
    "p_tuning": "P-tuning",
    "prefix_tuning": "prefix tuning",
    "bitfit": "BitFit",
    "full": "full fine-tune",
    "majority": "majority class",
    "zero-shot": "zero-shot",
}

# Short names for settings, so "method and its settings" fits a narrow column.
SETTING_NAMES = {
    "learning_rate": "lr",
    "lora_alpha": "alpha",
    "lora_dropout": "dropout",
    "num_virtual_tokens": "tokens",
    "weight_decay": "wd",
    "target_modules": "targets",
}


def usd(amount: Decimal | None, places: int = 4) -> str:
    """Dollars, rounded UP (a report never under-states a cost); whole cents show 2 places."""
    if amount is None:
        return DASH
    if amount == amount.quantize(Decimal("0.01")):
        return f"${amount.quantize(Decimal('0.01'))}"
    return f"${round_up(amount, Decimal(1).scaleb(-places))}"


def pct(x: float | None, places: int = 1) -> str:
    """A fraction in [0, 1] as percent, without the sign: 0.875 -> '87.5'."""
    return DASH if x is None else f"{100 * x:.{places}f}"


def ci(interval: tuple[float, float] | None) -> str:
    return DASH if interval is None else f"{100 * interval[0]:.1f}–{100 * interval[1]:.1f}"


def points(x: float | None, places: int = 1) -> str:
    """Percentage points with an explicit sign: '+27.5', '-10.0'."""
    return DASH if x is None else f"{x:+.{places}f}"


def number(x: float | None, places: int = 1) -> str:
    return DASH if x is None else f"{x:,.{places}f}"


def integer(x: int | None) -> str:
    return DASH if x is None else f"{x:,}"


def p_value(p: float | None) -> str:
    if p is None:
        return DASH
    if p < 0.001:
        return "<0.001"
    return f"{p:.3f}"


def method(name: str) -> str:
    return METHOD_NAMES.get(name, name)


def value(v: Any) -> str:
    if isinstance(v, bool):  # a switch: "train_embeddings=no" reads better than "=False"
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.2g}"
    if isinstance(v, (list, tuple)):
        return "+".join(str(x) for x in v)
    return str(v)


def settings(config: dict[str, Any]) -> str:
    """'r=8 lr=0.001' from a trial's config, keys in their recorded order."""
    return " ".join(f"{SETTING_NAMES.get(k, k)}={value(v)}" for k, v in config.items())


def method_and_settings(row) -> str:
    if row.kind == "baseline":
        if row.id == "majority":
            cls = row.config.get("majority_class")
            return f"always {cls!r}" if cls is not None else "majority class"
        return "untuned model"
    text = settings(row.config)
    return f"{method(row.method)} {text}".strip()
