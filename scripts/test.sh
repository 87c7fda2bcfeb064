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
exec .venv/bin/python -m pytest -q "$@"
