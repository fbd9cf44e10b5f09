"""`workbench report`: one self-contained HTML file per study (plotly.js embedded once, opens
offline from disk), rebuilt at any time from the storage, for finished, running or crashed
studies. This module is the page's frame and its general sections (header, search, trials,
curves, samples); the scaling sections live in report.scaling, the evaluation suite and
fine-tuning in report.suite. Every user-supplied string is escaped."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import polars as pl
import yaml

from workbench.plumbing.errors import RunFolderError
from workbench.plumbing.files import write_atomic
from workbench.report import figures
from workbench.report.figures import esc
from workbench.report.frame import Page
from workbench.report.rows import MISSING, best_trial, fmt, group_column, loss_column, missing, ranked, \
    searched_columns, short
from workbench.report.scaling import comparison_section, fit_view, scaling_section
from workbench.report.suite import finetune_section, suite_section
from workbench.scaling.result import FitResult
from workbench.scaling.runs import ladder_runs
from workbench.record import spent_text
from workbench.study.roles import compute_spent, validation_checks, with_role
from workbench.study.schema import StudyFile

TABLE_COLUMNS = [("params.total", "N"), ("compute.6N+attn", "C"), ("tokens", "D"), ("epochs", "epochs"),
                 ("val_bpb", "bpb"),
                 ("val_ppl", "ppl"), ("finetune_val_bpb", "fine-tune bpb"), ("suite.metrics.top1", "top-1"),
                 ("suite.int8_bpb", "int8 bpb"), ("tokens_per_s", "tok/s"), ("mfu", "MFU"),
                 ("peak_memory_bytes", "peak mem"), ("wall_s", "wall s")]
OPTIONAL_COLUMNS = {"epochs", "finetune_val_bpb", "suite.metrics.top1", "suite.int8_bpb"}
"""Shown only when some trial has a value: records from before fine-tuning and the suite lack them."""


def _cell(value: Any, kind: str = "") -> str:
    """One cell of the trials table."""
    if missing(value):
        return MISSING
    if kind in ("MFU", "top-1"):
        return f"{value:.1%}"
    if kind == "peak mem":
        return f"{value / 2**20:,.0f} MiB"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3g}"
    if isinstance(value, int) and abs(value) >= 1e5:
        return f"{value:.3g}"
    return esc(value)


def _counts(df: pl.DataFrame) -> dict[str, int]:
    if df.is_empty():
        return {}
    rows = df.group_by("status").len().sort("status").iter_rows()
    return {str(k): int(n) for k, n in rows}


def _header(page: Page, study: StudyFile, df: pl.DataFrame, spent: dict) -> None:
    counts = _counts(df)
    starts = [d for d in df["started"].to_list() if d] if "started" in df.columns else []
    ends = [d for d in df["finished"].to_list() if d] if "finished" in df.columns else []
    devices = sorted({str(d) for d in df["device"].drop_nulls().to_list()}) if "device" in df.columns else []
    rows = [("study", esc(study.name)), ("description", esc(study.spec.description)),
            ("base spec", f"{esc(study.base.name)} ({esc(study.base.digest())})"),
            ("first trial", esc(min(starts)) if starts else "-"), ("last finished", esc(max(ends)) if ends else "-"),
            ("trials", ", ".join(f"{n} {esc(k)}" for k, n in counts.items()) or "none yet"),
            ("compute spent", esc(spent_text(spent))),
            ("hardware", esc(", ".join(devices) or "-")),
            ("report written", esc(datetime.now().isoformat(timespec="seconds")))]
    page.add(f"<h1>{esc(study.name)}</h1><table class='kv'>"
             + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"
             + "<details><summary>base spec</summary><pre>"
             + esc(yaml.safe_dump(study.base.model_dump(mode="json"), sort_keys=False)) + "</pre></details>")


def _trials(page: Page, study: StudyFile, df: pl.DataFrame) -> None:
    fields = searched_columns(study, df)
    loss, listed = loss_column(study), [c for c, _ in TABLE_COLUMNS]
    table = TABLE_COLUMNS if loss in listed else \
        TABLE_COLUMNS[:5] + [(loss, short(loss))] + TABLE_COLUMNS[5:]   # beside bpb
    shown = [(c, name) for c, name in table if c in df.columns
             and (c not in OPTIONAL_COLUMNS or df[c].null_count() < df.height)]
    columns = [("trial", "trial"), ("status", "status")] + ([("role", "role")] if "role" in df.columns else []) + [(c, c.removeprefix("spec.")) for c in fields] \
        + shown + [("reason", "failure reason")]
    head = "".join(f"<th>{esc(name)}</th>" for _, name in columns)
    body = []
    for row in df.iter_rows(named=True):
        cells = []
        for column, name in columns:
            value = row.get(column)
            sort = "" if value is None or isinstance(value, (str, bool)) else f" data-v='{value}'"
            cells.append(f"<td{sort}>{_cell(value, name)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    page.add("<h2>Trials</h2><input id='filter' placeholder='filter rows (any text)'>"
             f"<table class='data sortable' id='trials'><thead><tr>{head}</tr></thead><tbody>"
             + "".join(body) + "</tbody></table>")


def _transfer(page: Page, study: StudyFile, done: pl.DataFrame) -> None:
    """For a study that varies both width and learning rate under a width-transfer
    parametrisation: does the best learning rate stay put as the width grows?"""
    needed = {"spec.model.parametrization", "spec.model.width", "spec.train.lr"}
    if not needed <= set(done.columns):
        return
    runs = done.filter(pl.col("spec.model.parametrization") == "mup")
    if runs["spec.model.width"].n_unique() > 1 and runs["spec.train.lr"].n_unique() > 1:
        page.figure(figures.transfer_figure(runs, loss_column(study)))


def _curves(page: Page, study: StudyFile, done: pl.DataFrame, top: int = 6) -> None:
    """The pretraining val bpb curves of the best trials by the study's loss column."""
    if done.is_empty() or "curve" not in done.columns:
        return
    chosen = ranked(done, loss_column(study)).head(top)
    curves = [(f"trial {r['trial']}", r["curve"]) for r in chosen.iter_rows(named=True) if r["curve"]]
    page.add("<h2>Training curves</h2>")
    page.figure(figures.curves_figure(curves))


def _samples(page: Page, study: StudyFile, done: pl.DataFrame, prompt: str, tokens: int) -> None:
    from workbench.evaluate.generate import generate, load_run
    page.add(f"<h2>Samples</h2><p>Continuations of <code>{esc(prompt)}</code> from the best model of each group "
             "(temperature 0.8, top-k 50), generated now from the weights in its run folder, for people to judge "
             "(the evaluation suite above shows those saved in the run record).</p>")
    group, loss = group_column(study, done), loss_column(study)
    for name, part in figures.groups(done, group):
        best = best_trial(part, loss) or part.row(0, named=True)
        run_dir = Path(best.get("run_dir") or "")
        try:
            model, tok = load_run(run_dir)
            text = prompt + generate(model, tok, prompt, tokens)
        except (RunFolderError, OSError):
            text = None
        title = f"{esc(name)}: trial {best['trial']}, {esc(short(loss))} {fmt(best.get(loss), '{:.4f}')}"
        body = f"<pre class='sample'>{esc(text)}</pre>" if text is not None else \
            "<p class='note'>weights not on this machine (trained elsewhere or deleted)</p>"
        page.add(f"<h3>{title}</h3>{body}")


def build(study: StudyFile, ostudy: optuna.Study, df: pl.DataFrame, fit: FitResult | None = None,
          fit_error: str | None = None, samples: bool = True, prompt: str = "def ",
          sample_tokens: int = 160) -> tuple[str, int]:
    """The whole report as one HTML string, and its number of figures."""
    view = fit_view(fit)
    done = df.filter(pl.col("status") == "completed") if "status" in df.columns else df
    if "val_bpb" in done.columns:
        done = done.filter(pl.col("val_bpb").is_not_null())
    page = Page()
    _header(page, study, df, compute_spent(ostudy.get_trials(deepcopy=False)))
    fitted = ladder_runs(done, loss_column(study))[0] if study.spec.ladder else done
    scaling_section(page, study, fitted, view, fit_error, validation_checks(ostudy))
    page.add("<h2>Search</h2><p class='note'>The searched trials only: baselines and ladder points have budgets "
             "and roles of their own and are judged apart.</p>")
    for _, fig in figures.search_figures(with_role(ostudy, "search")):
        page.figure(fig)
    _transfer(page, study, done)
    comparison_section(page, study, done, view)
    suite_section(page, study, done)
    finetune_section(page, study, done)
    _trials(page, study, df)
    _curves(page, study, done)
    if samples and not done.is_empty():
        _samples(page, study, done, prompt, sample_tokens)
    return page.html(esc(study.name)), page.figures


def write(study: StudyFile, ostudy: optuna.Study, df: pl.DataFrame, out: Path, fit: FitResult | None = None,
          fit_error: str | None = None, **options) -> Path:
    """Build the report and write it atomically to `out`; `options` go to build()."""
    text, _ = build(study, ostudy, df, fit, fit_error, **options)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, text)
    return out
