"""The HTML report of a study trained for real, written by `workbench report` and opened in
real headless Chromium: every figure draws, nothing is fetched, user text is only ever escaped."""

import subprocess
import sys

import pytest

from support import BASE, write_study
from workbench.study.file import load_study
from workbench.study.storage import load_existing
from workbench.study.supervisor import supervise

EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A study whose names carry markup, trained (one infeasible trial), and its report written by
    the command line: (the report's path, the stored trials, the command's result)."""
    tmp = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        # Names must be safe folder names, so the markup rides in descriptions, where any text goes.
        base = {**BASE, "description": f"about {EVIL}"}
        path = write_study(tmp, trials=3, base=base, description=f"study {EVIL}",
                           search={"model.width": {"choice": [32, 64]}, "train.lr": {"float": [2e-3, 4e-3]}},
                           ladder={"tokens": [256, 512], "sizes": [{"model.depth": 1}, {"model.depth": 2}]},
                           enqueue=[{"model.heads": 3}])      # infeasible: its reason quotes user input
        study = load_study(path)
        journal = str(tmp / "runs" / study.name / "study.journal")
        supervise(study, journal, workers=1, poll=0.2)
        trials = load_existing(study, journal).get_trials()
        result = subprocess.run([sys.executable, "-m", "workbench", "report", str(path), "--bootstrap", "50"],
                                capture_output=True, text=True)
    return tmp / "reports" / f"{study.name}.html", trials, result


def test_report_is_one_offline_file_with_user_text_escaped(written):
    out, _, result = written
    assert result.returncode == 0, result.stderr
    assert f"report: reports/{out.name}" in result.stdout and out.is_file()
    html = out.read_text()
    assert EVIL not in html                       # only ever escaped
    assert "<script src=" not in html and html.count("Plotly.newPlot") >= 6   # offline: nothing fetched


def test_report_draws_every_figure_and_filters_trials_in_a_browser(written, open_page):
    out, trials, _ = written
    page, errors = open_page(out)
    page.wait_for_timeout(500)
    figures = int(page.locator("meta[name=workbench-figures]").get_attribute("content"))
    assert figures >= 6 and page.locator("div.plotly-graph-div").count() == figures
    assert errors == []
    assert page.locator("#trials tbody tr").count() == len(trials)
    assert page.get_by_text(EVIL, exact=False).count() >= 1
    # The filter box hides rows that do not match.
    page.fill("#filter", "infeasible")
    assert page.locator("#trials tbody tr:visible").count() == 1
