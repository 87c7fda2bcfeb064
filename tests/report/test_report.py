"""Reports from a recorded run directory (tests/fixtures/recorded_run; no training).

The fixture, by construction (see tests/fixtures/recorded_run/README.md): 40 evaluation rows,
rows 0-23 of the majority class "true" and 24-39 "false", so always answering "true" scores
24/40 = 60%. Hand computations used below:

  trial               kept eval   correct   b (right, maj. wrong)  c (wrong, maj. right)  cost
  lora-000            step 100    35/40     12 (rows 24-35)        1  (row 0)             $0.30
  lora-002 (cap)      step 100    32/40     10 (rows 24-33)        2  (rows 22-23)        $0.40
  ia3-001 (ASHA)      step 50     27/40      5 (rows 24-28)        2  (rows 22-23)        $0.05
  prompt_tuning-004   step 50     12/40      6 (rows 24-29)       18  (rows 6-23)         $0.10
  prompt_tuning-003   failed, no evaluation                                               $0.02
  zero-shot                       20/40      8 (rows 24-31)       12  (rows 12-23)        $0.02

McNemar exact p = 2 * P(X <= min(b, c)), X ~ Binomial(b + c, 1/2):
  lora-000: 2 * (1 + 13) / 2^13 = 28/8192; lora-002: 2 * (1 + 12 + 66) / 2^12 = 158/4096;
  ia3-001: 2 * (1 + 7 + 21) / 2^7 = 58/128; prompt_tuning-004: 2 * 190051 / 2^24.
Lift per dollar: lora-000 27.5 / 0.30 = 91.67; lora-002 20 / 0.40 = 50; ia3-001 7.5 / 0.05 = 150.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from budgetft.cli import app
from budgetft.money.ledger import Charge, read_charges
from budgetft.report import REPORT_FILES, build, render, render_comparison, write_reports
from budgetft.report import stats
from budgetft.report.compare import compare
from budgetft.report.load import NotARunDir, load_run
from budgetft.report.rows import sort_rows

FIXTURE = Path(__file__).parent / "fixtures" / "recorded_run"
runner = CliRunner()


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return Path(shutil.copytree(FIXTURE, tmp_path / "run"))


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def scale_ledger(run: Path, factor: str) -> None:
    """The same run at another price: every charge times `factor`, chain and totals rebuilt."""
    total, lines = Decimal(0), []
    for c in read_charges(run / "ledger.jsonl"):
        amount = (c.amount * Decimal(factor)).quantize(Decimal("0.000001"))
        total += amount
        lines.append(Charge(c.seq, c.ts, c.category, c.description, amount, total, c.cap, c.trial, c.key).to_json())
    (run / "ledger.jsonl").write_text("\n".join(lines) + "\n")


# -- pure statistics


def test_exact_binomial_matches_hand_computation():
    assert stats.binomial_two_sided(1, 13) == pytest.approx(28 / 8192, rel=1e-12)
    assert stats.binomial_two_sided(2, 12) == pytest.approx(158 / 4096, rel=1e-12)
    assert stats.binomial_two_sided(0, 0) == 1.0 and stats.binomial_two_sided(5, 10) == 1.0
    # p = 0.6, n = 4: P(4) = 0.1296 and only P(0) = 0.0256 is smaller -> 0.1552
    assert stats.binomial_two_sided(4, 4, 0.6) == pytest.approx(0.1552, rel=1e-9)
    assert stats.binomial_two_sided(3, 4, 0.6) == pytest.approx(1.0)


def test_mcnemar_counts_discordant_pairs_only():
    model = [True] * 10 + [True, True, True, False]
    base = [True] * 10 + [False, False, False, True]  # 10 concordant rows do not matter
    t = stats.mcnemar_exact(model, base)
    assert (t.better, t.worse, t.test) == (3, 1, "mcnemar_exact")
    assert t.p_value == pytest.approx(2 * (1 + 4) / 16) and t.verdict == stats.NOT_SIGNIFICANT
    with pytest.raises(ValueError, match="same rows"):
        stats.mcnemar_exact([True], [True, False])


def test_pareto_front_hand_example():
    points = [(0.30, 0.875), (0.40, 0.80), (0.05, 0.675), (0.10, 0.30), (0.05, 0.50), (0.30, 0.875), (0.50, 0.90)]
    # (0.05, 0.675) beats (0.05, 0.50) and (0.10, 0.30); (0.30, 0.875) twice (equal points both stay)
    # beats (0.40, 0.80); (0.50, 0.90) is the most accurate.
    assert stats.pareto_front(points) == [2, 0, 5, 6]
    assert stats.pareto_front([]) == []


# -- the recorded run


def test_ranking_significance_ci_and_pareto_of_the_recorded_run():
    report = load_run(FIXTURE)
    by_id = {t.id: t for t in report.trials}
    # Significant wins first by lift per dollar; ia3-001 has the most lift per dollar (150) but
    # is not significant, so it comes after them, unranked.
    assert [t.id for t in report.trials] == ["lora-000", "lora-002", "ia3-001", "prompt_tuning-004", "prompt_tuning-003"]
    assert [t.rank for t in report.trials] == [1, 2, None, None, None]
    expected = {  # id: (verdict, better, worse, p, accuracy, CI low, CI high, lift, lift/$)
        "lora-000": (stats.BETTER, 12, 1, 28 / 8192, 0.875, 0.7389, 0.9454, 27.5, 91.6667),
        "lora-002": (stats.BETTER, 10, 2, 158 / 4096, 0.80, 0.6524, 0.8950, 20.0, 50.0),
        "ia3-001": (stats.NOT_SIGNIFICANT, 5, 2, 58 / 128, 0.675, 0.5202, 0.7992, 7.5, 150.0),
        "prompt_tuning-004": (stats.WORSE, 6, 18, 2 * 190051 / 2**24, 0.30, 0.1807, 0.4543, -30.0, -300.0),
    }
    for tid, (verdict, b, c, p, acc, lo, hi, lift, lpd) in expected.items():
        t = by_id[tid]
        assert (t.verdict, t.vs_majority.better, t.vs_majority.worse) == (verdict, b, c), tid
        assert t.vs_majority.p_value == pytest.approx(p, rel=1e-9), tid
        assert t.accuracy == pytest.approx(acc) and t.ci95 == pytest.approx((lo, hi), abs=1e-4), tid
        assert t.lift_points == pytest.approx(lift) and t.lift_per_usd == pytest.approx(lpd, abs=1e-4), tid
    # The kept evaluation is the best (step 100: 87.5%), not the last (step 150: 85%).
    assert (by_id["lora-000"].kept_step, by_id["lora-000"].last_accuracy) == (100, 0.85)
    assert by_id["lora-000"].accuracy_per_usd == pytest.approx(87.5 / 0.30)
    # Costs: ledger charges tagged with the trial id, exact Decimals.
    assert by_id["lora-000"].cost == Decimal("0.30") and by_id["prompt_tuning-003"].cost == Decimal("0.02")
    assert report.majority.accuracy == 0.6 and report.majority.ci95 == pytest.approx((0.4460, 0.7365), abs=1e-4)
    assert report.zero_shot.cost == Decimal("0.02") and report.zero_shot.verdict == stats.NOT_SIGNIFICANT
    # ia3-001 is cheapest and beats every cheaper trial; lora-000 is the most accurate.
    assert report.pareto == ["ia3-001", "lora-000"]
    assert report.spent == Decimal("0.97") and report.cap == Decimal("1.00")
    assert {k: v for k, v in report.spend_by_category.items() if v} == {
        "baselines": Decimal("0.02"), "calibration": Decimal("0.05"), "training": Decimal("0.74"),
        "evaluation": Decimal("0.13"), "overhead": Decimal("0.03")}
    assert report.warnings == []


def test_summary_and_recommendation():
    report, summary, _ = build(FIXTURE)
    assert summary.best.id == "lora-000" and summary.most_efficient.id == "lora-000"
    assert summary.budget_limited is True and "lora-002 still improving" in summary.budget_note
    assert summary.recommendation.startswith("Pay for LoRA (r=8 alpha=16 lr=0.001) on Tesla V100-SXM2-16GB")
    assert "91.7 points per dollar" in summary.recommendation


def test_sort_by_another_column():
    report = load_run(FIXTURE)
    assert [t.id for t in sort_rows(report.trials, "cost")] == ["prompt_tuning-003", "ia3-001", "prompt_tuning-004", "lora-000", "lora-002"]
    assert [t.id for t in sort_rows(report.trials, "lift_per_usd")][:3] == ["ia3-001", "lora-000", "lora-002"]
    assert sort_rows(report.trials, "accuracy")[-1].id == "prompt_tuning-003"  # no value: last
    with pytest.raises(ValueError, match="valid: rank"):
        sort_rows(report.trials, "colour")


def test_write_reports_files_and_contents(run_dir):
    written = write_reports(run_dir)
    assert sorted(p.name for p in written) == sorted(REPORT_FILES)
    for name in ("accuracy_vs_cost.png", "spend_over_time.png"):
        data = (run_dir / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 20_000
    md = (run_dir / "report.md").read_text()
    assert md.count("**yes** (p=") == 2  # only the two significant wins read as wins
    assert "| ia3-001 | IA3 lr=0.01 | 67.5 | 52.0–79.9 | +7.5 | no, n.s. (p=0.453) | 150.0 | $0.05 | stopped by ASHA |" in md
    assert "no, worse (p=0.023)" in md and "prompt_tuning-003 failed: RuntimeError: CUDA out of memory" in md
    assert "McNemar's exact test" in md and "alpha = 0.05" in md and "![Accuracy against cost](accuracy_vs_cost.png)" in md
    doc = json.loads((run_dir / "report.json").read_text())
    assert (doc["schema"], doc["schema_version"]) == ("budgetft.report", 1)
    assert doc["spend"]["total_usd"] == "0.970000" and doc["spend"]["by_category_usd"]["training"] == "0.740000"
    assert [t["id"] for t in doc["trials"]][:2] == ["lora-000", "lora-002"] and doc["pareto_front"] == ["ia3-001", "lora-000"]
    first = doc["trials"][0]
    assert first["vs_majority"] == {"test": "mcnemar_exact", "p_value": 28 / 8192, "better_rows": 12, "worse_rows": 1, "verdict": "better"}
    assert first["cost_usd"] == "0.300000" and first["kept_step"] == 100 and first["beats_majority"] is True
    rows = list(csv.DictReader(io.StringIO((run_dir / "results.csv").read_text())))
    assert [r["id"] for r in rows] == ["majority", "zero_shot", "lora-000", "lora-002", "ia3-001", "prompt_tuning-004", "prompt_tuning-003"]
    assert rows[4]["verdict"] == "not_significant" and rows[6]["status"] == "failed" and rows[6]["accuracy"] == ""


def test_html_embeds_the_plots(run_dir):
    write_reports(run_dir)
    page = render(run_dir, "html")
    assert page.startswith("<!doctype html>") and "<table>" in page and "data:image/png;base64," in page


def test_cloud_run_breakdown_lists_boot_and_upload(run_dir):
    charges = read_charges(run_dir / "ledger.jsonl")
    total = charges[-1].total
    extra = []
    for seq, (cat, amount) in enumerate((("boot", "0.004"), ("upload", "0.001")), start=len(charges) + 1):
        total += Decimal(amount)
        extra.append(Charge(seq, "2025-06-01T12:19:59.000000Z", cat, cat, Decimal(amount), total, Decimal(1), None, None).to_json())
    with (run_dir / "ledger.jsonl").open("a") as fh:
        fh.write("\n".join(extra) + "\n")
    report, summary, _ = build(run_dir)
    assert [cat for cat, _ in summary.spend][:2] == ["boot", "upload"] and report.spent == Decimal("0.975")
    assert "boot $0.0040 · upload $0.0010 · baselines $0.02" in render(run_dir, "md")


# -- runs that are not finished or not whole


def test_interrupted_run(run_dir):
    edit_json(run_dir / "run.json", status="interrupted", finished=None)
    edit_json(run_dir / "trials" / "lora-002" / "trial.json", status="running")
    report, summary, _ = build(run_dir)
    lora2 = next(t for t in report.trials if t.id == "lora-002")
    assert lora2.status == "interrupted" and lora2.ended == "interrupted" and lora2.rank == 2
    assert any("interrupted" in w for w in report.warnings)
    assert summary.budget_limited is True  # 97% of the cap was spent
    assert "> **Note:** the run was interrupted" in render(run_dir, "md")


def test_still_running_run_without_baselines_or_charges(run_dir):
    edit_json(run_dir / "run.json", status="running", finished=None)
    (run_dir / "baselines.json").unlink()
    (run_dir / "ledger.jsonl").write_text("")
    edit_json(run_dir / "trials" / "lora-002" / "trial.json", status="running", evals=[])
    report, summary, _ = build(run_dir)
    assert report.majority is None and report.spent == 0
    assert all(t.rank is None and t.verdict == stats.UNTESTED for t in report.trials)
    # Costs fall back to trial.json when the ledger has none.
    assert next(t for t in report.trials if t.id == "lora-000").cost == Decimal("0.300000")
    assert "without the majority baseline" in summary.recommendation and summary.budget_limited is None
    assert any("baselines.json is missing" in w for w in report.warnings)
    assert any("ledger is empty" in w for w in report.warnings)
    assert len(write_reports(run_dir)) == len(REPORT_FILES)


def test_nothing_recorded_yet(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"run_id": "r0", "status": "running"}))
    report, summary, _ = build(run)
    assert report.trials == [] and summary.recommendation.startswith("Nothing to recommend yet")
    assert len(write_reports(run)) == len(REPORT_FILES)
    with pytest.raises(NotARunDir, match="no run.json"):
        load_run(tmp_path)


def test_without_per_row_vectors_falls_back_to_exact_binomial(run_dir):
    path = run_dir / "trials" / "ia3-001" / "trial.json"
    trial = json.loads(path.read_text())
    for e in trial["evals"]:
        del e["correct"]
    path.write_text(json.dumps(trial))
    ia3 = next(t for t in load_run(run_dir).trials if t.id == "ia3-001")
    assert ia3.vs_majority.test == "binomial_exact"
    assert ia3.vs_majority.p_value == pytest.approx(stats.binomial_two_sided(27, 40, 0.6))


# -- comparing runs


def test_compare_two_runs_says_which_bought_more_accuracy_per_dollar(tmp_path):
    a = Path(shutil.copytree(FIXTURE, tmp_path / "v100"))
    b = Path(shutil.copytree(FIXTURE, tmp_path / "l4"))
    scale_ledger(b, "0.5")  # same results for half the money
    edit_json(b / "run.json", run_id="l4-spot", hardware={"instance": "g2-standard-8", "gpu": "NVIDIA L4", "provisioning": "spot"})
    comp = compare([load_run(a), load_run(b)])
    assert comp.winner.report.run_id == "l4-spot"
    # run lift/$ = best lift (27.5 points) / total spend: 27.5 / 0.97 and 27.5 / 0.485
    assert [ln.run_lift_per_usd for ln in comp.lines] == pytest.approx([27.5 / 0.97, 27.5 / 0.485])
    assert comp.verdict.startswith("l4-spot, on g2-standard-8 (NVIDIA L4, spot), bought more accuracy per dollar")
    doc = json.loads(render_comparison([a, b], "json"))
    assert doc["winner"] == "l4-spot" and doc["schema"] == "budgetft.comparison"
    result = runner.invoke(app, ["report", str(a), str(b)], terminal_width=100)
    assert result.exit_code == 0, result.output
    assert "Runs side by side" in result.output and "bought more accuracy per dollar" in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 100


def test_compare_with_no_significant_win_names_no_winner(tmp_path, run_dir):
    other = Path(shutil.copytree(FIXTURE, tmp_path / "other"))
    for run in (run_dir, other):
        for tid in ("lora-000", "lora-002"):
            (run / "trials" / tid / "trial.json").unlink()
    comp = compare([load_run(run_dir), load_run(other)])
    assert comp.winner is None and comp.verdict.startswith("No run bought a significant win")
    # It still says which did better per dollar, as a hint within noise.
    lines = sorted(comp.lines, key=lambda ln: ln.run_lift_per_usd, reverse=True)
    assert f"{lines[0].report.run_id} got the most lift per dollar" in comp.verdict and "within noise" in comp.verdict


# -- the command line


def test_cli_table_fits_100_columns(run_dir):
    result = runner.invoke(app, ["report", str(run_dir)], terminal_width=100)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert max(len(line) for line in out.splitlines()) <= 100
    assert "yes, p=0.003" in out and "no, p=0.453" in out and "worse, p=0.023" in out
    assert (run_dir / "report.md").is_file()  # the files in the run dir are refreshed too


def test_cli_formats_sort_and_out(run_dir, tmp_path):
    result = runner.invoke(app, ["report", str(run_dir), "--format", "json", "--sort", "cost", "--no-write"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["trials"][0]["id"] == "prompt_tuning-003" and not (run_dir / "report.json").exists()
    out = tmp_path / "out" / "r.csv"
    result = runner.invoke(app, ["report", str(run_dir), "-f", "csv", "--out", str(out), "--no-write"])
    assert result.exit_code == 0 and out.read_text().startswith("kind,id,rank,")


def test_cli_errors_are_messages_not_tracebacks(tmp_path, run_dir):
    result = runner.invoke(app, ["report", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such directory" in result.output
    result = runner.invoke(app, ["report", str(run_dir), "--sort", "colour"])
    assert result.exit_code == 2 and "valid: rank" in result.output


def test_printed_markdown_and_json_are_the_files_the_run_writes(run_dir):
    """`budgetft report RUN --format md|json` prints what report.md / report.json hold,
    the hardware section included."""
    from budgetft.report import render, write_reports

    import re

    def undated(text):  # the report's time stamp is the only line allowed to differ
        return re.sub(r"report of \S+", "report of <time>", text)

    write_reports(run_dir)
    assert undated(render(run_dir, "md")) == undated((run_dir / "report.md").read_text())
    assert "## Hardware" in render(run_dir, "md")
    printed, written = json.loads(render(run_dir, "json")), json.loads((run_dir / "report.json").read_text())
    printed.pop("generated"), written.pop("generated")
    assert printed == written and "hardware" in printed


def test_a_fitted_class_bias_is_reported(run_dir):
    write_reports(run_dir)
    assert "class prior" not in (run_dir / "report.md").read_text()  # the recorded run predates it
    edit_json(run_dir / "trials" / "lora-000" / "trial.json", class_bias=[0.86, -0.86])
    write_reports(run_dir)
    assert "Trials start from the training split's class prior" in (run_dir / "report.md").read_text()
    doc = json.loads((run_dir / "report.json").read_text())
    by_id = {t["id"]: t for t in doc["trials"]}
    assert by_id["lora-000"]["class_bias"] == [0.86, -0.86] and by_id["ia3-001"]["class_bias"] is None


def test_a_shortened_trial_is_explained_in_words():
    from types import SimpleNamespace

    from budgetft.report.rows import Row
    from budgetft.report.tables import failures

    row = Row("trial", "t001-full", "m", "full", {}, "finished", evaluations=1, steps=812,
              end_moved={"planned": 1297, "to": 812, "at": 240, "step_s": 0.91})
    (line,) = failures(SimpleNamespace(trials=[row]))
    assert line.startswith("t001-full was planned for 1297 steps; at step 240 it ran at 0.91 s a step, slower than calibrated")
    assert "evaluated at step 812" in line
    longer = Row("trial", "t003-full", "m", "full", {}, "finished", evaluations=1, steps=1800,
                 end_moved={"planned": 1297, "to": 1800, "at": 240, "step_s": 0.41})
    assert "faster than calibrated" in failures(SimpleNamespace(trials=[longer]))[0]
    plain = Row("trial", "t002-full", "m", "full", {}, "finished", evaluations=1, steps=1297)
    assert failures(SimpleNamespace(trials=[plain])) == []


def _with_held_out_test(run_dir: Path, p_value: float, lift: float) -> None:
    (run_dir / "test.json").write_text(json.dumps({
        "winner": "lora-000", "rows": 300, "metrics": {"accuracy": 0.70, "accuracy_ci95": [0.645, 0.75]},
        "majority": {"accuracy": 0.62}, "vs_majority": {"p_value": p_value, "lift_points": lift},
    }))


@pytest.mark.parametrize("p_value, verdict", [(0.004, "beats"), (0.30, "does not significantly beat")])
def test_the_cost_plot_draws_the_held_out_winner_with_its_own_verdict(run_dir, p_value, verdict):
    """The winner's held-out test result is drawn beside its selection point, filled or hollow by
    the McNemar test on the test rows (a significant held-out winner was drawn as 'not a
    significant win' from its selection rows alone)."""
    from budgetft.report import plots

    _with_held_out_test(run_dir, p_value, 8.0)
    report = load_run(run_dir)
    fig, ax = plots._figure()
    labels: list = []
    handles = plots._held_out_winner(ax, report, labels)
    assert f"winner on 300 held-out test rows: {verdict} their majority" in handles[0].get_label()
    stars = [c for c in ax.collections if tuple(c.get_offsets()[0]) == (float(report.trials[0].cost), pytest.approx(70.0))]
    assert stars and labels[0][0].endswith("held-out test")
    write_reports(run_dir)  # and the whole plot still draws
    assert (run_dir / "accuracy_vs_cost.png").stat().st_size > 10_000


def test_the_header_names_every_model_and_the_winners(run_dir):
    import yaml

    job = yaml.safe_load((run_dir / "job.yaml").read_text())
    job["models"] = [{"name": "sentence-transformers/all-MiniLM-L6-v2"}]
    (run_dir / "job.yaml").write_text(yaml.safe_dump(job))
    _with_held_out_test(run_dir, 0.004, 8.0)
    trial = json.loads((run_dir / "trials" / "lora-000" / "trial.json").read_text())
    trial["model"] = "sentence-transformers/all-MiniLM-L6-v2"
    (run_dir / "trials" / "lora-000" / "trial.json").write_text(json.dumps(trial))
    md = render(run_dir, "md")
    head = md.splitlines()[2]
    assert f"models {job['model']['name']}, sentence-transformers/all-MiniLM-L6-v2" in head
    assert "winner's model sentence-transformers/all-MiniLM-L6-v2" in head
