"""Model configurations shipped for sizing (config.json files, no weights): a job that names one
of these hub models can be planned offline, its memory and its speed estimated from the
configuration (budgetft.planner.memory, budgetft.models.speed); running it still needs the hub.

Written from the configurations the models' publishers put on the Hugging Face hub
(Qwen/Qwen2.5-1.5B-Instruct, meta-llama/Llama-3.1-8B-Instruct), as of 2026-12.
"""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent


def shipped_config(name: str) -> Path | None:
    """The folder holding the shipped config.json of hub model `name`, or None."""
    folder = FOLDER / name.replace("/", "--")
    return folder if (folder / "config.json").is_file() else None


def shipped_names() -> list[str]:
    return sorted(p.parent.name.replace("--", "/", 1) for p in FOLDER.glob("*/config.json"))
