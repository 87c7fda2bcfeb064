"""Without a terminal the run's output still shows progress: a plain line every so often."""

import io
import time
from decimal import Decimal
from types import SimpleNamespace

from rich.console import Console

from budgetft.rundir import RunDir, TrialRecord
from budgetft.runner.display import RunDisplay


def test_a_run_written_to_a_file_prints_plain_progress_lines(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_trial(TrialRecord(trial_id="t001-full", method="full", max_steps=1200, steps=412, examples_per_s=14.25,
                                end_moved={"planned": 1200, "to": 1150}))
    out = io.StringIO()
    fake = SimpleNamespace(
        console=Console(file=out, force_terminal=False, width=200), run=run,
        meter=SimpleNamespace(stage="tuning"), tuning=SimpleNamespace(running={"t001-full"}),
        ledger=SimpleNamespace(spent=Decimal("0.0812"), cap=Decimal("0.25")),
        tracker=SimpleNamespace(best=(0.64, "t001-full")),
    )
    with RunDisplay(fake, live=False, progress_every_s=0.05):
        time.sleep(0.3)
    lines = [line for line in out.getvalue().splitlines() if line.startswith("progress:")]
    assert lines, out.getvalue()
    assert lines[0] == "progress: tuning; t001-full: step 412 of 1150, 14.2 examples/s; spent $0.0812 of $0.25; best 64.0% (t001-full)"
    n = len(lines)
    time.sleep(0.2)
    assert len([x for x in out.getvalue().splitlines() if x.startswith("progress:")]) == n  # stopped with the display
