#!/usr/bin/env bash
# The README's main command, end to end, on a small budget, while a second process keeps one
# core busy (a shared machine is where users run it). Fails if the run exits non-zero, spends
# past its cap, or writes no report. CI runs it after the tests (.ci/run).
#
#   ./scripts/smoke.sh [BUDGET]      BUDGET in USD at the README's price (default: the README's)
#
# The command is read from the README itself (the line that runs `.venv/bin/budgetft run`), so
# what CI runs is what a new user types, budget included (~15 minutes); --out is added.
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${1:-${BUDGETFT_SMOKE_BUDGET:-}}
line=$(grep -m1 -oE '\.venv/bin/budgetft run [^`]*' README.md) || { echo "smoke: no '.venv/bin/budgetft run' line in README.md" >&2; exit 1; }
read -r -a cmd <<<"$line"
for i in "${!cmd[@]}"; do
  if [ -n "$budget" ] && [ "${cmd[$i]}" = "--budget" ]; then cmd[i + 1]=$budget; fi
done
out=$(mktemp -d)/run
# A noisy neighbour: one core kept busy for the whole run.
python3 -c 'while True: pass' &
hog=$!
trap 'kill $hog 2>/dev/null || true' EXIT
echo "smoke: ${cmd[*]} --out $out  (with a second process keeping one core busy)"
start=$(date +%s)
"${cmd[@]}" --out "$out"
echo "smoke: the run took $(($(date +%s) - start)) s"
.venv/bin/python - "$out" <<'EOF'
import json
import sys
from decimal import Decimal
from pathlib import Path

from budgetft.money.ledger import read_charges

out = Path(sys.argv[1])
info = json.loads((out / "run.json").read_text())
charges = read_charges(out / "ledger.jsonl")
total, cap = charges[-1].total, Decimal(info["cap_usd"])
problems = []
if total > cap:
    problems.append(f"spent ${total}, past the ${cap} cap")
if not (out / "report.md").is_file():
    problems.append("no report.md")
if info.get("status") != "finished":
    problems.append(f"run status {info.get('status')!r}, not 'finished'")
trials = [json.loads(p.read_text()) for p in (out / "trials").glob("*/trial.json")]
print(f"smoke: ${total} of the ${cap} cap; {len(trials)} trial(s): " + ", ".join(f"{t['trial_id']} {t['status']}" for t in trials))
if problems:
    sys.exit("smoke FAILED: " + "; ".join(problems))
print("smoke: passed")
EOF
