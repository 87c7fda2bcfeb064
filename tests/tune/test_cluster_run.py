"""A run over a three-node Ray cluster on this machine (issue 29): ray.cluster_utils.Cluster,
one CPU and a custom resource per node; `budgetft run --ray-address` prices each node, runs the
trials on all of them, and the workers pay, report and send their weights through the run's
actor, never the driver's disk. The cluster is this test's own: only its processes are ended
(never `ray stop`: other test workers run their own Ray). About a minute on two cores."""

from decimal import Decimal

import psutil
import pytest
import yaml
from typer.testing import CliRunner

from budgetft.cli import app
from budgetft.files import read_json
from budgetft.money.ledger import read_charges
from budgetft.rundir import RunDir
from tests.conftest import load_script

runner = CliRunner()
pytestmark = pytest.mark.slow


# The benchmark's own cluster (benchmarks/cluster.py): head and two workers, one CPU and a custom
# resource each, node death seen within ~2 s; and the processes that are that cluster's.
BENCH = load_script("benchmarks/cluster.py")


def test_a_three_node_cluster_prices_each_node_and_brings_everything_home(tiny_job_data, tmp_path):
    tiny_job_data["methods"] = {"bitfit": {"learning_rate": [3e-3, 1e-3, 5e-4]}}
    tiny_job_data["train"].update(max_steps=12, eval_every=4)
    tiny_job_data["eval"]["limit"] = 20
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(tiny_job_data))
    cluster, _ = BENCH.start_cluster()
    try:
        out = tmp_path / "run"
        result = runner.invoke(app, ["run", str(job), "--budget", "12", "--ray-address", cluster.address,
                                     "--node-price", "18", "--node-price", "node-c=36", "--out", str(out)])
        assert result.exit_code == 0, result.output
        run = RunDir(out)
        info = run.run()
        assert info["price_source"] == "cluster" and Decimal(info["price_per_hour"]) == Decimal("72")
        trials = run.trials()
        assert len(trials) == 3 and all(t["status"] == "finished" and t["node"] for t in trials)
        assert len({t["node"] for t in trials}) >= 2  # the trials ran on more than the driver's node
        charges = read_charges(run.ledger)
        nodes = read_json(out / "cluster.json", {})["nodes"]
        assert len(nodes) == 3 and sum(1 for n in nodes if n["head"]) == 1
        dear = next(n for n in nodes if "node-c" in n["name"])
        cheap = [n for n in nodes if "node-c" not in n["name"]]
        # Each node paid per second while held, whether or not a trial ran on it: node-c at twice the others' price.
        for node in nodes:
            paid = sum((c.amount for c in charges if c.node == node["node"]), start=Decimal(0))
            assert paid == Decimal(node["ledger_usd"]) > 0
        assert Decimal(dear["usd"]) >= Decimal("1.9") * Decimal(cheap[0]["usd"]) * Decimal(dear["seconds_charged"]) / Decimal(str(cheap[0]["seconds_charged"])) - Decimal("0.01")
        assert charges[-1].total <= Decimal("12")
        # Records and weights came home through Ray: the workers worked in their nodes' scratch.
        for trial in trials:
            assert run.weights_dir(trial["trial_id"]).is_dir()
            assert trial["cost_usd"] and Decimal(trial["cost_usd"]) > 0
        assert (out / "report.md").exists(), result.output  # (20 evaluation rows: none is held out for a test)
    finally:
        procs = BENCH.cluster_processes(cluster)
        cluster.shutdown()
        psutil.wait_procs(procs, timeout=15)
    assert not [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
