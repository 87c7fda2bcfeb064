"""Cluster benchmark: one budget over a three-node Ray cluster on this machine (issue 29).

    python benchmarks/cluster.py [--keep DIR] [--ray-stop]

Starts Ray's own local cluster (ray.cluster_utils.Cluster: a head and two workers, one CPU and a
custom resource each: node-a, node-b, node-c), then runs `budgetft run --ray-address ...` twice on
a small job (chaos.py's random Llama and toy task), every node at $3.60/h and node-c at $7.20/h:

  1. whole:  prints the nodes used, the trials per node, the ledger's total against the cap, the
             node-seconds and dollars charged per node, and the records and weights brought home
             from the worker nodes (which work in their own scratch and send through Ray);
  2. lost:   the same, with a worker node's raylet killed while a trial trains on it: the run must
             exit 0 within its cap, that trial recorded failed with its reason, the node marked
             lost in cluster.json.

At the end the cluster's own processes are ended and the benchmark checks that none is left.
`ray stop` ends every Ray on the machine (other users' and test runs' too), so it is only run
with --ray-stop, which then checks that no Ray process at all is left.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from chaos import build_workdir  # noqa: E402 - the same small model and toy task

PRICES = ["--node-price", "3.60", "--node-price", "node-c=7.20"]
CAP = "1.00"


def start_cluster():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, connect=False, head_node_args={
        "num_cpus": 1, "resources": {"node-a": 1}, "include_dashboard": False,
        # A node whose raylet dies is declared dead in ~2 s (Ray's default: ~15 s).
        "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 4},
    })
    workers = [cluster.add_node(num_cpus=1, resources={name: 1}) for name in ("node-b", "node-c")]
    cluster.wait_for_nodes()
    return cluster, workers


def cluster_processes(cluster) -> list[psutil.Process]:
    found = []
    for node in [cluster.head_node, *cluster.worker_nodes]:
        for infos in node.all_processes.values():
            for info in infos:
                try:
                    proc = psutil.Process(info.process.pid)
                    found += [proc, *proc.children(recursive=True)]
                except psutil.Error:
                    pass
    return found


def phases(out: Path) -> dict[str, dict]:
    found = {}
    for path in (out / "trials").glob("*/phase"):
        try:
            found[path.parent.name] = json.loads(path.read_text())
        except (OSError, ValueError):
            pass
    return found


def run_once(name: str, job: Path, work: Path, cluster, workers, kill: bool) -> dict:
    out = work / name
    cmd = [sys.executable, "-m", "budgetft", "run", str(job), "--budget", CAP, "--ray-address", cluster.address, *PRICES, "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    killed = None
    if kill:
        ids = {w.node_id: w for w in workers}
        while proc.poll() is None and killed is None:
            for trial_id, phase in phases(out).items():
                if phase.get("phase") == "training" and phase.get("node") in ids:
                    node = ids[phase["node"]]
                    time.sleep(2.0)  # mid-trial, a few steps in
                    for info in node.all_processes.get("raylet", []):
                        info.process.kill()
                    killed = {"trial": trial_id, "node": phase["node"][:8]}
                    break
            time.sleep(0.3)
    output, _ = proc.communicate(timeout=1800)
    return {"name": name, "out": out, "code": proc.returncode, "seconds": time.time() - t0, "killed": killed, "output": output}


def summarize(result: dict) -> bool:
    out = result["out"]
    ok = result["code"] == 0
    print(f"\n== {result['name']}: exit {result['code']} in {result['seconds']:.0f} s")
    if not ok:
        print(result["output"][-3000:])
        return False
    cluster = json.loads((out / "cluster.json").read_text())
    trials = [json.loads(p.read_text()) for p in sorted((out / "trials").glob("*/trial.json"))]
    ledger = [json.loads(line) for line in (out / "ledger.jsonl").read_text().splitlines() if line.strip()]
    total = Decimal(ledger[-1]["total_usd"]) if ledger else Decimal(0)
    head = next(n["node_id"] for n in cluster["nodes"] if n["head"])
    print(f"nodes used: {sum(1 for n in cluster['nodes'] if n['trials'])} of {len(cluster['nodes'])}")
    print(f"{'node':32} {'$/h':>6} {'trials':>6} {'seconds':>8} {'USD':>9}  lost")
    for n in cluster["nodes"]:
        print(f"{n['name'][:32]:32} {n['usd_per_hour']:>6} {len(n['trials']):>6} {n['seconds_charged']:>8.1f} {n['ledger_usd']:>9}  {'yes' if n['lost'] else ''}")
    print(f"ledger total ${total} of the ${CAP} cap ({'within' if total <= Decimal(CAP) else 'OVER'})")
    remote = [t for t in trials if t.get("node") and t["node"] != head]
    home_weights = sum(1 for t in remote if (out / "trials" / t["trial_id"] / "adapter").is_dir())
    print(f"records brought home from worker nodes: {len(remote)}; weights: {home_weights} "
          f"(of {sum(1 for t in remote if t.get('best_step') is not None)} trials that kept weights)")
    for t in trials:
        print(f"  {t['trial_id']:>14} on {str(t.get('node'))[:8]}: {t['status']}, {t['steps']} steps, ${t.get('cost_usd')}"
              + (f" - {t.get('error')}" if t.get("error") else ""))
    ok &= total <= Decimal(CAP)
    if result["killed"]:
        lost = next((t for t in trials if t["trial_id"] == result["killed"]["trial"]), None)
        print(f"killed node {result['killed']['node']}'s raylet while {result['killed']['trial']} trained on it")
        good = lost is not None and lost["status"] in ("failed", "interrupted") and bool(lost.get("error") or lost.get("stop_reason"))
        marked = any(n["lost"] for n in cluster["nodes"] if n["node"] == result["killed"]["node"])
        print(f"that trial: {lost and lost['status']} ({'with' if good else 'WITHOUT'} its reason); node marked lost: {marked}")
        ok &= good and marked
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="keep the runs in this folder")
    parser.add_argument("--ray-stop", action="store_true", help="end with `ray stop` and check no Ray process at all is left")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="budgetft-cluster-"))
    work.mkdir(parents=True, exist_ok=True)
    job = build_workdir(work)
    import yaml

    spec = yaml.safe_load(job.read_text())
    spec.update(name="cluster", methods={"lora": {"learning_rate": [3e-3, 1e-3, 3e-4]}})
    spec["train"].update(max_steps=600, eval_every=100)
    spec["eval"].pop("test_rows", None)
    job = work / "cluster.yaml"
    job.write_text(yaml.safe_dump(spec))
    ok = True
    for name, kill in (("whole", False), ("lost", True)):
        cluster, workers = start_cluster()
        procs = cluster_processes(cluster)
        try:
            ok &= summarize(run_once(name, job, work, cluster, workers, kill))
        finally:
            procs = list({p.pid: p for p in procs + cluster_processes(cluster)}.values())
            cluster.shutdown()
            psutil.wait_procs(procs, timeout=20)
        left = [p.pid for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        print(f"cluster processes left after shutdown: {len(left)}")
        ok &= not left
    if args.ray_stop:
        subprocess.run([str(Path(sys.executable).with_name("ray")), "stop", "--force"], capture_output=True)
        strays = [p.pid for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith(("raylet", "gcs_server", "ray::"))]
        print(f"Ray processes left after `ray stop`: {len(strays)}")
        ok &= not strays
    print(f"\n{'PASS' if ok else 'FAIL'}  (runs in {work})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
