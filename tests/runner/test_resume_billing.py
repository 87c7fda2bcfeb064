"""A resume on the machine that ran the session before it starts no machine: it pays no new
one-minute billing minimum (issue 27); run.json records the machine start of each session."""

from typer.testing import CliRunner

from budgetft.cli import app
from budgetft.money.ledger import read_charges
from budgetft.money.machine_start import current_start
from budgetft.rundir import RunDir

runner = CliRunner()


def test_a_resume_on_the_same_boot_pays_no_new_minimum(tiny_job_file, tmp_path, monkeypatch):
    from budgetft.stages.tune import TuneSession

    def interrupted(self, plan, specs):
        raise KeyboardInterrupt

    monkeypatch.setattr(TuneSession, "round", interrupted)
    out = tmp_path / "run"
    first = runner.invoke(app, ["run", str(tiny_job_file), "--budget", "2", "--price-per-hour", "36", "--out", str(out)])
    assert first.exit_code == 130, first.output
    monkeypatch.setattr(TuneSession, "round", lambda self, plan, specs: None)  # the resume: a short session
    resumed = runner.invoke(app, ["run", "--resume", str(out)])
    assert resumed.exit_code == 0, resumed.output
    run = RunDir(out)
    assert run.run().machine_starts == {current_start(): [1, 2]}
    keys = [c.key for c in read_charges(run.ledger)]
    assert "s2:minimum" not in keys and sum(1 for k in keys if k and k.endswith(":minimum")) <= 1
