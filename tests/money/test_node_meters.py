"""A cluster on one ledger (issue 29): each node charged at its own price per second while held,
trial or no trial, the cap over the sum; a node lost is charged no more; a single machine's
ledger lines are unchanged. Fake clocks, no Ray."""

import json
from decimal import Decimal

import pytest

from budgetft.money.ledger import Ledger, read_charges
from budgetft.money.machine_meter import MachineMeter
from budgetft.money.node_meters import NodeMeters, NodePrice
from budgetft.planner.costs import cluster_tuning_resources
from budgetft.tune.cluster import ClusterPriceError, parse_node_prices, price_nodes

HEAD = NodePrice("aa" * 28, "head", Decimal("3.60"), head=True)  # $0.001/s
CHEAP = NodePrice("bb" * 28, "cheap", Decimal("3.60"))
DEAR = NodePrice("cc" * 28, "dear", Decimal("7.20"))  # $0.002/s


def cluster_meter(tmp_path, nodes, cap="5.00", poll=None):
    clock = [1000.0]
    ledger = Ledger(tmp_path, cap)
    meters = NodeMeters(ledger, nodes, lambda: clock[0], poll=poll)
    meter = MachineMeter(ledger, Decimal(0), tmp_path, reserve_usd=Decimal("0.01"), slice_s=10.0, lookahead_s=10.0,
                         minimum_seconds=0, clock=lambda: clock[0], nodes=meters)
    return meter, meters, ledger, clock


def by_node(path) -> dict:
    totals: dict = {}
    for charge in read_charges(path):
        totals[charge.node] = totals.get(charge.node, Decimal(0)) + charge.amount
    return totals


def test_every_node_is_charged_at_its_price_while_held_trial_or_not(tmp_path):
    meter, meters, ledger, clock = cluster_meter(tmp_path, [HEAD, CHEAP, DEAR])
    meter.start(thread=False)
    meter.stage = "tuning"
    meter.running = lambda: {"t001-lora": "training", "t002-lora": "training"}
    meter.placement = lambda: {"t001-lora": DEAR.node_id, "t002-lora": DEAR.node_id}  # both on the dear node
    for _ in range(3):
        clock[0] += 10.0
        meter.top_up()
    totals = by_node(ledger.path)
    seconds = float(meters.head_meter.paid_seconds)
    assert seconds == float(meters.meters[DEAR.node_id].paid_seconds) == float(meters.meters[CHEAP.node_id].paid_seconds)
    # Each node its own price for the same seconds: the dear node costs twice the cheap one.
    assert totals[DEAR.short] == 2 * totals[CHEAP.short] == Decimal("0.002") * Decimal(str(seconds))
    assert totals[HEAD.short] == Decimal("0.001") * Decimal(str(seconds))
    charges = read_charges(ledger.path)
    # The cheap node ran nothing and still paid (overhead); the dear node's slices went to its trials.
    assert {c.category for c in charges if c.node == CHEAP.short} == {"overhead"}
    assert all(c.trial is None for c in charges if c.node == CHEAP.short)
    assert {c.trial for c in charges if c.node == DEAR.short and c.category == "training"} == {"t001-lora", "t002-lora"}
    assert ledger.spent == sum(totals.values())


def test_the_cap_covers_the_sum_of_the_nodes(tmp_path):
    """$0.004/s over three nodes and $0.10 (less a cent kept back): the meter stops before the
    sum passes the cap, not when any one node's share would."""
    meter, meters, ledger, clock = cluster_meter(tmp_path, [HEAD, CHEAP, DEAR], cap="0.10")
    meter.start(thread=False)
    for _ in range(10):
        clock[0] += 10.0
        meter.top_up()
    assert meter.stopped.is_set() and "3 nodes" in meter.reason
    assert ledger.spent <= Decimal("0.10") - Decimal("0.01") and ledger.spent >= Decimal("0.08")


def test_a_lost_node_is_charged_no_more_and_is_named(tmp_path):
    held = [HEAD, CHEAP, DEAR]
    meter, meters, ledger, clock = cluster_meter(tmp_path, held, poll=lambda: list(held))
    meter.start(thread=False)
    clock[0] += 10.0
    meter.top_up()
    before = by_node(ledger.path)[CHEAP.short]
    held.remove(CHEAP)  # its raylet killed: Ray no longer lists it alive
    for _ in range(3):
        clock[0] += 10.0
        meter.top_up()
    assert by_node(ledger.path)[CHEAP.short] == before
    assert by_node(ledger.path)[DEAR.short] > 2 * before
    rows = {r["name"]: r for r in meters.summary()}
    assert rows["cheap"]["lost"] == 1020.0  # missed at the first slice after it went and rows["dear"]["lost"] is None
    assert meters.usd_per_hour() == Decimal("10.80")


def test_a_node_that_joins_pays_from_when_it_is_seen(tmp_path):
    held = [HEAD]
    meter, meters, ledger, clock = cluster_meter(tmp_path, held, poll=lambda: list(held))
    meter.start(thread=False)
    clock[0] += 10.0
    meter.top_up()
    held.append(DEAR)
    clock[0] += 10.0
    meter.top_up()
    assert meters.meters[DEAR.node_id].paid_seconds < meters.head_meter.paid_seconds


def test_a_single_machine_ledger_line_has_no_node_field(tmp_path):
    ledger = Ledger(tmp_path, "1.00")
    ledger.charge("0.01", "overhead", "one machine")
    line = json.loads((tmp_path / "ledger.jsonl").read_text().splitlines()[0])
    assert "node" not in line
    ledger.charge("0.01", "overhead", "a node", node="bbbbbbbb")
    assert read_charges(tmp_path / "ledger.jsonl")[-1].node == "bbbbbbbb"


def test_node_prices_by_resource_ip_or_id_and_a_typo_is_refused():
    nodes = [
        {"NodeID": "aa" * 28, "NodeManagerAddress": "10.0.0.1", "Resources": {"CPU": 1.0, "node-a": 1.0, "node:10.0.0.1": 1.0}},
        {"NodeID": "bb" * 28, "NodeManagerAddress": "10.0.0.2", "Resources": {"CPU": 1.0, "node-b": 1.0}},
        {"NodeID": "cc" * 28, "NodeManagerAddress": "10.0.0.3", "Resources": {"CPU": 1.0}},
    ]
    every, named = parse_node_prices(["0.50", "node-b=1.25", "10.0.0.3=$2"])
    priced = {p.node_id[:2]: p for p in price_nodes(nodes, "aa" * 28, every, named, Decimal("9"))}
    assert priced["aa"].usd_per_hour == Decimal("0.50") and priced["aa"].head
    assert priced["bb"].usd_per_hour == Decimal("1.25") and "node-b" in priced["bb"].name
    assert priced["cc"].usd_per_hour == Decimal("2")
    default = price_nodes(nodes, "aa" * 28, None, {}, Decimal("9"))
    assert {p.usd_per_hour for p in default} == {Decimal("9")}
    with pytest.raises(ClusterPriceError, match="node-z"):
        price_nodes(nodes, "aa" * 28, None, {"node-z": Decimal(1)}, Decimal("9"))
    with pytest.raises(ClusterPriceError, match="KEY=USD"):
        parse_node_prices(["node-a=cheap"])


def test_concurrency_comes_from_the_clusters_resources():
    assert cluster_tuning_resources(None, [{"cpus": 1, "gpus": 0}] * 3) == (3, {"cpu": 1, "gpu": 0.0})
    assert cluster_tuning_resources(None, [{"cpus": 8, "gpus": 1}, {"cpus": 4, "gpus": 2}]) == (3, {"cpu": 2, "gpu": 1.0})
    packed = {"trials_per_gpu": 2, "gpu_fraction": 0.5}
    assert cluster_tuning_resources(packed, [{"cpus": 8, "gpus": 1}, {"cpus": 16, "gpus": 0}])[0] == 2  # the CPU node runs no GPU trial
