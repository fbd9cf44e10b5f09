"""The report's scaling sections follow the study's scaling loss: for a two-phase study trained
for real, the points, axes, frontier and each group's best trial are the fine-tuned bpb."""

import math

import pytest

from report.material import by_group, rebuilt
from workbench.report import page as report
from workbench.report.rows import MISSING
from workbench.study.table import trials_table

PLOTS = """() => [...document.querySelectorAll('div.plotly-graph-div')].map(d => {
    const title = d.layout.title || {}, axis = d.layout.yaxis || {};
    return {title: title.text, y: (axis.title || {}).text, range: axis.range,
            traces: d.data.map(t => ({name: t.name, text: t.text, y: t.y}))};
})"""


def _finetuned(two_phase) -> dict[int, float]:
    finetuned = {n: r["finetune_val_bpb"] for n, r in two_phase.records.items()}
    assert all(v is not None for v in finetuned.values())
    assert finetuned != {n: r["val_bpb"] for n, r in two_phase.records.items()}
    return finetuned


def test_scaling_figures_draw_the_finetuned_bpb(two_phase, two_phase_page):
    page, _ = two_phase_page
    plots, finetuned = page.evaluate(PLOTS), _finetuned(two_phase)
    scaling = [p for p in plots if "vs" in (p["title"] or "") and "fine-tuned bits per byte" in p["title"]]
    assert len(scaling) == 3
    for plot in scaling:
        assert plot["y"] == "fine-tuned bits per byte"
        points = {int(t.split()[1]): y for trace in plot["traces"] if trace["text"]
                  for t, y in zip(trace["text"], trace["y"])}
        assert points == pytest.approx(finetuned)
        lo, hi = plot["range"]   # log10 axis, from the fine-tuned values
        assert lo == pytest.approx(math.log10(min(finetuned.values()) / 1.5))
        assert hi == pytest.approx(math.log10(max(finetuned.values()) * 1.3))
    frontier = next(p for p in plots if p["title"] == "compute-optimal frontier")
    assert frontier["y"] == "fine-tuned bits per byte"
    runs = next(t for t in frontier["traces"] if t["name"] == "runs")
    assert sorted(runs["y"]) == pytest.approx(sorted(finetuned.values()))


def test_comparison_picks_each_groups_best_by_finetuned_bpb(two_phase, two_phase_page):
    page, _ = two_phase_page
    comparison = page.evaluate("""() => [...[...document.querySelectorAll('h2')]
        .find(h => h.textContent.startsWith('Architecture comparison')).nextElementSibling.rows]
        .map(r => [...r.cells].map(c => c.textContent))""")
    groups = by_group(two_phase.records)
    assert comparison[0][2] == "best fine-tuned bpb" and len(comparison[1:]) == len(groups)
    for row in comparison[1:]:
        best = min(groups[row[0]], key=lambda r: r["finetune_val_bpb"])
        assert row[2] == f"{best['finetune_val_bpb']:.4f} (trial {best['trial']})"


def test_a_trial_without_the_loss_is_left_out_of_scaling_and_chosen_last(two_phase):
    finetuned = _finetuned(two_phase)
    partial = rebuilt(two_phase.ostudy, lambda n, r: {**r, **({"finetune_val_bpb": None} if n == 0 else {})})
    html, _ = report.build(two_phase.study, partial, trials_table(partial), samples=False)
    assert "Not enough completed trials to show scaling yet" in html   # one trial left with the loss
    table = html.split("Architecture comparison", 1)[1].split("</table>", 1)[0]
    assert "(trial 0)" not in table and f"{finetuned[1]:.4f} (trial 1)" in table
    if len(by_group(two_phase.records)) == 2:   # trial 0 alone in its group: no best to show
        assert table.count(MISSING) == 1
