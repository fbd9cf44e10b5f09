"""The HTML report, opened in real headless Chromium."""

import math
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from support import BASE, write_study
from workbench.report import page as report
from workbench.study.file import load_study
from workbench.study.storage import load_existing
from workbench.study.supervisor import supervise
from workbench.study.table import trials_table

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("no chromium installed; `make setup` installs it")
        pytest.skip("no chromium installed (make setup installs it)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


def test_report_renders_every_figure_and_escapes_user_text(tmp_path, monkeypatch, browser):
    monkeypatch.chdir(tmp_path)
    base = {**BASE, "name": EVIL, "description": f"about {EVIL}"}
    path = write_study(tmp_path, trials=3, base=base, search={"model.width": {"choice": [32, 64]}, "train.lr": {"float": [2e-3, 4e-3]}},
                       ladder={"tokens": [256, 512], "sizes": [{"model.depth": 1}, {"model.depth": 2}]},
                       enqueue=[{"model.heads": 3}])      # infeasible: its reason quotes user input
    study = load_study(path)
    supervise(study, str(tmp_path / "runs" / study.name / "study.journal"), workers=1, poll=0.2)
    trials = load_existing(study, str(tmp_path / "runs" / study.name / "study.journal")).get_trials()

    result = subprocess.run([sys.executable, "-m", "workbench", "report", str(path), "--bootstrap", "50"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "reports" / f"{study.name}.html"
    assert f"report: reports/{study.name}.html" in result.stdout and out.is_file()
    html = out.read_text()
    assert EVIL not in html                       # only ever escaped
    assert "<script src=" not in html and html.count("Plotly.newPlot") >= 6   # offline: nothing fetched

    page = browser.new_page()
    errors, dialogs = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(out.as_uri())
    page.wait_for_function("document.querySelectorAll('div.plotly-graph-div').length == "
                           "Number(document.querySelector('meta[name=workbench-figures]').content)")
    page.wait_for_timeout(500)
    figures = int(page.locator("meta[name=workbench-figures]").get_attribute("content"))
    assert figures >= 6
    rendered = page.evaluate("[...document.querySelectorAll('div.plotly-graph-div')]"
                             ".filter(d => d.querySelector('svg.main-svg')).length")
    assert rendered == figures
    assert errors == [] and dialogs == []
    assert page.locator("#trials tbody tr").count() == len(trials)
    assert page.get_by_text(EVIL, exact=False).count() >= 1
    # The filter box hides rows that do not match.
    page.fill("#filter", "infeasible")
    assert page.locator("#trials tbody tr:visible").count() == 1
    page.close()


def _cells(page, table: str) -> list[list[str]]:
    return page.evaluate(f"[...document.querySelectorAll('{table} tr')].slice(1)"
                         ".map(r => [...r.cells].map(c => c.textContent))")


def test_report_shows_finetuning_and_evaluation_suite(tmp_path, monkeypatch, browser):
    monkeypatch.chdir(tmp_path)
    finetune = {"data": {"source": "python-docstrings", "max_bytes": 60000}, "budget": {"steps": 3},
                "batch_tokens": 128, "eval_bytes": 2048}
    path = write_study(tmp_path, trials=2, base={**BASE, "finetune": finetune},
                       search={"model.width": {"choice": [32, 64]}},
                       scaling={"group_by": "model.width", "loss": "finetune_val_bpb"})
    study = load_study(path)
    journal = str(tmp_path / "runs" / study.name / "study.journal")
    supervise(study, journal, workers=1, poll=0.2)
    ostudy = load_existing(study, journal)
    records = {t.number: t.user_attrs["record"] for t in ostudy.get_trials()}
    assert len(records) == 2 and all(r["status"] == "completed" and r["suite"] for r in records.values())
    out = report.write(study, ostudy, trials_table(ostudy), tmp_path / "report.html", samples=False)

    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(out.as_uri())
    figures = int(page.locator("meta[name=workbench-figures]").get_attribute("content"))
    page.wait_for_function(f"[...document.querySelectorAll('div.plotly-graph-div')]"
                           f".filter(d => d.querySelector('svg.main-svg')).length == {figures}")
    assert page.locator("div.plotly-graph-div").count() == figures and errors == []
    # The int8 scatter follows the suite table; gain vs forgetting and the fine-tune curves the other.
    for selector in ("#suite-table + div", "#finetune-table + div", "#finetune-table + div + div"):
        assert page.locator(f"{selector} svg.main-svg").count() >= 1, selector

    # Per group (model.width): best and median of gain (highest best) and forgetting (lowest best).
    by_group: dict[str, list[dict]] = {}
    for number, r in records.items():
        width = ostudy.trials[number].user_attrs["spec"]["model"]["width"]
        by_group.setdefault(str(width), []).append({**r, "trial": number})
    rows = {row[0]: row for row in _cells(page, "#finetune-table")}
    assert set(rows) == set(by_group)
    for group, runs in by_group.items():
        gain = max(runs, key=lambda r: r["finetune_gain_bpb"])
        forget = min(runs, key=lambda r: r["forgetting_bpb"])
        assert rows[group][1] == str(len(runs))
        assert rows[group][2] == f"{gain['finetune_gain_bpb']:+.4f} (trial {gain['trial']})"
        assert rows[group][3] == f"{statistics.median(r['finetune_gain_bpb'] for r in runs):+.4f}"
        assert rows[group][4] == f"{forget['forgetting_bpb']:+.4f} (trial {forget['trial']})"
        assert rows[group][5] == f"{statistics.median(r['forgetting_bpb'] for r in runs):+.4f}"
    # The suite table: each group's best trial (lowest suite bpb) and its int8 bpb beside full precision.
    suite_rows = [row for row in _cells(page, "#suite-table") if row[0] in by_group]
    assert len(suite_rows) == len(by_group)
    for row in suite_rows:
        best = min(by_group[row[0]], key=lambda r: r["suite"]["metrics"]["bpb"])
        assert row[2] == f"best: trial {best['trial']}"
        assert row[4:6] == [f"{best['suite']['metrics']['bpb']:.4f}", f"{best['suite']['int8_bpb']:.4f}"]
    assert page.get_by_text("saved in the run record").count() == len(by_group)
    assert page.locator("#trials th", has_text="fine-tune bpb").count() == 1

    # Scaling (scaling.loss = finetune_val_bpb): points, y range and frontier are the fine-tuned
    # bpb of each trial, not its pretraining val_bpb, and the axes say so.
    plots = page.evaluate("""() => [...document.querySelectorAll('div.plotly-graph-div')].map(d => {
        const title = d.layout.title || {}, axis = d.layout.yaxis || {};
        return {title: title.text, y: (axis.title || {}).text, range: axis.range,
                traces: d.data.map(t => ({name: t.name, text: t.text, y: t.y}))};
    })""")
    finetuned = {n: r["finetune_val_bpb"] for n, r in records.items()}
    assert all(v is not None for v in finetuned.values()) and finetuned != {n: r["val_bpb"] for n, r in records.items()}
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
    # The comparison per group: the best trial by fine-tuned bpb.
    comparison = page.evaluate("""() => [...[...document.querySelectorAll('h2')]
        .find(h => h.textContent.startsWith('Architecture comparison')).nextElementSibling.rows]
        .map(r => [...r.cells].map(c => c.textContent))""")
    assert comparison[0][2] == "best fine-tuned bpb" and len(comparison[1:]) == len(by_group)
    for row in comparison[1:]:
        best = min(by_group[row[0]], key=lambda r: r["finetune_val_bpb"])
        assert row[2] == f"{best['finetune_val_bpb']:.4f} (trial {best['trial']})"
    page.close()

    # A trial without a fine-tuned bpb (a null in the loss column) breaks nothing: it is left out
    # of the scaling points and chosen last.
    partial = optuna.create_study()
    for t in ostudy.get_trials():
        record = {**t.user_attrs["record"], **({"finetune_val_bpb": None} if t.number == 0 else {})}
        partial.add_trial(optuna.trial.create_trial(state=t.state, values=t.values, params=t.params,
                                                    distributions=t.distributions,
                                                    user_attrs={**t.user_attrs, "record": record}))
    html, _ = report.build(study, partial, trials_table(partial), samples=False)
    assert "Not enough completed trials to show scaling yet" in html   # one trial left with the loss
    table = html.split("Architecture comparison", 1)[1].split("</table>", 1)[0]
    assert "(trial 0)" not in table and f"{finetuned[1]:.4f} (trial 1)" in table
    if len(by_group) == 2:   # trial 0 alone in its group: no best to show
        assert table.count(report.MISSING) == 1

    # Records from before fine-tuning and the suite: no such columns, and the report still builds.
    old = optuna.create_study()
    for t in ostudy.get_trials():
        record = {k: v for k, v in t.user_attrs["record"].items()
                  if k not in ("suite", "phases", "devices") and "finetune" not in k and k != "forgetting_bpb"}
        old.add_trial(optuna.trial.create_trial(state=t.state, values=t.values, params=t.params,
                                                distributions=t.distributions,
                                                user_attrs={**t.user_attrs, "record": record}))
    html, _ = report.build(study, old, trials_table(old), samples=False)
    assert "No completed trial has an evaluation suite" in html and "id='finetune'" not in html
    assert "Not enough completed trials to show scaling yet" in html   # no fine-tuned bpb at all
