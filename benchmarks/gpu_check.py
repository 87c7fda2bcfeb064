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
  4. trains the embedded SmolLM2 a few steps in bf16 with LoRA, then with QLoRA (a 4-bit NF4 base)
     and activation checkpointing, and prints each step's peak GPU memory (reserved + CUDA
     context) against what budgetft's memory plan predicted for it (budgetft.planner.memory);
  5. runs `budgetft train` for LoRA and BitFit in the GPU's precision (bf16 on compute
     capability >= 8, fp16 on 7.x) under the NVML sampler: examples/s, utilization, memory, energy;
  6. runs a short `budgetft run` priced from the catalogue (packing calibration included) and
     prints the packing decision with its figures, energy per trial, spend against the cap and the
     winner against the majority baseline.
Without a GPU it runs step 2, says so in one line and exits 0.

Every step has its own time limit, cut to what is left of the 8 minutes after the steps that
follow it are given their least (STEPS): a slow install or step leaves less to the later ones, and
a step that no longer fits is skipped and said so, so the check ends within its 8 minutes. A figure
this machine cannot give (power on a MIG slice or where NVML has none, utilization, packing on a
shared GPU) is printed as "not measured", which is not a failure. Python 3.10 installs from
requirements-py310.lock (the same packages at versions that still support 3.10), 3.11 and 3.12
from requirements.lock.

Environment (all optional):
  PYTHON            the Python whose torch to use (default: the one running this script)
  WHEELS            a folder of wheels: install from it only (pip --no-index --find-links)
  GPU_CHECK_VENV    the virtual environment to create or reuse (default: .gpucheck-venv); an
                    environment that already has every pinned version is used as it is
  GPU_CHECK_OUT     where the run directory, train figures and the telemetry trace go
                    (default: gpu_check_out/)
  BUDGET_MINUTES    how many minutes of this GPU the run's budget buys (default 2)
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
LOCK_310 = REPO / "requirements-py310.lock"  # numpy, pandas, transformers, ... at versions that still install on 3.10
LIMIT_S = 8 * 60  # the whole check must fit in this on one GPU
# Each step's own limit and the least it needs to be worth starting (seconds). A step gets its
# limit or what is left after the least of every step after it, whichever is smaller.
STEPS = {"install": (180, 30), "cpu tests": (75, 20), "gpu tests": (45, 15), "price": (30, 10), "memory": (75, 30),
         "train lora": (50, 25), "train bitfit": (45, 25), "run": (200, 120), "summary": (30, 10)}
NON_GPU_TESTS = ["tests/telemetry/test_telemetry.py", "tests/telemetry/test_energy.py", "tests/telemetry/test_energy_report.py",
                 "tests/money/test_gpu_names.py", "tests/money/test_catalog.py", "tests/money/test_prices_refresh.py"]
# Lock lines that must never be installed over the machine's torch: torch itself and the CUDA
# runtime wheels and compiler that come with a CUDA torch (a CPU lock has none, a future one may).
NOT_FROM_LOCK = re.compile(r"^(torch|triton|nvidia-[a-z0-9-]+-cu\d+)==", re.IGNORECASE)
T0 = time.monotonic()
NOT_MEASURED = "not measured"


def say(message: str) -> None:
    print(f"gpu_check [{time.monotonic() - T0:5.0f} s] {message}", flush=True)


def allowed(step: str) -> float:
    """Seconds `step` may take: its own limit, or what is left of LIMIT_S once the least of
    every later step is kept back; 0 when less than its own least is left (skip it)."""
    names = list(STEPS)
    later = sum(STEPS[n][1] for n in names[names.index(step) + 1:])
    left = LIMIT_S - (time.monotonic() - T0) - later
    cap, least = STEPS[step]
    return min(cap, left) if left >= least else 0.0


def lock_for(python: str) -> Path:
    """The lock this Python installs from: requirements-py310.lock on 3.10, else requirements.lock."""
    out = run([python, "-c", "import sys; print(sys.version_info[1])"], capture=True, timeout=30)
    minor = int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else 11
    return LOCK_310 if minor <= 10 and LOCK_310.is_file() else LOCK


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
    lock = lock_for(python)
    lines = [ln for ln in lock.read_text().splitlines() if ln.strip() and not NOT_FROM_LOCK.match(ln.strip())]
    constraints.write_text("\n".join(lines) + "\n")
    pip = [python, "-m", "pip", "--disable-pip-version-check", "-q", "install", *pip_source()]
    if before is None:
        if gpu_listed:
            sys.exit("gpu_check: this machine has an NVIDIA GPU but no torch in " + base + "; run with PYTHON=<a Python that has a "
                     "CUDA build of torch> (installing torch here would give the CPU build)")
        if no_install:
            sys.exit(f"gpu_check: no torch in {python} and GPU_CHECK_NO_INSTALL=1")
        torch_pin = next(ln for ln in lock.read_text().splitlines() if ln.startswith("torch=="))
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
        say(f"installing {count} pinned packages from {lock.name} (torch left as it is: {before['version'] if before else '?'})")
        # --no-deps: exactly the lock's versions, no resolver, nothing pulled in to 'upgrade' torch.
        if run(pip + ["--no-deps", "-r", str(constraints)], timeout=allowed("install") or 30).returncode != 0:
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

    def timed(step: str) -> float:
        """The step's time limit; a step that no longer fits is skipped and said so."""
        seconds = allowed(step)
        if not seconds:
            say(f"{step}: skipped, not enough of the {LIMIT_S // 60} minutes left")
            problems.append(f"{step} skipped for time")
        return seconds

    say("checks that need no GPU: telemetry, energy, pricing, GPU names, price refresh (fake API), CPU report")
    if (limit := timed("cpu tests")) and not pytest(python, ["-m", "not slow and not gpu", *NON_GPU_TESTS], timeout=limit):
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
    if (limit := timed("gpu tests")) and not pytest(python, ["-m", "gpu", "-s", *gpu_files], timeout=limit):
        problems.append("a gpu-marked test failed (see pytest above)")

    inside = [python, str(Path(__file__).resolve()), "--inside"]
    figures: list[str] = []

    def step(name: str, args: list[str]) -> int:
        limit = timed(name)
        if not limit:
            return 124
        # The step's own children (`budgetft train`) stop a few seconds before it is stopped.
        done = run([*inside, *args], timeout=limit, capture=True, env={**os.environ, "GPU_CHECK_STEP_S": str(limit)})
        print(done.stdout or "", end="", flush=True)
        figures.append(done.stdout or "")
        (out / "figures.txt").write_text("".join(figures))
        return done.returncode

    price = step("price", ["price", str(out)])
    if price != 0:
        return finish(problems + ["this GPU could not be priced from the catalogue (see above)"])
    budget = json.loads((out / "price.json").read_text())["budget_usd"]

    if step("memory", ["memory", str(out)]) != 0:
        problems.append("a predicted peak memory is off its measurement by more than the plan's tolerance, or the step failed (see above)")

    job = os.environ.get("GPU_CHECK_JOB") or ""
    for method in ("lora", "bitfit"):
        if step(f"train {method}", ["train", str(out), method, job]) != 0:
            problems.append(f"`budgetft train --method {method}` failed")

    run_dir = out / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a new run each time; the previous one is in the last output
    minutes = float(os.environ.get("BUDGET_MINUTES") or 2)
    cmd = [python, "-m", "budgetft", "run", *([job] if job else []), "--budget", budget, "--methods", "lora,bitfit",
           "--set", "eval.limit=200", "--out", str(run_dir)]
    if os.environ.get("GPU_CHECK_REGION"):
        cmd += ["--region", os.environ["GPU_CHECK_REGION"]]
    limit = timed("run")
    if limit:
        say(f"budgetft run: ${budget} buys {minutes:g} min of this GPU at the catalogue price; {limit:.0f} s allowed")
        with open(out / "run.log", "w") as log:  # the run's own lines; the last ones are shown below
            try:
                code = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, timeout=limit).returncode
            except subprocess.TimeoutExpired:
                code = 124
        print("\n".join("  | " + ln for ln in (out / "run.log").read_text().splitlines()[-12:]), flush=True)
        if code != 0:
            problems.append(f"`budgetft run` exited {code}{' (timed out)' if code == 124 else ''}; its output: {out / 'run.log'}")
        if step("summary", ["summary", str(out)]) != 0:
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
    minutes = Decimal(os.environ.get("BUDGET_MINUTES") or "2")
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
            try:
                stdout, _ = proc.communicate(timeout=max(10.0, float(os.environ.get("GPU_CHECK_STEP_S") or 140) - 8))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                print(f"  train {method}: stopped at its time limit; its last lines:\n" + "\n".join(log.read_text().splitlines()[-5:]))
                return 1
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
    wh = f"{energy.total_wh:.3f} Wh ({energy.basis})" if energy.total_wh is not None and energy.basis == "nvml" else NOT_MEASURED
    util = f"{u.mean_util_pct}% mean" if u.mean_util_pct is not None else NOT_MEASURED
    memory = f"{u.peak_mem_mb} MiB ({u.mem_basis})" if u.peak_mem_mb is not None else NOT_MEASURED
    print(f"  train {method}: {precision.dtype_name} ({'autocast' if precision.autocast else 'no autocast'}"
          f"{', loss scaling' if precision.loss_scaling else ''}); {record['examples_per_s']:.1f} examples/s over "
          f"{record['steps']} steps ({record['train_seconds']:.1f} s); accuracy {100 * final['accuracy']:.1f}% vs majority "
          f"{100 * majority['accuracy']:.1f}%; GPU utilization {util}, peak memory {memory}; energy {wh}{counted}")
    (out / f"train-{method}.json").write_text(json.dumps({"precision": precision.to_dict(), "examples_per_s": record["examples_per_s"],
                                                          "usage": u.to_dict(), "energy_wh": energy.total_wh, "record": record}, default=str))
    return 0


def inside_memory(out: Path) -> int:
    """Real steps of the embedded SmolLM2 on this GPU, bf16 LoRA and then QLoRA (NF4 base) with
    activation checkpointing: each one's true peak (reserved + CUDA context) against the memory
    plan's prediction for it. Fails past the plan's tolerance (+-25%: its published-figure bound)."""
    import numpy as np
    import torch

    from budgetft import methods
    from budgetft.methods.context import ApplyContext
    from budgetft.models import cache
    from budgetft.models.checkpointing import checkpoint_activations
    from budgetft.models.loading import ResolvedModel, converted_embedded, detect_architecture, load_model
    from budgetft.models.placement import placement_for
    from budgetft.planner.memory import MemoryOption, model_shape, predict_peak
    from budgetft.scoring.rows import virtual_token_offset
    from budgetft.telemetry.device import reset_peak_memory, true_peak_bytes
    from budgetft.telemetry.precision import grad_scaler, precision_for
    from budgetft.train import steps

    folder = str(converted_embedded("HuggingFaceTB/SmolLM2-135M-Instruct"))
    resolved = ResolvedModel("embedded", folder, num_labels=2)
    resolved = ResolvedModel("embedded", folder, architecture=detect_architecture(resolved), num_labels=2)
    shape = model_shape(folder, num_labels=2)
    device, batch, length = torch.device("cuda"), 16, 512
    precision = precision_for(device)
    rng = np.random.default_rng(0)
    task = type("Task", (), {"class_tokens": [[200], [300]], "pad_id": 0})()
    task.train = type("Rows", (), {"prompts": [rng.integers(100, 1000, size=length) for _ in range(2 * batch)],
                                   "labels": np.array([i % 2 for i in range(2 * batch)])})()
    results, failed = [], False
    for name, quantization, checkpointing in (("bf16 LoRA", None, False), ("bf16 QLoRA + checkpointing", "nf4", True)):
        cache.release()
        torch.cuda.empty_cache()
        reset_peak_memory()
        placement = placement_for(device, quantization)
        method = methods.get("qlora" if quantization else "lora")
        model = method.apply(load_model(resolved, placement), method.config(), ApplyContext())
        placement.prepare_trainable(model)
        if checkpointing:
            checkpoint_activations(model)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-5)
        scaler = grad_scaler(precision)
        t0 = time.perf_counter()
        for step_index in range(2):
            idx = np.arange(step_index * batch, (step_index + 1) * batch)
            steps.accumulate(model, task, idx, batch, virtual_token_offset(model), "classes", precision, scaler)
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        measured = true_peak_bytes() or 0.0
        option = MemoryOption(method=method.name, micro_batch=batch, length=length, device="cuda", weight_dtype=placement.weight_dtype,
                              compute_dtype=placement.weight_dtype, quantization=quantization, checkpointing=checkpointing)
        estimate = predict_peak(shape, option)
        error = estimate.total_bytes / measured - 1 if measured else float("nan")
        failed |= not abs(error) <= 0.25
        results.append({"setting": name, "batch": batch, "length": length, "measured_bytes": measured, "predicted_bytes": estimate.total_bytes,
                        "parts_gb": estimate.parts_gb(), "seconds": round(seconds, 2)})
        print(f"  memory {name}, {batch} x {length} tokens: measured {measured / 1e9:.2f} GB (reserved + CUDA context), predicted "
              f"{estimate.total_bytes / 1e9:.2f} GB ({100 * error:+.1f}%; parts GB {estimate.parts_gb()}); 2 steps in {seconds:.1f} s")
        del model, optimizer, params
    cache.release()
    (out / "memory.json").write_text(json.dumps(results, indent=1))
    return 1 if failed else 0


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
    else:  # a MIG slice or a GPU without NVML utilization: calibration has no figures to decide on
        print(f"  packing: {NOT_MEASURED} (calibration recorded no packed levels: no NVML utilization or memory on this GPU)")
    energy = hw.get("energy") or {}
    if energy.get("basis") == "nvml":
        print(f"  energy: {energy.get('total_wh')} Wh for the run ({energy.get('basis')}; {energy.get('method')}); "
              f"CO2 {energy.get('co2e_g')} g at {energy.get('grid_gco2e_per_kwh')} g/kWh ({energy.get('region')})")
    else:  # a MIG slice, or a driver that gives no power reading: not this check's failure
        print(f"  energy: {NOT_MEASURED} (NVML gives no power for this GPU, e.g. a MIG slice; basis {energy.get('basis')})")
    report, summary, trials = build(root)
    for t in trials:
        u = hw["trials"].get(t.id, {})
        util = NOT_MEASURED if u.get("mean_util_pct") is None else f"{u['mean_util_pct']}%"
        peak = NOT_MEASURED if u.get("peak_mem_mb") is None else f"{u['peak_mem_mb']} MiB"
        wh = NOT_MEASURED if t.energy_wh is None else f"{t.energy_wh} Wh"
        print(f"    {t.id}: {t.method} {t.ended}, {t.steps} steps, {t.examples_per_s or 0:.1f} examples/s, accuracy "
              f"{'-' if t.accuracy is None else f'{100 * t.accuracy:.1f}%'}, utilization {util}, peak {peak}, energy {wh}, ${t.cost}, "
              f"acc/$ {t.accuracy_per_usd or 0:,.1f}, acc/kWh {'-' if t.accuracy_per_kwh is None else f'{t.accuracy_per_kwh:,.0f}'}")
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
        if step == "memory":
            sys.exit(inside_memory(Path(rest[0])))
        sys.exit(f"unknown step {step!r}")
    sys.exit(main())
