"""Packing calibration on a GPU: do k trials at once train more examples per second than one?

After a method's calibration alone, the GPU's utilization and memory during it (from the run's
telemetry) say whether packing is worth measuring (budgetft.telemetry.packing). Each level k is
then measured for real: k worker processes load the model, wait at a barrier so that their
timed steps overlap, and run the same calibration steps as the alone level. Their summed
examples/s is the level's throughput; the NVML samples taken while they ran give its peak GPU
memory (all k processes, CUDA contexts included) and mean utilization. choose_packing decides
from those figures only.

Workers are plain subprocesses (`python -m budgetft.train.packing_probe ...`), not Ray
tasks: Ray has not started yet at calibration, and a process per trial is what tuning will run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean
from typing import Callable

from budgetft.spec import JobSpec
from budgetft.task import prepare_task
from budgetft.telemetry.packing import MIN_GAIN, choose_packing, packing_candidates
from budgetft.train.measure import calibrate_method

# Imported inside functions: torch: importing this module must stay cheap (start-up time).

BARRIER_TIMEOUT_S = 600.0  # a worker that never gets ready (e.g. out of memory) fails its level
LEVEL_TIMEOUT_S = 900.0


def window_figures(samples: list[dict], keys: set[str] | None = None) -> dict:
    """Peak GPU memory (MiB) and mean utilization (%) of GPU 0 over NVML samples. With keys,
    memory is what those watched processes hold together when NVML lists them; else (or when
    NVML lists none of them) the device's memory in use, which can only overstate."""
    gpu = [s for s in samples if s.get("source") == "nvml" and s.get("devices")]
    if not gpu:
        return {"peak_mem_mb": None, "mean_util_pct": None}
    utils = [s["devices"][0]["util_pct"] for s in gpu if s["devices"][0].get("util_pct") is not None]
    own = [sum(v for k, v in s.get("processes", {}).items() if keys is None or k in keys) for s in gpu if s.get("processes")]
    own = [v for v in own if v > 0]
    peak = max(own) if own else max(s["devices"][0]["mem_used_mb"] for s in gpu)
    return {"peak_mem_mb": peak, "mean_util_pct": mean(utils) if utils else None}


def alone_level(result: dict, samples: list[dict]) -> dict:
    """The one-trial level from a method's calibration result and the samples during it."""
    figures = window_figures(samples)
    if figures["peak_mem_mb"] is None:  # no NVML: torch's own count, without the CUDA context
        figures["peak_mem_mb"] = result.get("peak_memory_mb")
    return {"trials": 1, "examples_per_s_total": result["examples_per_s"], **figures}


def calibrate_packing(
    results: dict[str, dict], gpu_mem_mb: float,
    samples_during: Callable[[float, float], list[dict]], measure: Callable[[str, int], dict],
    note: Callable[[str], None] = lambda line: None,
) -> dict:
    """The trials-per-GPU decision from the methods' calibration results (each with its
    "window" of unix times): the most memory-hungry method is measured alone (from its
    telemetry) and then k at once for each k worth trying, stopping at the first level that
    does not beat the one below by choose_packing's minimum gain. `measure(method, k)` runs a level (measure_level)."""
    # The method that needs the most memory bounds how many trials fit on one GPU.
    name = max(results, key=lambda n: results[n].get("peak_memory_mb") or 0.0)
    levels = [alone_level(results[name], samples_during(*results[name]["window"]))]
    for k in packing_candidates(levels[0], gpu_mem_mb):
        note(f"calibration: {k} {name} trials at once on one GPU")
        levels.append(measure(name, k))
        if levels[-1]["examples_per_s_total"] < (1 + MIN_GAIN) * levels[-2]["examples_per_s_total"]:
            break  # this step up did not pay (choose_packing's rule): the next will not either
    decision = choose_packing(levels, gpu_mem_mb)
    return {**decision.to_dict(), "method": name}


def measure_level(
    job: dict, method: str, k: int, steps: int,
    samples_during: Callable[[float, float], list[dict]], watch: Callable[[dict[str, int]], None] = lambda pids: None,
    layout: dict | None = None,
) -> dict:
    """Run k calibration workers at once; their summed examples/s and the window's figures.
    `watch` hears the workers' pids (so the telemetry sampler can attribute GPU memory to them)
    and an empty mapping when they are done; `samples_during(t0, t1)` returns the telemetry
    samples between two unix times. `layout`: the option's memory layout on this GPU (its
    calibration's: budgetft.train.measure.calibrate_method), which every worker trains with."""
    with tempfile.TemporaryDirectory(prefix="budgetft-pack-") as tmp:
        folder = Path(tmp)
        (folder / "job.json").write_text(json.dumps(job))
        (folder / "layout.json").write_text(json.dumps(layout or {}))
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "budgetft.train.packing_probe", str(folder), method, str(steps), str(i), str(k)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )
            for i in range(k)
        ]
        keys = {f"pack-{i}": p.pid for i, p in enumerate(procs)}
        watch(keys)
        start = time.time()
        errors = _wait_all(procs, LEVEL_TIMEOUT_S)
        end = time.time()
        watch({})
        if errors:
            # Out of memory with k at once is an answer, not a crash: this level does not fit.
            return {"trials": k, "examples_per_s_total": 0.0, "peak_mem_mb": None, "mean_util_pct": None, "error": errors[0][:300]}
        results = [json.loads((folder / f"result-{i}.json").read_text()) for i in range(k)]
        began = max(r["timed_from"] for r in results)  # the window in which all k were stepping
    figures = window_figures(samples_during(began, end), set(keys))
    return {"trials": k, "examples_per_s_total": sum(r["examples_per_s"] for r in results), **figures, "wall_s": round(end - start, 1)}


def _wait_all(procs: list[subprocess.Popen], timeout_s: float) -> list[str]:
    """Wait for every worker; the first that fails, or the time limit, ends the others at once,
    so a level never waits on workers that can no longer finish. Returns the errors: the last
    line of what each failed worker said (one we killed, exit code < 0, says nothing useful)."""
    deadline = time.time() + timeout_s
    late = False
    while any(p.poll() is None for p in procs):
        failed = any(p.poll() not in (None, 0) for p in procs)
        late = time.time() > deadline
        if failed or late:
            for p in procs:
                if p.poll() is None:
                    p.kill()
            break
        time.sleep(0.1)
    errors = [f"the level did not finish in {timeout_s:.0f} s"] if late else []
    for p in procs:
        _, err = p.communicate()
        if p.returncode > 0:
            lines = (err or "").strip().splitlines()
            errors.append(lines[-1] if lines else f"exit {p.returncode}")
    return errors


def _worker(folder: Path, method: str, steps: int, index: int, k: int) -> None:
    """One packed worker: prepare, report ready, wait for the other k-1, calibrate, write."""
    task = prepare_task(JobSpec.model_validate(json.loads((folder / "job.json").read_text())))
    import torch  # noqa: F401  (CUDA initialises before the barrier, not inside the timed steps)

    (folder / f"ready-{index}").touch()
    deadline = time.time() + BARRIER_TIMEOUT_S
    while sum(1 for _ in folder.glob("ready-*")) < k:
        if time.time() > deadline:
            raise SystemExit(f"packed calibration: only some of the {k} workers got ready in {BARRIER_TIMEOUT_S:.0f} s")
        time.sleep(0.05)
    timed_from = time.time()
    layout = json.loads((folder / "layout.json").read_text()) if (folder / "layout.json").is_file() else {}
    result = calibrate_method(task, method, steps, layout or None)
    (folder / f"result-{index}.json").write_text(json.dumps({**result, "timed_from": timed_from}))


if __name__ == "__main__":
    _folder, _method, _steps, _index, _k = sys.argv[1:6]
    _worker(Path(_folder), _method, int(_steps), int(_index), int(_k))
