"""A real headless Chromium for the report tests, and the helpers that read a page back."""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import BASE, write_study

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
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


@pytest.fixture
def open_page(browser):
    """Open a report file: (page, its JavaScript errors and dialogs), once every figure is drawn."""
    opened = []

    def open_(path: Path):
        opened.append(_open(browser, path))
        return opened[-1]
    yield open_
    for page, _ in opened:
        page.close()


def _open(browser, path: Path):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (errors.append(f"dialog: {d.message}"), d.dismiss()))
    page.goto(path.as_uri())
    figures = int(page.locator("meta[name=workbench-figures]").get_attribute("content"))
    page.wait_for_function(f"[...document.querySelectorAll('div.plotly-graph-div')]"
                           f".filter(d => d.querySelector('svg.main-svg')).length == {figures}")
    return page, errors


@dataclass
class TwoPhase:
    """A two-phase study trained for real and its report (no samples)."""

    study: object
    ostudy: object
    records: dict[int, dict]
    """Run records by trial number, with the trial's width as `group` and its number as `trial`."""
    report: Path


@pytest.fixture(scope="session")
def two_phase(tmp_path_factory) -> TwoPhase:
    """Two trials (widths 32 and 64, grouped by width) pretrained, fine-tuned on docstring pairs
    and judged by the evaluation suite; the study's scaling loss is the fine-tuned bpb."""
    from workbench.report import page as report
    from workbench.study.file import load_study
    from workbench.study.storage import load_existing
    from workbench.study.supervisor import supervise
    from workbench.study.table import trials_table
    tmp = tmp_path_factory.mktemp("two-phase")
    finetune = {"data": {"source": "python-docstrings", "max_bytes": 60000, "val_fraction": 0.3}, "budget": {"steps": 3},
                "batch_tokens": 128, "eval_bytes": 2048}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        path = write_study(tmp, trials=2, base={**BASE, "finetune": finetune},
                           search={"model.width": {"choice": [32, 64]}, "train.lr": {"float": [2e-3, 4e-3]}},
                           scaling={"group_by": "model.width", "loss": "finetune_val_bpb"})
        study = load_study(path)
        journal = str(tmp / "runs" / study.name / "study.journal")
        supervise(study, journal, workers=1, poll=0.2)
        ostudy = load_existing(study, journal)
        out = report.write(study, ostudy, trials_table(ostudy), tmp / "report.html", samples=False)
    records = {t.number: {**t.user_attrs["record"], "trial": t.number,
                          "group": str(t.user_attrs["spec"]["model"]["width"])}
               for t in ostudy.get_trials() if "record" in t.user_attrs}          # not a skipped repeat
    return TwoPhase(study, ostudy, records, out)


@pytest.fixture(scope="session")
def two_phase_page(two_phase, browser):
    """The two-phase study's report, opened once in the browser for every test that reads it:
    (page, its JavaScript errors and dialogs)."""
    page, errors = _open(browser, two_phase.report)
    yield page, errors
    page.close()
