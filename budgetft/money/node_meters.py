"""A cluster's nodes on one ledger: each node its own price, charged per second while the run
holds it, whether or not a trial runs on it; the cap covers the sum.

The machine meter (budgetft.money.machine_meter) buys one slice of time at a time. On a single
machine a slice is that machine's; on a cluster a slice is bought on every node the run holds at
once, each node through its own Meter (its own price, its own rounding, so that one node's bill
is exactly what its price says for its seconds), and split between the trials running on that
node. A node with no trial pays its slice as overhead: a held node costs money idle or not.

Which nodes the run holds comes from a callable (budgetft.tune.cluster asks Ray), polled once a
slice. A node that joins is charged from the slice it is first seen in; a node that is gone
(killed, preempted) is charged no more from the slice it is first missed in, and is kept in
`lost` for the report. Until it is missed its time is prepaid, so the ledger can only overstate
what a lost node cost, never understate it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Callable

from budgetft.money.ledger import BudgetExceeded, Ledger
from budgetft.money.meter import Meter
from budgetft.money.usd import USD_RESOLUTION


@dataclass(frozen=True)
class NodePrice:
    """One node of the cluster and what it costs."""

    node_id: str  # Ray's node id (hex)
    name: str  # what the ledger and report call it: its IP and, where it has one, its custom resource
    usd_per_hour: Decimal
    head: bool = False  # the node the driver runs on: the run's clock

    @property
    def short(self) -> str:
        """The node in ledger keys and lines: the first 8 hex digits of its id."""
        return self.node_id[:8]


class NodeMeters:
    """One Meter per node the run holds; slices bought on all of them together."""

    def __init__(self, ledger: Ledger, nodes: list[NodePrice], clock: Callable[[], float],
                 poll: Callable[[], list[NodePrice]] | None = None, minimum_seconds: int = 60):
        heads = [n for n in nodes if n.head]
        if len(heads) != 1:
            raise ValueError(f"a cluster needs exactly one head node (the driver's), got {len(heads)} among {len(nodes)}")
        self.ledger, self.clock, self.poll = ledger, clock, poll
        self.minimum_seconds = minimum_seconds
        self.head = heads[0]
        self.nodes: dict[str, NodePrice] = {}
        self.meters: dict[str, Meter] = {}
        self.joined: dict[str, float] = {}  # node id -> unix time it was first held
        self.lost: dict[str, float] = {}  # node id -> unix time it was first missed
        self._add(nodes)

    def _add(self, nodes: list[NodePrice]) -> None:
        for node in nodes:
            if node.node_id in self.meters or node.node_id in self.lost:
                continue  # a lost node that comes back is a new node to Ray: a new id
            self.nodes[node.node_id] = node
            # Minimum 0 here: each node's one-minute minimum is settled as the run closes
            # (minimum_shortfalls), so the first minute's lines say what it was spent on.
            self.meters[node.node_id] = Meter(self.ledger, node.usd_per_hour, minimum_seconds=0, clock=self.clock)
            self.joined[node.node_id] = self.clock()

    @property
    def head_meter(self) -> Meter:
        return self.meters[self.head.node_id]

    @property
    def live(self) -> list[NodePrice]:
        return [n for node_id, n in self.nodes.items() if node_id not in self.lost]

    def usd_per_hour(self) -> Decimal:
        return sum((n.usd_per_hour for n in self.live), start=Decimal(0))

    def refresh(self) -> None:
        """Ask who is held now: new nodes start paying, missing ones stop. A failed poll (Ray
        disconnected as the run ends) keeps the last known set: the nodes are still held."""
        if self.poll is None:
            return
        try:
            seen = self.poll()
        except Exception:  # noqa: BLE001 - no answer is no news: keep paying for what we hold
            return
        if not seen:
            return
        now = self.clock()
        ids = {n.node_id for n in seen}
        for node_id in list(self.nodes):
            if node_id not in ids and node_id not in self.lost and node_id != self.head.node_id:
                self.lost[node_id] = now
        self._add(seen)

    def quote(self, seconds: float) -> Decimal:
        return sum((self.meters[n.node_id].quote(seconds) for n in self.live), start=Decimal(0))

    def buy(self, seconds: float, slice_no: int, session: int, stage: str,
            running: dict[str, str], placement: dict[str, str]) -> None:
        """Pay `seconds` on every live node: a node's running trials share its slice in equal
        dollars (by phase: training, evaluation), a node without one pays it as `stage`'s (or,
        while tuning, overhead). All or nothing against the cap: BudgetExceeded pays nothing."""
        total = self.quote(seconds)
        self.ledger.refresh()
        if self.ledger.spent + total > self.ledger.cap:
            raise BudgetExceeded(self.ledger.cap, self.ledger.spent, total, f"{seconds:.0f} s on {len(self.live)} nodes")
        by_node: dict[str, list[tuple[str, str]]] = {}
        for trial_id, phase in sorted(running.items()):
            # A trial whose worker has not said where it runs yet is charged to the head.
            by_node.setdefault(placement.get(trial_id) or self.head.node_id, []).append((trial_id, phase))
        for node in self.live:
            meter, short = self.meters[node.node_id], node.short
            trials = by_node.get(node.node_id) or []
            if trials:
                share = seconds / len(trials)
                meter.charge_shared(seconds, [
                    {"category": {"evaluating": "evaluation", "training": "training"}.get(phase, "overhead"),
                     "description": f"{share:.2f} s of {trial_id} on {node.name}", "trial": trial_id, "node": short,
                     "key": f"s{session}:{slice_no}:{short}:{trial_id}"}
                    for trial_id, phase in trials
                ])
            else:
                category = "overhead" if stage == "tuning" else stage
                meter.charge_for(seconds, category, f"{seconds:.0f} s of {stage} on {node.name}", node=short, key=f"s{session}:{slice_no}:{short}")

    def unused_usd(self) -> Decimal:
        """Prepaid node time not yet used, on every live node, rounded down."""
        unused = Decimal(0)
        for node in self.live:
            meter = self.meters[node.node_id]
            seconds = max(Decimal(0), meter.paid_seconds - meter.elapsed())
            unused += (meter.usd_per_hour * seconds / 3600).quantize(USD_RESOLUTION, rounding="ROUND_FLOOR")
        return unused

    def worker_minimums(self) -> list[tuple[NodePrice, float]]:
        """Each worker node's unused part of its one-minute billing minimum, seconds (the head's
        is the machine meter's, per machine start)."""
        return [(n, self.minimum_seconds - float(self.meters[n.node_id].paid_seconds)) for n in self.nodes.values()
                if not n.head and self.minimum_seconds - float(self.meters[n.node_id].paid_seconds) > 0]

    def summary(self) -> list[dict]:
        """Per node, for cluster.json and the report: its price, the seconds paid, what it cost,
        when it joined and, for a lost node, when it was missed."""
        rows = []
        for node_id, node in self.nodes.items():
            meter = self.meters[node_id]
            rows.append({"node": node.short, "node_id": node_id, "name": node.name, "head": node.head,
                         "usd_per_hour": str(node.usd_per_hour), "seconds_charged": round(float(meter.paid_seconds), 1),
                         "usd": str(meter.charged), "joined": self.joined.get(node_id), "lost": self.lost.get(node_id)})
        return rows
