"""The report's scaling sections follow the study's scaling loss: for a two-phase study trained
for real, the points, axes, frontier and each group's best trial are the fine-tuned bpb."""

import math

import pytest

from report.material import by_group, planted_study, rebuilt
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


def _report(study, ostudy) -> str:
    from workbench.scaling.fit import fit_runs
    from workbench.scaling.runs import study_runs
    table = trials_table(ostudy)
    html, _ = report.build(study, ostudy, table, fit=fit_runs(*study_runs(study, table), bootstrap=40),
                           samples=False)
    return html.split("<h2>Scaling</h2>", 1)[1].split("<h2>Search</h2>", 1)[0]


def test_the_answer_heads_the_scaling_section_with_the_model_choice_below(tmp_path):
    from scaling.planted import grid_runs
    N, D, L = grid_runs(0, side=6)
    section = _report(*planted_study(tmp_path, list(zip(N, D, L, [None] * len(L)))))
    answer, rest = section.split("</div>", 1)
    assert "<h3>The answer</h3>" in answer and "says: train N =" in answer and "class='warn'" not in answer
    assert section.index("The answer") < section.index("id='model-choice'") < section.index("plotly-graph-div")
    assert rest.count("<td class='ok'>chosen</td>") == 1


def test_unsupported_fits_give_no_recommendation_and_say_why_without_warnings_above(tmp_path):
    from scaling.planted import rising_ladder
    t = rising_ladder()
    runs = list(zip(t["params.total"], t["tokens"], t["val_bpb"], [None] * len(t["tokens"])))
    section = _report(*planted_study(tmp_path, runs, ladder=True))
    head = section.split("<h3>Model choice</h3>", 1)[0]
    assert "<h3>No recommendation</h3>" in head and "prediction" not in head and "warn" not in head
    assert "class='prediction'" not in section and "says: train" not in section
    assert "add smaller sizes" in section                      # every budget's best size is its smallest
    why = section.split("<h3>Not used for the answer</h3>", 1)[1]
    assert "bound" in why and "What would fix it" in why


def test_repeated_data_is_flagged_in_the_section_and_the_figures(tmp_path):
    from scaling.planted import grid_runs
    N, D, L = grid_runs(1, side=5)
    epochs = D / 2e9
    section = _report(*planted_study(tmp_path, list(zip(N, D, L, epochs))))
    assert "id='repeated'" in section and f"{int((epochs > 4).sum())} of {len(L)} runs repeat" in section
    assert "beyond 4 epochs" in section                         # the open markers' legend entry


def test_a_validation_run_says_how_much_of_its_interval_is_model_error():
    from workbench.report.frame import Page
    from workbench.report.scaling import validation_block

    check = {"number": 7, "status": "completed", "reason": None, "budget": 8e11, "loss": "val_bpb",
             "predicted": 2.4657, "lo": 2.3628, "hi": 2.5812, "params": 2.78e4, "tokens": 2.89e6, "convention": "",
             "observed": 2.3881, "error": 2.3881 / 2.4657 - 1, "inside": True}
    shown, bare = Page(), Page()
    validation_block(shown, [{**check, "model_error": 0.0154, "model_share": 0.27}])
    validation_block(bare, [check])
    assert "27% of its width from model-form error, ±1.5%" in "".join(shown.parts)
    assert "model-form error" not in "".join(bare.parts)
