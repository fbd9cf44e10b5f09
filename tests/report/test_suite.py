"""The evaluation-suite and fine-tuning sections of a two-phase study trained for real, read
back from a real browser: each group's best and median, the figures beside the tables."""

import statistics

from report.material import by_group, cells, rebuilt
from workbench.report import page as report
from workbench.study.table import trials_table


def test_sections_draw_their_figures_beside_their_tables(two_phase, two_phase_page):
    page, errors = two_phase_page
    assert errors == []
    # The int8 scatter follows the suite table; gain vs forgetting and the fine-tune curves the other.
    for selector in ("#suite-table + div", "#finetune-table + div", "#finetune-table + div + div"):
        assert page.locator(f"{selector} svg.main-svg").count() >= 1, selector
    assert page.get_by_text("saved in the run record").count() == len(by_group(two_phase.records))
    assert page.locator("#trials th", has_text="fine-tune bpb").count() == 1


def test_finetuning_table_shows_best_and_median_gain_and_forgetting(two_phase, two_phase_page):
    page, _ = two_phase_page
    groups = by_group(two_phase.records)
    rows = {row[0]: row for row in cells(page, "#finetune-table")}
    assert set(rows) == set(groups)
    for group, runs in groups.items():
        gain = max(runs, key=lambda r: r["finetune_gain_bpb"])          # highest gain is best
        forget = min(runs, key=lambda r: r["forgetting_bpb"])           # lowest forgetting is best
        assert rows[group][1] == str(len(runs))
        assert rows[group][2] == f"{gain['finetune_gain_bpb']:+.4f} (trial {gain['trial']})"
        assert rows[group][3] == f"{statistics.median(r['finetune_gain_bpb'] for r in runs):+.4f}"
        assert rows[group][4] == f"{forget['forgetting_bpb']:+.4f} (trial {forget['trial']})"
        assert rows[group][5] == f"{statistics.median(r['forgetting_bpb'] for r in runs):+.4f}"


def test_suite_table_shows_each_groups_best_trial_with_int8_beside_full_precision(two_phase, two_phase_page):
    page, _ = two_phase_page
    groups = by_group(two_phase.records)
    suite_rows = [row for row in cells(page, "#suite-table") if row[0] in groups]
    assert len(suite_rows) == len(groups)
    for row in suite_rows:
        best = min(groups[row[0]], key=lambda r: r["suite"]["metrics"]["bpb"])
        assert row[2] == f"best: trial {best['trial']}"
        assert row[4:6] == [f"{best['suite']['metrics']['bpb']:.4f}", f"{best['suite']['int8_bpb']:.4f}"]


def test_records_from_before_finetuning_and_the_suite_still_build(two_phase):
    def strip(_, record):
        return {k: v for k, v in record.items()
                if k not in ("suite", "phases", "devices") and "finetune" not in k and k != "forgetting_bpb"}
    old = rebuilt(two_phase.ostudy, strip)
    html, _ = report.build(two_phase.study, old, trials_table(old), samples=False)
    assert "No completed trial has an evaluation suite" in html and "id='finetune'" not in html
    assert "Not enough completed trials to show scaling yet" in html   # no fine-tuned bpb at all
