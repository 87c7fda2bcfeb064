#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The cloud start-up script is linted with shellcheck (Debian's package); without it that one
# test is skipped and says so.
if ! command -v shellcheck >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  { apt-get update -q && apt-get install -y -q shellcheck; } >/dev/null 2>&1 || echo "shellcheck could not be installed: its test will be skipped"
fi
# Tests run on three workers (pytest-xdist): most of the suite's time is end-to-end runs that
# wait on Ray and the meter's clock, not on the CPU. A module whose fixtures build a run keeps
# its tests on one worker (xdist_group). BUDGETFT_TEST_WORKERS=0 runs them in this process.
exec .venv/bin/python -m pytest -q -n "${BUDGETFT_TEST_WORKERS:-3}" --dist loadgroup --durations=15 "$@"
