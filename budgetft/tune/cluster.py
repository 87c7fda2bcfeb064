"""The Ray cluster a run holds (`--ray-address`): its nodes, what each costs, what each offers.

Each live node of the cluster is priced (budgetft.money.node_meters charges it per second while
the run holds it, trial or no trial). A node's price is, in order:
  - the `--node-price KEY=USD` whose KEY names it: a custom resource it was started with
    (`ray start --resources '{"gpu-a": 1}'`), its IP address, or the start of its node id;
  - a bare `--node-price USD`: every node not named otherwise;
  - the run's price for one machine (`--price-per-hour`, or the detected machine's catalogue
    entry), which is the head's own when it runs the driver.
A KEY that names no node is an error before anything is spent: a typo would otherwise price a
node at the default silently.

The head is the node the driver is connected to: the run's clock (budgetft.money.machine_meter)
and its home for what the workers send (budgetft.tune.home).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from budgetft.money.node_meters import NodePrice

# Imported inside functions: ray: importing this module must stay cheap (start-up time).

# Resources every Ray node has that are no custom label of the user's.
RAY_OWN_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory", "accelerator_type", "node:")


class ClusterPriceError(ValueError):
    """A --node-price that cannot be read or names no node of the cluster."""


def parse_node_prices(values: list[str]) -> tuple[Decimal | None, dict[str, Decimal]]:
    """`--node-price` values -> (the price for every node not named, {KEY: price})."""
    every, named = None, {}
    for value in values:
        key, _, text = value.rpartition("=")
        try:
            price = Decimal(text.strip().lstrip("$"))
        except InvalidOperation:
            raise ClusterPriceError(f"--node-price {value!r}: write USD per hour (0.40) or KEY=USD (gpu-a=0.40, 10.0.0.5=0.40)") from None
        if price < 0:
            raise ClusterPriceError(f"--node-price {value!r}: a price cannot be negative")
        if key.strip():
            named[key.strip()] = price
        else:
            every = price
    return every, named


def labels(node: dict) -> list[str]:
    """A node's custom resources: the names a user gave it."""
    return sorted(k for k in (node.get("Resources") or {}) if not any(k == own or k.startswith(own) for own in RAY_OWN_RESOURCES))


def live_nodes() -> list[dict]:
    """Ray's view of the cluster's live nodes."""
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def price_nodes(nodes: list[dict], head_id: str, every: Decimal | None, named: dict[str, Decimal], default: Decimal) -> list[NodePrice]:
    """Each node's price (see the module's order); raises ClusterPriceError for a KEY that names
    no node."""
    used: set[str] = set()
    priced = []
    for node in nodes:
        node_id, ip, names = node["NodeID"], node.get("NodeManagerAddress") or "", labels(node)
        keys = [k for k in named if k in names or k == ip or node_id.startswith(k)]
        used.update(keys)
        price = named[keys[0]] if keys else every if every is not None else default
        name = f"{ip}" + (f" ({', '.join(names)})" if names else "") + f" [{node_id[:8]}]"
        priced.append(NodePrice(node_id, name, price, head=node_id == head_id))
    unknown = sorted(set(named) - used)
    if unknown:
        known = "; ".join(f"{n.get('NodeManagerAddress')} {n['NodeID'][:8]} {labels(n) or ''}" for n in nodes)
        raise ClusterPriceError(f"--node-price names no node of the cluster: {', '.join(unknown)}; its nodes: {known}")
    return priced


def cluster_prices(values: list[str], default: Decimal) -> list[NodePrice]:
    """The connected cluster's nodes, priced, the head marked (the node this driver is on)."""
    import ray

    every, named = parse_node_prices(values)
    head = ray.get_runtime_context().get_node_id()
    return price_nodes(live_nodes(), head, every, named, default)


def poller(values: list[str], default: Decimal):
    """A callable the meter asks once a slice for the nodes held now (new nodes priced as they join)."""
    every, named = parse_node_prices(values)

    def poll() -> list[NodePrice]:
        import ray

        if not ray.is_initialized():
            return []  # disconnected as the run ends: the meter keeps the last known set
        nodes = live_nodes()
        head = ray.get_runtime_context().get_node_id()
        # A key that names a node gone by now is no error here: the run has begun.
        return [n for n in price_nodes(nodes, head, every, {k: v for k, v in named.items() if _names_any(k, nodes)}, default)]

    return poll


def _names_any(key: str, nodes: list[dict]) -> bool:
    return any(key in labels(n) or key == n.get("NodeManagerAddress") or n["NodeID"].startswith(key) for n in nodes)


def node_resources() -> list[dict]:
    """Per live node: its CPUs and GPUs, for how many trials the cluster runs at once."""
    return [{"node_id": n["NodeID"], "cpus": int((n.get("Resources") or {}).get("CPU", 0)), "gpus": int((n.get("Resources") or {}).get("GPU", 0))}
            for n in live_nodes()]
