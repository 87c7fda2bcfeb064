#!/usr/bin/env python3
"""One prepared check of budgetft's GPU path: at most 8 minutes on one GPU, run as is.

    python3 benchmarks/gpu_check.py

On a machine with an NVIDIA GPU and a CUDA build of torch it
  1. installs budgetft's pinned dependencies (requirements.lock without its torch line) into a
     virtual environment that sees the machine's own torch (--system-site-packages), so a CUDA
     torch is never replaced by the CPU build; offline, from wheels in a folder (WHEELS=dir);
  2. runs the checks that need no GPU (telemetry, energy, pricing, GPU names, price refresh,
     a CPU report with energy), then the `gpu`-marked tests;
  3. prices this GPU from the catalogue (or its nearest entry, saying so);
  4. runs `budgetft train` for LoRA and BitFit in the GPU's precision (bf16 on compute
     capability >= 8, fp16 on 7.x) under the NVML sampler: examples/s, utilization, memory, energy;
  5. runs a short `budgetft run` priced from the catalogue (packing calibration included) and
     prints the packing decision with its figures, energy per trial, spend against the cap and the
     winner against the majority baseline.
Without a GPU it runs step 2, says so in one line and exits 0.

Environment (all optional):
  PYTHON            the Python whose torch to use (default: the one running this script)
  WHEELS            a folder of wheels: install from it only (pip --no-index --find-links)
  GPU_CHECK_VENV    the virtual environment to create or reuse (default: .gpucheck-venv); an
                    environment that already has every pinned version is used as it is
  GPU_CHECK_OUT     where the run directory, train figures and the telemetry trace go
                    (default: gpu_check_out/)
  BUDGET_MINUTES    how many minutes of this GPU the run's budget buys (default 3)
  GPU_CHECK_REGION  the grid region for the report's CO2 (default: unknown)
  GPU_CHECK_JOB     the job for train and run (default: the embedded SmolLM2 + BoolQ job)

Exit status: 0 when every check passed (or no GPU and the other checks passed), 1 otherwise.
The script runs itself inside the environment for the steps that import budgetft
(`--inside price|train|summary ...`); those are not meant to be called by hand.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements.lock"
LIMIT_S = 8 * 60  # the whole check must fit in this on one GPU
NON_GPU_TESTS = ["tests/telemetry/test_telemetry.py", "tests/telemetry/test_energy.py", "tests/telemetry/test_energy_report.py",
                 "tests/money/test_gpu_names.py", "tests/money/test_catalog.py", "tests/money/test_prices_refresh.py"]
# Lock lines that must never be installed over the machine's torch: torch itself and the CUDA
# runtime wheels and compiler that come with a CUDA torch (a CPU lock has none, a future one may).
NOT_FROM_LOCK = re.compile(r"^(torch|triton|nvidia-[a-z0-9-]+-cu\d+)==", re.IGNORECASE)
T0 = time.monotonic()


def say(message: str) -> None:
    print(f"gpu_check [{time.monotonic() - T0:5.0f} s] {message}", flush=True)


def run(cmd: list[str], timeout: float | None = None, env: dict | None = None, capture: bool = False) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=REPO, timeout=timeout, env=env, text=True,
                              stdout=subprocess.PIPE if capture else None, stderr=subprocess.STDOUT if capture else None)
    except subprocess.TimeoutExpired:
        say(f"timed out after {timeout:.0f} s: {' '.join(cmd[:6])} …")
        return subprocess.CompletedProcess(cmd, 124, "" if capture else None)


# ----------------------------------------------------------------------------- environment


def torch_info(python: str) -> dict | None:
    code = ("import json, torch; print(json.dumps({'version': torch.__version__, 'cuda': torch.version.cuda, "
            "'available': torch.cuda.is_available(), 'count': torch.cuda.device_count()}))")
    out = run([python, "-c", code], capture=True, timeout=120)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def nvidia_smi() -> str | None:
    """The GPUs nvidia-smi lists, or None when there is no nvidia-smi or it fails (no driver)."""
    if shutil.which("nvidia-smi") is None:
        return None
    out = run(["nvidia-smi", "-L"], capture=True, timeout=30)
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def pip_source() -> list[str]:
    wheels = os.environ.get("WHEELS")
    if not wheels:
        return []
    if not Path(wheels).is_dir():
        sys.exit(f"gpu_check: WHEELS={wheels} is not a folder; give the folder of .whl files, or unset WHEELS to use the index")
    return ["--no-index", "--find-links", str(Path(wheels).resolve())]


MISSING_CODE = r"""
import importlib.metadata as md, json, re, sys
from packaging.requirements import Requirement
try:
    import tomllib  # Python >= 3.11
except ImportError:  # 3.10: the dependency list read with a regular expression (pyproject's own layout)
    tomllib = None
pins, missing = {}, []
for line in open(sys.argv[1]):
    if "==" in line and not line.startswith("#"):
        name, version = line.strip().split("==", 1)
        pins[name] = version
for name, version in pins.items():
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        have = None
    if have != version:
        missing.append(f"{name}=={version}")
deps = []
if tomllib is not None:
    specs = tomllib.load(open(sys.argv[2], "rb"))["project"]["dependencies"]
else:
    block = re.search(r"^dependencies = \[(.*?)^\]", open(sys.argv[2]).read(), re.S | re.M).group(1)
    specs = re.findall(r'^\s*"([^"]+)"', block, re.M)
for spec in specs:
    req = Requirement(spec)
    try:
        ok = md.version(req.name) in req.specifier or not req.specifier
    except md.PackageNotFoundError:
        ok = False
    if not ok and req.name.lower() != "torch":
        deps.append(str(req))
print(json.dumps({"pins": missing, "deps": deps}))
"""


def missing(python: str, constraints: Path) -> dict | None:
    out = run([python, "-c", MISSING_CODE, str(constraints), str(REPO / "pyproject.toml")], capture=True, timeout=120)
    if out.returncode != 0:  # no packaging yet (a bare environment): everything is missing
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def see_base_packages(base: str, python: str) -> None:
    """Make the base Python's own packages (its torch above all) visible in the new environment,
    after the environment's own. --system-site-packages covers a system or conda Python; when the
    base is itself a virtual environment, its site-packages are added with a .pth file."""
    code = "import json, site; print(json.dumps(site.getsitepackages()))"
    theirs = run([base, "-c", code], capture=True, timeout=60)
    mine = run([python, "-c", code], capture=True, timeout=60)
    if theirs.returncode or mine.returncode:
        return
    paths, own = json.loads(theirs.stdout.strip().splitlines()[-1]), json.loads(mine.stdout.strip().splitlines()[-1])
    extra = [p for p in paths if p not in own and Path(p).is_dir()]
    if extra:
        (Path(own[0]) / "_gpu_check_base.pth").write_text("\n".join(extra) + "\n")


def prepare(out: Path) -> str:
    """The environment's Python, with every pinned package and the machine's own torch.
    GPU_CHECK_NO_INSTALL=1: use the environment as it is, and stop if anything is missing."""
    base = os.environ.get("PYTHON") or sys.executable
    venv = Path(os.environ.get("GPU_CHECK_VENV") or REPO / ".gpucheck-venv")
    python = venv / "bin" / "python"
    if not python.exists():
        say(f"creating {venv} on {base} (it sees that Python's packages, its torch included)")
        if run([base, "-m", "venv", "--system-site-packages", str(venv)]).returncode != 0:
            sys.exit("gpu_check: could not create a virtual environment; install the venv module (e.g. apt-get install python3-venv)")
        see_base_packages(base, str(python))
    python = str(python)
    gpu_listed = nvidia_smi()
    before = torch_info(python)
    constraints = out / "constraints.txt"  # the lock without torch (never written into the environment)
    no_install = os.environ.get("GPU_CHECK_NO_INSTALL") == "1"
    lines = [ln for ln in LOCK.read_text().splitlines() if ln.strip() and not NOT_FROM_LOCK.match(ln.strip())]
    constraints.write_text("\n".join(lines) + "\n")
    pip = [python, "-m", "pip", "--disable-pip-version-check", "-q", "install", *pip_source()]
    if before is None:
        if gpu_listed:
            sys.exit("gpu_check: this machine has an NVIDIA GPU but no torch in " + base + "; run with PYTHON=<a Python that has a "
                     "CUDA build of torch> (installing torch here would give the CPU build)")
        if no_install:
            sys.exit(f"gpu_check: no torch in {python} and GPU_CHECK_NO_INSTALL=1")
        torch_pin = next(ln for ln in LOCK.read_text().splitlines() if ln.startswith("torch=="))
        say(f"no torch and no GPU: installing the lock's torch, CPU build ({torch_pin})")
        cpu_index = [] if pip_source() else ["--index-url", "https://download.pytorch.org/whl/cpu"]
        if run(pip + cpu_index + [torch_pin]).returncode != 0 and run(pip + [torch_pin]).returncode != 0:
            sys.exit(f"gpu_check: could not install {torch_pin}")
        before = torch_info(python)
    todo = missing(python, constraints)
    if no_install and (todo is None or todo["pins"] or todo["deps"]):
        sys.exit(f"gpu_check: GPU_CHECK_NO_INSTALL=1 but {python} lacks: {todo}")
    if todo is None or todo["pins"]:
        count = "all" if todo is None else len(todo["pins"])
        say(f"installing {count} pinned packages from requirements.lock (torch left as it is: {before['version'] if before else '?'})")
        # --no-deps: exactly the lock's versions, no resolver, nothing pulled in to 'upgrade' torch.
        if run(pip + ["--no-deps", "-r", str(constraints)]).returncode != 0:
            sys.exit("gpu_check: installing the pinned packages failed (see pip's message above); with no internet, "
                     "give WHEELS=<folder with their wheels>")
        todo = missing(python, constraints) or {"pins": [], "deps": []}
    if todo["deps"]:  # in pyproject.toml but not yet in the lock
        say(f"installing dependencies not yet in the lock: {', '.join(todo['deps'])}")
        if run(pip + ["-c", str(constraints), *todo["deps"]]).returncode != 0:
            sys.exit("gpu_check: installing " + ", ".join(todo["deps"]) + " failed")
    after = torch_info(python)
    if before and after and (before["version"], before["cuda"]) != (after["version"], after["cuda"]):
        sys.exit(f"gpu_check: torch changed from {before['version']} to {after['version']} during the install; this must not happen")
    say(f"environment ready: {python}, torch {after['version'] if after else '?'} (CUDA {after.get('cuda') if after else '?'})")
    wanted = re.search(r'"torch>=(\d+)\.(\d+)', (REPO / "pyproject.toml").read_text())
    have = re.match(r"(\d+)\.(\d+)", (after or {}).get("version", ""))
    if wanted and have and tuple(map(int, have.groups())) < tuple(map(int, wanted.groups())):
        say(f"warning: this machine's torch {after['version']} is older than budgetft's torch>={'.'.join(wanted.groups())}; "
            "expect failures (it is kept: replacing it could lose CUDA)")
    return python


# ----------------------------------------------------------------------------- outer steps


def pytest(python: str, args: list[str], timeout: float) -> bool:
    return run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], timeout=timeout).returncode == 0


def main() -> int:
    # budgetft itself is not installed: every child (pytest, the steps, `budgetft run` and the Ray
    # workers it starts, which inherit the environment) imports this checkout's.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    out = Path(os.environ.get("GPU_CHECK_OUT") or REPO / "gpu_check_out").resolve()
    out.mkdir(parents=True, exist_ok=True)
    python = prepare(out)
    problems: list[str] = []

    say("checks that need no GPU: telemetry, energy, pricing, GPU names, price refresh (fake API), CPU report")
    if not pytest(python, ["-m", "not slow and not gpu", *NON_GPU_TESTS], timeout=240):
        problems.append("a check that needs no GPU failed (see pytest above)")

    info = torch_info(python) or {}
    listed = nvidia_smi()
    if not info.get("available"):
        if listed:
            say(f"nvidia-smi lists {listed.splitlines()[0]!r} but torch {info.get('version')} sees no CUDA device")
            problems.append("a GPU is present but this torch cannot use it: give PYTHON=<a Python with a CUDA build of torch>")
        else:
            status = "passed" if not problems else "FAILED"
            print(f"gpu_check: no GPU on this machine (torch {info.get('version', '?')} sees no CUDA device, nvidia-smi: "
                  f"{'none' if shutil.which('nvidia-smi') is None else 'no GPU listed'}); GPU checks skipped, the checks "
                  f"that need no GPU {status}.", flush=True)
            return 1 if problems else 0
        return finish(problems)

    gpu_files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("test_*.py") if "mark.gpu" in p.read_text())
    say(f"gpu-marked tests: {', '.join(gpu_files)}")
    if not pytest(python, ["-m", "gpu", "-s", *gpu_files], timeout=180):
        problems.append("a gpu-marked test failed (see pytest above)")

    inside = [python, str(Path(__file__).resolve()), "--inside"]
    figures: list[str] = []

    def step(args: list[str], timeout: float) -> int:
        done = run([*inside, *args], timeout=timeout, capture=True)
        print(done.stdout or "", end="", flush=True)
        figures.append(done.stdout or "")
        (out / "figures.txt").write_text("".join(figures))
        return done.returncode

    price = step(["price", str(out)], timeout=120)
    if price != 0:
        return finish(problems + ["this GPU could not be priced from the catalogue (see above)"])
    budget = json.loads((out / "price.json").read_text())["budget_usd"]

    job = os.environ.get("GPU_CHECK_JOB") or ""
    for method in ("lora", "bitfit"):
        if step(["train", str(out), method, job], timeout=150) != 0:
            problems.append(f"`budgetft train --method {method}` failed")

    run_dir = out / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a new run each time; the previous one is in the last output
    minutes = float(os.environ.get("BUDGET_MINUTES") or 3)
    cmd = [python, "-m", "budgetft", "run", *([job] if job else []), "--budget", budget, "--methods", "lora,bitfit",
           "--set", "eval.limit=200", "--out", str(run_dir)]
    if os.environ.get("GPU_CHECK_REGION"):
        cmd += ["--region", os.environ["GPU_CHECK_REGION"]]
    left = LIMIT_S - (time.monotonic() - T0)
    say(f"budgetft run: ${budget} buys {minutes:g} min of this GPU at the catalogue price; {left:.0f} s left of the check's 8 minutes")
    with open(out / "run.log", "w") as log:  # the run's own lines; the last ones are shown below
        try:
            code = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, timeout=max(120.0, minutes * 60 + 150)).returncode
        except subprocess.TimeoutExpired:
            code = 124
    print("\n".join("  | " + ln for ln in (out / "run.log").read_text().splitlines()[-12:]), flush=True)
    if code != 0:
        problems.append(f"`budgetft run` exited {code}{' (timed out)' if code == 124 else ''}; its output: {out / 'run.log'}")
    if step(["summary", str(out)], timeout=120) != 0:
        problems.append("the run's figures show a problem (see 'PROBLEM' lines)")
    # The figures again, last, so that a log cut to its tail still shows them whole.
    print("gpu_check figures:\n" + "".join(figures), end="", flush=True)
    return finish(problems)


def finish(problems: list[str]) -> int:
    elapsed = time.monotonic() - T0
    if elapsed > LIMIT_S:
        problems.append(f"took {elapsed:.0f} s, over the {LIMIT_S} s limit")
    if problems:
        print("gpu_check: FAILED: " + "; ".join(problems), flush=True)
        return 1
    print(f"gpu_check: passed in {elapsed:.0f} s", flush=True)
    return 0


# ----------------------------------------------------------------------------- inside the environment


def inside_price(out: Path) -> int:
    from decimal import ROUND_CEILING, Decimal

    from budgetft.money.catalog_store import default_catalog
    from budgetft.money.freshness import stale_catalog_warning
    from budgetft.telemetry.hardware import HardwareError, detect, local_price

    hw = detect()
    for g in hw.gpus:
        cc = ".".join(map(str, g.capability)) if g.capability else "?"
        print(f"  GPU {g.index}: {g.name}, {g.mem_total_mb:,.0f} MiB, compute capability {cc}, driver {hw.driver} ({hw.source})")
    print(f"  host: {hw.cpu_model}, {hw.cpu_count} logical CPUs, {hw.mem_total_mb / 1024:,.0f} GiB")
    try:
        choice = local_price(default_catalog(), None, hw)
    except HardwareError as exc:
        print(f"  price: none: {exc}")
        return 1
    minutes = Decimal(os.environ.get("BUDGET_MINUTES") or "3")
    budget = max(Decimal("0.05"), (choice.usd_per_hour * minutes / 60).quantize(Decimal("0.01"), rounding=ROUND_CEILING))
    print(f"  price chosen: ${choice.usd_per_hour:.4f}/h as {choice.instance}; why: {choice.reason}")
    if warning := stale_catalog_warning():
        print(f"  note: {warning}")
    (out / "price.json").write_text(json.dumps({"usd_per_hour": str(choice.usd_per_hour), "instance": choice.instance,
                                                "reason": choice.reason, "budget_usd": str(budget),
                                                "gpu": hw.gpus[0].name if hw.gpus else None}))
    return 0


def inside_train(out: Path, method: str, job: str) -> int:
    """`budgetft train` in a child process, watched by the NVML sampler."""
    import torch

    from budgetft.telemetry.energy import energy_use
    from budgetft.telemetry.precision import choose_precision
    from budgetft.telemetry.sampler import TelemetrySampler
    from budgetft.telemetry.summary import read_samples, usage

    cuda = torch.cuda.is_available()  # always, in a real check; False only when trying this step on a CPU
    precision = choose_precision("cuda", torch.cuda.get_device_capability(0)) if cuda else choose_precision("cpu")
    trace = out / f"train-{method}.telemetry.jsonl"
    trace.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "budgetft", "train", *([job] if job else []), "--method", method, "--steps", "30",
           "--eval-limit", "100", "--json"]
    log = out / f"train-{method}.log"
    with open(log, "w") as progress:  # its progress lines: kept in a file, shown only on failure
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=progress, text=True)
        with TelemetrySampler(trace, interval_s=0.5, pids=lambda: {method: proc.pid}):
            stdout, _ = proc.communicate(timeout=140)
    if proc.returncode != 0:
        print(f"  train {method}: exited {proc.returncode}; its last lines:\n" + "\n".join(log.read_text().splitlines()[-15:]))
        return 1
    record = json.loads(stdout[stdout.index("{"):])
    samples = read_samples(trace)
    u = usage(samples, method)
    energy = energy_use(samples, [])
    counters = [sum(d.get("energy_mj") or 0 for d in s.get("devices", [])) for s in samples if s.get("devices")]
    counted = f"; NVML energy counter {(counters[-1] - counters[0]) / 3.6e6:.3f} Wh" if len(counters) > 1 and counters[-1] else ""
    final, majority = record["final"], record["baselines"]["majority"]
    wh = f"{energy.total_wh:.3f} Wh ({energy.basis})" if energy.total_wh is not None else "unknown"
    print(f"  train {method}: {precision.dtype_name} ({'autocast' if precision.autocast else 'no autocast'}"
          f"{', loss scaling' if precision.loss_scaling else ''}); {record['examples_per_s']:.1f} examples/s over "
          f"{record['steps']} steps ({record['train_seconds']:.1f} s); accuracy {100 * final['accuracy']:.1f}% vs majority "
          f"{100 * majority['accuracy']:.1f}%; GPU utilization {u.mean_util_pct}% mean, peak memory {u.peak_mem_mb} MiB "
          f"({u.mem_basis}); energy {wh}{counted}")
    (out / f"train-{method}.json").write_text(json.dumps({"precision": precision.to_dict(), "examples_per_s": record["examples_per_s"],
                                                          "usage": u.to_dict(), "energy_wh": energy.total_wh, "record": record}, default=str))
    return 0


def inside_summary(out: Path) -> int:
    from decimal import Decimal

    from budgetft.money.ledger import read_charges
    from budgetft.report import build
    from budgetft.report.hardware import hardware_summary
    from budgetft.rundir import RunDir

    root = out / "run"
    run = RunDir(root)
    if not run.exists():
        print("  PROBLEM: the run wrote no run.json")
        return 1
    problems = []
    info = run.run()
    print(f"  run: {info.get('status')} on {info.get('device')}; price ${info.get('price_per_hour')}/h ({info.get('price_source')})")
    print(f"  price reason: {info.get('price_reason')}")
    hw = hardware_summary(root)
    packing = hw.get("packing")
    if packing:
        print(f"  packing: {packing.get('trials_per_gpu')} trial(s) per GPU, fraction {packing.get('gpu_fraction')}: {packing.get('reason')}")
        for level in (packing.get("figures") or {}).get("levels", []):
            print(f"    {level.get('trials')} at once: {level.get('examples_per_s_total')} examples/s, utilization "
                  f"{level.get('mean_util_pct')}%, peak {level.get('peak_mem_mb')} MiB, x{level.get('speedup_vs_one')} "
                  f"{level.get('verdict', '(baseline)')}")
    else:
        print("  packing: none recorded (calibration did not measure packed levels)")
        problems.append("no packing decision in calibration.json")
    energy = hw.get("energy") or {}
    print(f"  energy: {energy.get('total_wh')} Wh for the run ({energy.get('basis')}; {energy.get('method')}); "
          f"CO2 {energy.get('co2e_g')} g at {energy.get('grid_gco2e_per_kwh')} g/kWh ({energy.get('region')})")
    if energy.get("basis") != "nvml":
        problems.append(f"the GPU run's energy is not from NVML power (basis {energy.get('basis')})")
    report, summary, trials = build(root)
    for t in trials:
        u = hw["trials"].get(t.id, {})
        print(f"    {t.id}: {t.method} {t.ended}, {t.steps} steps, {t.examples_per_s or 0:.1f} examples/s, accuracy "
              f"{'-' if t.accuracy is None else f'{100 * t.accuracy:.1f}%'}, utilization {u.get('mean_util_pct')}%, peak "
              f"{u.get('peak_mem_mb')} MiB, energy {t.energy_wh} Wh, ${t.cost}, "
              f"acc/$ {t.accuracy_per_usd or 0:,.1f}, acc/kWh {t.accuracy_per_kwh or 0:,.0f}")
    charges = read_charges(run.ledger) if run.ledger.exists() else []
    if not charges:
        problems.append("the run's ledger holds no charge")
    else:
        total, cap = charges[-1].total, Decimal(info["cap_usd"])
        print(f"  spend: ${total} of the ${cap} cap: {'within it' if total <= cap else 'OVER IT'}")
        if total > cap:
            problems.append(f"spent ${total}, past the ${cap} cap")
    majority = report.majority
    best = summary.best
    if best is None or majority is None:
        problems.append("no trial was evaluated against the majority baseline")
    else:
        test = best.vs_majority
        verdict = f"{test.verdict}, McNemar p={test.p_value:.3g}" if test else "untested"
        print(f"  winner: {best.id} ({best.method}) {100 * best.accuracy:.1f}% (95% CI {100 * best.ci95[0]:.1f}-"
              f"{100 * best.ci95[1]:.1f}) against always {report.majority_class!r} {100 * majority.accuracy:.1f}%: {verdict}")
    trace = run.telemetry
    if trace.exists():
        shutil.copy(trace, out / "run.telemetry.jsonl")  # an NVML power trace for the tests' fixtures
    for p in problems:
        print(f"  PROBLEM: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--inside":
        step, rest = sys.argv[2], sys.argv[3:]
        sys.path.insert(0, str(REPO))  # this checkout's budgetft, whatever else is installed
        os.chdir(REPO)
        if step == "price":
            sys.exit(inside_price(Path(rest[0])))
        if step == "train":
            sys.exit(inside_train(Path(rest[0]), rest[1], rest[2] if len(rest) > 2 else ""))
        if step == "summary":
            sys.exit(inside_summary(Path(rest[0])))
        sys.exit(f"unknown step {step!r}")
    sys.exit(main())
