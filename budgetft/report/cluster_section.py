"""The report's cluster section (a run over a Ray cluster, `--ray-address`): per node its price,
the trials it ran, the node-seconds and dollars charged, and the nodes lost mid-run, from
`cluster.json` (budgetft.runner.cluster_hold). A single-machine run has no such file and no section."""

from __future__ import annotations

from pathlib import Path

from budgetft.files import read_json

CLUSTER_FILE = "cluster.json"


def cluster_lines(root: Path) -> list[str]:
    """Markdown lines: one per node, then one per lost node's consequence; [] without a cluster."""
    data = read_json(Path(root) / CLUSTER_FILE, None) or {}
    nodes = data.get("nodes") or []
    if not nodes:
        return []
    lines = []
    for n in nodes:
        role = "head" if n.get("head") else "worker"
        trials = ", ".join(n.get("trials") or []) or "none"
        lost = " — **lost mid-run**: charged until it was missed, its running trials ended with what they paid" if n.get("lost") else ""
        lines.append(f"{n['name']} ({role}, ${n['usd_per_hour']}/h): {n['seconds_charged']:.0f} node-seconds, "
                     f"${n.get('ledger_usd') or n.get('usd')} charged; trials: {trials}{lost}")
    return lines
