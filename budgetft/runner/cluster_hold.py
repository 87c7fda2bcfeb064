"""What a run on a Ray cluster (`--ray-address`) holds while it runs: the connection, the
cluster's nodes and their prices, and at the end `cluster.json`, what each node was charged.

The driver connects before anything is checked or spent, so that the budget check, the plan and
the reserve use the cluster's rate (the sum of its nodes' prices) and concurrency (its
resources), and so that the meter charges every node from the session's first second. A run on
one machine holds none of this (Run.cluster is None) and is unchanged.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from budgetft.files import write_json
from budgetft.money.ledger import Ledger, read_charges
from budgetft.money.node_meters import NodeMeters, NodePrice
from budgetft.planner.costs import cluster_tuning_resources
from budgetft.rundir import RunDir
from budgetft.tune import cluster, ray_session

CLUSTER_FILE = "cluster.json"  # in the run directory: its nodes, their prices, seconds and dollars, the lost ones


class ClusterHold:
    def __init__(self, address: str, node_prices: list[str], default_usd_per_hour: Decimal):
        cluster.parse_node_prices(node_prices)  # a malformed price is refused before Ray is reached
        self.address, self.node_prices, self.default = address, list(node_prices), Decimal(default_usd_per_hour)
        self.nodes: list[NodePrice] = []
        self.meters: NodeMeters | None = None
        self.connected = False

    @classmethod
    def hold(cls, opts) -> tuple["ClusterHold", object]:
        """Connect to `opts.ray_address` and price its nodes: the hold, and the run's options
        with the cluster's rate in place of one machine's (budgetft.runner.driver.RunOptions)."""
        held = cls(opts.ray_address, opts.node_prices, opts.usd_per_hour).connect()
        return held, replace(opts, usd_per_hour=held.usd_per_hour, price_source="cluster",
                             price_reason=f"{len(held.nodes)} nodes: {held.describe()}")

    def connect(self) -> "ClusterHold":
        self.connected = ray_session.start(os.cpu_count() or 1, self.address) or self.connected
        self.nodes = cluster.cluster_prices(self.node_prices, self.default)
        return self

    @property
    def usd_per_hour(self) -> Decimal:
        """The cluster's rate: every node it holds now, at its price."""
        if self.meters is not None:
            return self.meters.usd_per_hour()
        return sum((n.usd_per_hour for n in self.nodes), start=Decimal(0))

    @property
    def head_id(self) -> str:
        return next(n.node_id for n in self.nodes if n.head)

    def describe(self) -> str:
        return "; ".join(f"{n.name}{' (head)' if n.head else ''} ${n.usd_per_hour}/h" for n in self.nodes)

    def concurrency(self, packing: dict | None) -> int:
        """Trials at once over the cluster's nodes (budgetft.planner.costs.cluster_tuning_resources)."""
        try:
            return cluster_tuning_resources(packing, cluster.node_resources())[0]
        except Exception:  # noqa: BLE001 - Ray gone: one at a time is always safe
            return 1

    def node_meters(self, ledger: Ledger) -> NodeMeters:
        """The meters of every node, polled once a slice for nodes joined and lost."""
        self.meters = NodeMeters(ledger, self.nodes, time.time, poll=cluster.poller(self.node_prices, self.default))
        return self.meters

    def write(self, run: RunDir) -> Path:
        """cluster.json: per node its price, seconds charged, dollars, trials, lost or not."""
        nodes = self.meters.summary() if self.meters is not None else []
        trials: dict[str, list[str]] = {}
        for trial in run.trials():
            if trial.node:
                trials.setdefault(trial.node, []).append(trial.trial_id)
        by_node: dict[str, Decimal] = {}
        for charge in read_charges(run.ledger) if run.ledger.exists() else []:
            if charge.node:
                by_node[charge.node] = by_node.get(charge.node, Decimal(0)) + charge.amount
        for row in nodes:
            row["trials"] = sorted(trials.get(row["node_id"], []))
            row["ledger_usd"] = str(by_node.get(row["node"], Decimal(0)))
        path = run.root / CLUSTER_FILE
        write_json(path, {"address": self.address, "nodes": nodes, "usd_per_hour": str(sum((Decimal(r["usd_per_hour"]) for r in nodes), start=Decimal(0)))})
        return path

    def close(self, run: RunDir | None = None) -> None:
        """cluster.json with the figures as the meter closed (the report's, written before, lacks
        the report's own slices and the minimums), then disconnect."""
        if run is not None and self.meters is not None and run.root.exists():
            try:
                self.write(run)
            except OSError:
                pass  # a full disk: the ledger still says what each node paid
        if self.connected:
            ray_session.stop()
            self.connected = False
