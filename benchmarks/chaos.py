"""Chaos benchmark: short `budgetft run`s, each hit by one fault at a random moment, and what
survived.

    python benchmarks/chaos.py [--runs N] [--faults a,b,...] [--seed 0] [--keep DIR]

Faults, in turn (a run's fault is the next of --faults, default all of FAULTS; its moment random):
  driver-kill-9   kill -9 of the driver mid-tuning, then `budgetft run --resume`
  sigint          Ctrl-C (SIGINT) to the driver mid-tuning, then `--resume`
  worker-kill-9   kill -9 of a trial's worker process mid-trial
  slow-step       one step made far longer than the prepaid window (BUDGETFT_CHAOS=slow:...)
  worker-raises   a worker raises an exception at a random step (BUDGETFT_CHAOS=raise:...)
  out-of-memory   a worker's allocation fails at a random step (BUDGETFT_CHAOS=memory:...)
  second-driver   mid-tuning, `run --resume DIR` and a second `run --out DIR`: both must be
                  refused at once (exit 2, naming the live driver's PID) and change nothing
  sigterm-<stage> SIGTERM to the driver in a stage (baselines, calibration, tuning, test,
                  report): exit 143 with the report written, then `--resume` finishes the run
                  (a run stopped in its report had finished: it is not resumed)
  sighup-tuning   SIGHUP (the terminal closed) mid-tuning: exit 129, the report, `--resume`
  disk-full       the run directory's disk filled mid-tuning (a 256 MiB tmpfs, which needs
                  root: skipped otherwise): exit 74, the report, nothing recorded lost; space
                  freed, `--resume` finishes the run
  kill-test       kill -9 of the driver during the held-out test, then `--resume`: the resumed
                  run scores the test (or says plainly that it is missing), never `test: null`
  kill-single-60  a single-trial plan (one configuration), the driver killed -9 once its trial
                  has checkpointed 60% of its steps, then `--resume`: the trial goes on from its
                  checkpoint, and the report's winner has at least the steps it had before

Each run trains a small random Llama built here (6 blocks, 256 wide: ~20 steps a second on
2 cores, so a fault lands mid-trial) on a learnable toy task, at $36/h (a cent a second)
with a $2.40 cap. It prints one line per run and a table whose failure columns must all be 0:
overspends (ledger total above the cap), ledger lines lost or torn (a line seen before the fault
missing or changed after it, or a line that does not parse), runs that ended without a report,
resumes that failed, stray processes (Ray processes started during the run still alive once
it is over), second drivers let in, signals not honoured (an exit code other than the shell's
128 + the signal's number), full disks not stopped (an exit code other than 74), held-out tests
lost (a resumed run's test.json neither scored nor saying it is missing) and trials not continued
(a killed single trial that started afresh, or a winner with fewer steps than it had at the kill).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = ("baselines", "calibration", "tuning", "test", "report")
FAULTS = ("driver-kill-9", "sigint", "worker-kill-9", "slow-step", "worker-raises", "out-of-memory", "second-driver",
          *(f"sigterm-{stage}" for stage in STAGES), "sighup-tuning", "disk-full", "kill-test", "kill-single-60")
RESUMED = ("driver-kill-9", "sigint", "sighup-tuning", "disk-full", *(f"sigterm-{stage}" for stage in STAGES[:-1]), "kill-test", "kill-single-60")
KILLED = ("driver-kill-9", "kill-test", "kill-single-60")  # the driver killed -9: no report until the resume
SIGNAL_EXIT = {"sigint": 130, "sighup-tuning": 129, **{f"sigterm-{stage}": 143 for stage in STAGES}}
DISK_MIB = 256  # the tmpfs the disk-full fault fills (a plan of the chaos model's full fine-tuning keeps ~14 MiB a trial)
CAP = Decimal("2.40")
PRICE = "36"
RAY_MARKERS = ("ray::", "raylet", "gcs_server", "ray/dashboard", "ray/_private", "ray/autoscaler")


@dataclass
class Outcome:
    run: int
    fault: str
    moment: str = ""
    exit_codes: list[int] = field(default_factory=list)
    spent: Decimal = Decimal(0)
    overspent: bool = False
    ledger_damage: int = 0
    report: bool = False
    resume_failed: bool = False
    strays: int = 0
    second_let_in: bool = False
    signal_missed: bool = False
    disk_not_stopped: bool = False
    test_lost: bool = False
    not_continued: bool = False
    skipped: str = ""
    seconds: float = 0.0
    statuses: str = ""


def build_workdir(root: Path) -> Path:
    """A small random Llama, its tokenizer and a job file, built in seconds."""
    import torch
    import yaml
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = "alpha beta the a is it there passage question answer yes no sky sea blue green red cat dog runs sits on under ? : .".split()
    vocab = {tok: i for i, tok in enumerate(["[PAD]", "[UNK]", "[EOS]", *words])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    model_dir = root / "model"
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]").save_pretrained(model_dir)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=256, intermediate_size=512, num_hidden_layers=6, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, eos_token_id=2, bos_token_id=2, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(model_dir)
    rng = random.Random(0)
    filler = ["the", "sky", "sea", "blue", "green", "red", "cat", "dog", "runs", "sits", "on", "under", "a"]

    def rows(n):
        out = []
        for _ in range(n):
            label = rng.random() < 0.6
            text = [rng.choice(filler) for _ in range(rng.randint(3, 12))]
            text.insert(rng.randint(0, len(text)), "alpha" if label else "beta")
            out.append({"passage": " ".join(text), "question": "is it there", "label": label})
        return out

    for split, n in (("train", 400), ("valid", 80)):
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows(n)))
    job = {
        "name": "chaos",
        "model": {"name": str(model_dir)},
        "data": {"name": "chaos", "files": {"train": str(root / "train.jsonl"), "validation": str(root / "valid.jsonl")}, "label_field": "label"},
        "prompt": {"template": "passage : {passage} . question : {question} ? answer :", "labels": {"true": " yes", "false": " no"},
                   "truncate_field": "passage", "max_length": 64},
        "train": {"batch_size": 8, "max_steps": 900, "eval_every": 150},
        "eval": {"limit": 40, "batch_size": 16, "test_rows": 30},  # a held-out test to stop in
        "methods": {"full": {"learning_rate": [3e-3, 1e-3, 3e-4]}},
        "seed": 0,
    }
    path = root / "chaos.yaml"
    path.write_text(yaml.safe_dump(job))
    # One configuration: a single-trial plan, killed at 60% of its steps (kill-single-60).
    single = {**job, "name": "chaos-single", "methods": {"full": {"learning_rate": 3e-3}}, "train": {**job["train"], "max_steps": 1500}}
    (root / "chaos-single.yaml").write_text(yaml.safe_dump(single))
    return path


def checkpointed(run_dir: Path, share: float) -> dict | None:
    """The running trial once its checkpoint holds `share` of its steps (trial.json's checkpoint)."""
    for t in trials(run_dir):
        step = (t.get("checkpoint") or {}).get("step") or 0
        if t.get("status") == "running" and step >= share * max(1, t.get("max_steps") or 0):
            return t
    return None


def ray_processes(since: float) -> list:
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "name", "cmdline", "create_time"]):
        try:
            text = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["name"] or "")
            if proc.info["create_time"] >= since and any(m in text for m in RAY_MARKERS):
                found.append(proc)
        except Exception:  # noqa: BLE001 - a process that ended while we looked
            continue
    return found


def ledger_lines(run_dir: Path) -> list[bytes]:
    path = run_dir / "ledger.jsonl"
    return path.read_bytes().split(b"\n")[:-1] if path.exists() else []


def trials(run_dir: Path) -> list[dict]:
    folder = run_dir / "trials"
    found = []
    for trial in sorted(folder.glob("*/trial.json")) if folder.is_dir() else []:
        try:
            found.append(json.loads(trial.read_text()))
        except (OSError, ValueError):
            continue
    return found


def wait_until(predicate, timeout: float, poll_s: float = 0.2) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return False


def last_stage(run_dir: Path) -> str:
    """The stage the driver's meter is paying for (meter.json's "stage"; the held-out test is
    its "evaluation" stage)."""
    try:
        stage = json.loads((run_dir / "meter.json").read_text()).get("stage", "")
    except (OSError, ValueError):
        return ""
    return {"evaluation": "test"}.get(stage, stage)


def training(run_dir: Path) -> bool:
    """A trial's worker is training now: its phase file says so (trial.json is written at
    evaluations only, so a one-evaluation trial shows its steps only at its end)."""
    for phase in (run_dir / "trials").glob("*/phase") if (run_dir / "trials").is_dir() else []:
        try:
            if json.loads(phase.read_text()).get("phase") == "training":
                return True
        except (OSError, ValueError):
            continue
    return any(t.get("steps", 0) >= 1 and t.get("status") == "running" for t in trials(run_dir))


def reached(fault: str, run_dir: Path) -> bool:
    """Whether the driver is in the stage `fault` hits."""
    stage = fault.split("-", 1)[1] if fault.startswith(("sigterm-", "sighup-")) else "tuning"
    if stage == "tuning":
        return training(run_dir)
    if stage == "baselines":  # with test rows only the majority is scored here (milliseconds): the session's start up to it
        return (run_dir / "run.json").exists() and not (run_dir / "baselines.json").exists()
    return last_stage(run_dir) == stage


def mount_small_disk(where: Path) -> bool:
    """A DISK_MIB tmpfs at `where` (needs root); False when it cannot be mounted."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MIB}m", "tmpfs", str(where)], capture_output=True)
    return done.returncode == 0


def fill_disk(where: Path) -> Path:
    """Fill the filesystem at `where` to its last MiB, as a neighbour writing a big file would."""
    import shutil

    filler = where / "filler"
    left = shutil.disk_usage(where).free - 1024 * 1024
    with filler.open("wb") as fh:
        block = b"\0" * (1024 * 1024)
        while left >= len(block):
            fh.write(block)
            left -= len(block)
    return filler


def one_run(i: int, fault: str, job: Path, work: Path, env: dict, rng: random.Random) -> Outcome:
    out = work / f"run{i:02d}"
    outcome = Outcome(i + 1, fault)
    started = time.time()
    run_env = dict(env)
    disk = None
    if fault == "disk-full":
        disk = work / f"disk{i:02d}"
        if not mount_small_disk(disk):
            outcome.skipped = "mounting a tmpfs needs root"
            outcome.report = True
            return outcome
        out = disk / "run"
    # Faults inside a worker: trial 1 or 2, at a step somewhere in its first half.
    if fault in ("slow-step", "worker-raises", "out-of-memory"):
        kind = {"slow-step": "slow", "worker-raises": "raise", "out-of-memory": "memory"}[fault]
        # The first trial meets no competition at ASHA's rungs, so it reaches any step it plans.
        trial, step = "t001", rng.randint(1, 60)
        run_env["BUDGETFT_CHAOS"] = f"{kind}:{trial}:{step}"
        outcome.moment = f"{trial} step {step}"
    if fault == "kill-single-60":
        job = job.with_name("chaos-single.yaml")
    cmd = [sys.executable, "-m", "budgetft", "run", str(job), "--budget", str(CAP), "--price-per-hour", PRICE, "--out", str(out)]
    # SIGHUP at its default in the driver, as in a terminal: this script may itself run under nohup.
    driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=run_env, start_new_session=True,
                              preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    before: list[bytes] = []
    if fault in ("driver-kill-9", "sigint", "worker-kill-9"):
        seen = wait_until(lambda: training(out), 240)
        delay = rng.uniform(0.0, 4.0)
        time.sleep(delay)
        running = [t for t in trials(out) if t.get("status") == "running" and t.get("steps", 0) < t.get("max_steps", 0)]
        outcome.moment = f"{delay:.1f} s into training" + ("" if seen else " (no trial seen training)")
        before = ledger_lines(out)
        if fault == "worker-kill-9" and running:
            try:
                os.kill(int(running[0]["pid"]), signal.SIGKILL)
                outcome.moment += f", {running[0]['trial_id']}"
            except (KeyError, ProcessLookupError):
                outcome.moment += ", its worker had already ended"
        elif fault == "driver-kill-9":
            driver.send_signal(signal.SIGKILL)
        elif fault == "sigint":
            driver.send_signal(signal.SIGINT)
    elif fault.startswith(("sigterm-", "sighup-")):
        seen = wait_until(lambda: reached(fault, out) or driver.poll() is not None, 600, poll_s=0.02)
        before = ledger_lines(out)
        if seen and driver.poll() is None:
            driver.send_signal(signal.SIGHUP if fault.startswith("sighup-") else signal.SIGTERM)
            outcome.moment = f"in {fault.split('-', 1)[1]}"
        else:
            outcome.skipped = f"the run left {fault.split('-', 1)[1]} before the signal"
    elif fault == "second-driver":
        wait_until(lambda: training(out), 240)
        before = ledger_lines(out)
        others = [[sys.executable, "-m", "budgetft", "run", "--resume", str(out)], cmd]
        for other in others:
            t0 = time.time()
            second = subprocess.run(other, capture_output=True, text=True, env=env, timeout=300)
            if second.returncode != 2 or f"PID {driver.pid}" not in second.stderr:
                outcome.second_let_in = True
                print(f"  a second driver was not refused: exit {second.returncode}: {second.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            outcome.moment += f"{'; ' if outcome.moment else ''}refused in {time.time() - t0:.1f} s"
    elif fault == "kill-test":
        seen = wait_until(lambda: last_stage(out) == "test" or driver.poll() is not None, 600, poll_s=0.02)
        before = ledger_lines(out)
        if seen and driver.poll() is None:
            driver.send_signal(signal.SIGKILL)
            outcome.moment = "in the held-out test"
        else:
            outcome.skipped = "the run left the held-out test before the kill"
    elif fault == "kill-single-60":
        seen = wait_until(lambda: checkpointed(out, 0.6) is not None or driver.poll() is not None, 600, poll_s=0.05)
        before = ledger_lines(out)
        hit = checkpointed(out, 0.6)
        if hit is not None and driver.poll() is None:
            driver.send_signal(signal.SIGKILL)
            time.sleep(1.0)
            hit = next((t for t in trials(out) if t["trial_id"] == hit["trial_id"]), hit)  # its last checkpoint before the kill
            kept_steps = int(hit["checkpoint"]["step"])
            outcome.moment = f"{hit['trial_id']} at step {hit.get('steps')} of {hit.get('max_steps')}, checkpoint {kept_steps}"
        else:
            outcome.skipped = "the single trial ended before 60% of its steps were checkpointed"
    elif fault == "disk-full":
        wait_until(lambda: training(out), 240)
        before = ledger_lines(out)
        filler = fill_disk(disk)
        outcome.moment = "filled mid-tuning"
    try:
        _, stderr = driver.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        driver.kill()
        _, stderr = driver.communicate()
    outcome.exit_codes.append(driver.returncode)
    if fault in SIGNAL_EXIT and not outcome.skipped:
        outcome.signal_missed = driver.returncode != SIGNAL_EXIT[fault]
    if fault == "disk-full":
        outcome.disk_not_stopped = driver.returncode != 74
        filler.unlink(missing_ok=True)  # space freed: the run can go on
    # Written by the run the fault hit, before any resume; a kill -9 leaves that to the resume.
    outcome.report = (out / "report.md").exists() or fault in KILLED
    if fault in RESUMED and not outcome.skipped:
        resumed = subprocess.run([sys.executable, "-m", "budgetft", "run", "--resume", str(out)], capture_output=True, text=True, env=env, timeout=900)
        outcome.exit_codes.append(resumed.returncode)
        outcome.resume_failed = resumed.returncode != 0
        if outcome.resume_failed:
            print(f"  resume of run {i + 1} failed: {resumed.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
    elif driver.returncode != 0 and fault not in SIGNAL_EXIT:
        print(f"  run {i + 1} exited {driver.returncode}: {stderr.strip().splitlines()[-1:]}", file=sys.stderr)
    outcome.seconds = time.time() - started
    if fault == "kill-test" and not outcome.skipped:
        test = json.loads((out / "test.json").read_text()) if (out / "test.json").exists() else {}
        outcome.test_lost = not (test.get("metrics") or test.get("missing") or (test and not test.get("winner")))
    if fault == "kill-single-60" and not outcome.skipped:
        after_trials = trials(out)
        went_on = next((t for t in after_trials if t["trial_id"] == hit["trial_id"]), {})
        test = json.loads((out / "test.json").read_text()) if (out / "test.json").exists() else {}
        winner = next((t for t in after_trials if t["trial_id"] == test.get("winner")), {})
        outcome.not_continued = (not any(c.get("from_step") == kept_steps for c in went_on.get("continued") or [])
                                 or winner.get("steps", 0) < kept_steps)
        outcome.moment += f"; went on to step {went_on.get('steps')}"

    from budgetft.money.ledger import LedgerError, read_charges

    after = ledger_lines(out)
    outcome.ledger_damage = sum(1 for k, line in enumerate(before) if k >= len(after) or after[k] != line)
    try:
        charges = read_charges(out / "ledger.jsonl")
        outcome.ledger_damage += len(after) - len(charges)  # complete lines that do not parse
        outcome.spent = charges[-1].total if charges else Decimal(0)
        if fault == "second-driver":  # the refused drivers opened no session of their own
            outcome.second_let_in |= any((c.key or "").startswith("s2:") for c in charges)
    except LedgerError:
        outcome.ledger_damage += 1
    outcome.overspent = outcome.spent > CAP
    outcome.report = outcome.report and (out / "report.md").exists()
    statuses = [t.get("status", "?") for t in trials(out)]
    outcome.statuses = ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses)))
    time.sleep(2.0)  # Ray's processes exit a moment after the driver does
    strays = ray_processes(started)
    outcome.strays = len(strays)
    for proc in strays:  # leave the machine clean for the next run
        try:
            proc.kill()
        except Exception:  # noqa: BLE001
            pass
    if disk is not None:
        import shutil

        kept = work / f"run{i:02d}"  # the run's records, off the tmpfs before it goes
        shutil.copytree(out, kept, ignore=shutil.ignore_patterns("ray"), dirs_exist_ok=True)
        subprocess.run(["umount", str(disk)], capture_output=True)
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=None, help="how many runs (each gets the next fault in turn; default: one per fault)")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated faults to take turns (default: all: {', '.join(FAULTS)})")
    parser.add_argument("--seed", type=int, default=0, help="seed for the faults' moments")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run directories here")
    args = parser.parse_args()
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        parser.error(f"unknown fault(s) {', '.join(unknown)}; faults: {', '.join(FAULTS)}")
    runs = args.runs or len(faults)
    rng = random.Random(args.seed)
    work = Path(args.keep or tempfile.mkdtemp(prefix="budgetft-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "BUDGETFT_CACHE": str(work / "cache"), "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT)}
    os.environ.update({k: env[k] for k in ("BUDGETFT_CACHE", "HF_HUB_OFFLINE")})
    job = build_workdir(work)
    print(f"{runs} runs at ${CAP} cap, ${PRICE}/h, in {work}")
    outcomes = []
    for i in range(runs):
        fault = faults[i % len(faults)]
        o = one_run(i, fault, job, work, env, rng)
        outcomes.append(o)
        if o.skipped:
            print(f"run {o.run:2d}  {o.fault:16s} skipped: {o.skipped}", flush=True)
            continue
        print(f"run {o.run:2d}  {o.fault:16s} {o.moment:34s} exit {','.join(map(str, o.exit_codes)):8s} "
              f"${o.spent} of ${CAP}  report {'yes' if o.report else 'NO'}  trials: {o.statuses}  {o.seconds:.0f} s", flush=True)
    done = [o for o in outcomes if not o.skipped]
    columns = ("runs", "faults", "overspends", "ledger lines lost or torn", "runs without a report", "resumes that failed", "stray processes",
               "second drivers let in", "signals not honoured", "full disks not stopped", "held-out tests lost", "trials not continued")
    values = (len(done), len(done), sum(o.overspent for o in done), sum(o.ledger_damage for o in done),
              sum(not o.report for o in done), sum(o.resume_failed for o in done), sum(o.strays for o in done),
              sum(o.second_let_in for o in done), sum(o.signal_missed for o in done), sum(o.disk_not_stopped for o in done),
              sum(o.test_lost for o in done), sum(o.not_continued for o in done))
    print()
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---:" for _ in columns) + "|")
    print("| " + " | ".join(map(str, values)) + " |")
    return 0 if sum(values[2:]) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
