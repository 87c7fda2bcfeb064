"""The report's memory lines: how each trial fitted its GPU where the memory plan changed
something (a LoRA run as QLoRA, activation checkpointing, a smaller micro-batch), what out of
memory shrank while it ran (a step's micro-batch, an evaluation's or the class-bias fit's batch),
and which options calibration dropped and why (trial.json "memory", calibration.json "dropped")."""

from __future__ import annotations

from budgetft.report.rows import Row

_WHAT = {"micro-batch": "its micro-batch", "evaluation batch": "its evaluation batch", "class-bias batch": "its class-bias fit's batch"}


def trial_lines(row: Row) -> list[str]:
    """What the memory plan and out of memory did to one trial, in words (none: nothing)."""
    memory = row.memory or {}
    lines = []
    if memory.get("converted_from"):
        sixteen = memory.get("sixteen_bit_bytes")
        need = f": 16-bit {memory['converted_from']} needs {sixteen / 1e9:.1f} GB at its leanest" if sixteen else ""
        lines.append(f"{row.id} ran as QLoRA (a 4-bit NF4 base), as the memory plan chose for its GPU "
                     f"({memory.get('memory_bytes', 0) / 1e9:.1f} GB){need}")
    planned, batch = memory.get("planned_micro_batch"), memory.get("batch")
    split = bool(planned and batch and int(planned) < int(batch))
    if memory.get("predicted_bytes") and (memory.get("checkpointing") or split):
        how = [f"micro-batches of {planned} rows (of {batch} a step)"] if split else []
        if memory.get("checkpointing"):
            how.append("activation checkpointing")
        lines.append(f"{row.id} trained with {' and '.join(how)} to fit its GPU (predicted peak {memory['predicted_bytes'] / 1e9:.1f} GB "
                     f"of {memory.get('memory_bytes', 0) / 1e9:.1f} GB)")
    for s in memory.get("shrunk") or []:
        lines.append(f"{row.id} ran out of memory at step {s.get('at')}: {_WHAT.get(s.get('what'), s.get('what'))} was halved "
                     f"from {s.get('from')} to {s.get('to')} (gradient accumulation keeps the step's rows) and it went on")
    return lines


def dropped_lines(dropped: dict[str, str]) -> list[str]:
    """The options calibration dropped (out of memory, or predicted not to fit), one line each."""
    return [f"option {key} was dropped before its trials: {why}; the run went on with the others" for key, why in dropped.items()]


def memory_lines(trials: list[Row], dropped: dict[str, str]) -> list[str]:
    return [*dropped_lines(dropped), *(line for row in trials for line in trial_lines(row))]
