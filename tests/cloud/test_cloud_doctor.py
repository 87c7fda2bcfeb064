"""`budgetft doctor`: one line per check with its fix; non-zero without credentials (and without
loading the Compute client, which alone takes seconds), zero against the fakes with everything
in place, and each missing piece named with the command that adds it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_cloud_fakes import PROJECT, VM, fake_compute, gcs, gcs_rights, gcs_server  # noqa: F401  (fixtures)
from typer.testing import CliRunner

from budgetft.cli import app
from budgetft.cloud.doctor import CLOUD_CHECK_NAMES

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
NO_CREDENTIALS = """
import sys, runpy
sys.argv = ["budgetft", "doctor", "--cloud", "gcp"]
try:
    runpy.run_module("budgetft", run_name="__main__")
except SystemExit as exc:
    sys.stderr.write(f"\\nexit={exc.code} compute_v1_loaded={'google.cloud.compute_v1' in sys.modules}\\n")
"""


def test_without_credentials_every_check_has_a_line_and_a_fix_and_nothing_slow_is_loaded(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "BUDGETFT_", "CLOUDSDK_", "GCE_", "STORAGE_EMULATOR"))}
    env.update(HOME=str(tmp_path), CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), NO_GCE_CHECK="True", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", NO_CREDENTIALS], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert "exit=1 compute_v1_loaded=False" in done.stderr, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stdout.splitlines()
    credentials = next(line for line in lines if " credentials " in line)
    assert credentials.startswith("FAIL") and "fix: run `gcloud auth application-default login`" in credentials
    for name in CLOUD_CHECK_NAMES:  # every cloud check is listed, skipped, with what to do
        line = next(x for x in lines if x.split()[1:2] and x[6:30].strip() == name)
        assert line.startswith("skip") and "— fix:" in line
    assert lines[-1] == "1 check(s) failed"


def test_with_everything_in_place_it_exits_0(fake_compute, gcs):
    result = runner.invoke(app, ["doctor", "--cloud", "gcp", "--gpu", "v100"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "FAIL" not in out and out.rstrip().endswith("everything a run needs is in place")
    for words in ("credentials", "anonymous", f"project                  {PROJECT}", "NVIDIA_V100_GPUS in us-central1: limit 4",
                  "zones offering it        n1-standard-8 + nvidia-tesla-v100 in us-central1: us-central1-a",
                  "image                    pytorch-2-9-cu129-ubuntu-2404-nvidia-580-v20261120", "vm bucket rights         budgetft-vm@",
                  "vm self-delete", "your project rights      all 20 permissions"):
        assert words in out, words
    doc = json.loads(runner.invoke(app, ["doctor", "--cloud", "gcp", "--json"]).stdout)
    assert doc["ok"] is True and {c["name"] for c in doc["checks"]} >= set(CLOUD_CHECK_NAMES) | {"credentials", "project", "python", "torch", "disk"}
    assert all(set(c) == {"name", "status", "detail", "fix"} for c in doc["checks"])


def test_each_missing_piece_is_named_with_its_fix(fake_compute, gcs, gcs_rights):
    gcs_rights.roles[VM] = {"roles/storage.objectUser"}
    fake_compute.quota("us-central1", "NVIDIA_T4_GPUS", 0.0)
    fake_compute.quota("us-central1", "PREEMPTIBLE_NVIDIA_T4_GPUS", 0.0)
    fake_compute.project_bindings.clear()
    fake_compute.user_permissions = {"compute.instances.get"}
    fake_compute.images.clear()
    result = runner.invoke(app, ["doctor", "--cloud", "gcp", "--gpu", "t4", "--no-external-ip", "--hf-token-secret", "hf-token"])
    assert result.exit_code == 1
    lines = {line[6:30].strip(): line for line in result.stdout.splitlines() if len(line) > 30}
    assert lines["vm bucket rights"].startswith("FAIL") and "storage.buckets.get" in lines["vm bucket rights"] and "roles/budgetftBucket " in lines["vm bucket rights"]
    assert lines["gpu quota (region)"].startswith("FAIL") and "NVIDIA_T4_GPUS in us-central1: limit 0" in lines["gpu quota (region)"]
    assert lines["vm self-delete"].startswith("warn") and "budgetftVmSelfDelete" in lines["vm self-delete"]
    assert lines["your project rights"].startswith("FAIL") and "budgetftLauncher" in lines["your project rights"]
    assert lines["image"].startswith("FAIL") and "BUDGETFT_GCP_IMAGE" in lines["image"]
    assert lines["network"].startswith("FAIL") and "--enable-private-ip-google-access" in lines["network"] and "step 7" in lines["network"]
    assert lines["hub token secret"].startswith("FAIL") and "projects/test-project/secrets/hf-token does not exist" in lines["hub token secret"]
    assert all("— fix:" in line for line in lines.values() if line.startswith("FAIL"))


def test_the_local_doctor_and_its_refusals(tmp_path):
    result = runner.invoke(app, ["doctor", "--out", str(tmp_path / "runs")])
    assert result.exit_code in (0, 1) and "python" in result.stdout and "disk" in result.stdout
    assert runner.invoke(app, ["doctor", "--gpu", "t4"]).exit_code == 2  # a cloud option without --cloud
    assert runner.invoke(app, ["doctor", "--cloud", "aws"]).exit_code == 2
    bad = runner.invoke(app, ["doctor", "--cloud", "gcp", "--gpu", "k80"])
    assert bad.exit_code == 2 and "valid:" in bad.output
