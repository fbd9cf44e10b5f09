"""The HTML report, opened in real headless Chromium."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_study import BASE, write_study
from workbench.search import load_study
from workbench.study import load_existing, supervise

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
    path = write_study(tmp_path, trials=3, base=base, search={"model.width": {"choice": [32, 64]}},
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
