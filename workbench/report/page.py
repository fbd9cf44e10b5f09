"""`workbench report`: one self-contained HTML file per study (plotly.js embedded once, opens
offline from disk), rebuilt at any time from the storage, for finished, running or crashed
studies. Every user-supplied string is escaped."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import plotly.graph_objects as go
import polars as pl
import yaml

from workbench.plumbing.files import write_atomic
from workbench.report import figures
from workbench.report.figures import esc
from workbench.study.objectives import FITTABLE
from workbench.study.schema import StudyFile

TABLE_COLUMNS = [("params.total", "N"), ("compute.6N+attn", "C"), ("tokens", "D"), ("val_bpb", "bpb"),
                 ("val_ppl", "ppl"), ("finetune_val_bpb", "fine-tune bpb"), ("suite.metrics.top1", "top-1"),
                 ("suite.int8_bpb", "int8 bpb"), ("tokens_per_s", "tok/s"), ("mfu", "MFU"),
                 ("peak_memory_bytes", "peak mem"), ("wall_s", "wall s")]
OPTIONAL_COLUMNS = {"finetune_val_bpb", "suite.metrics.top1", "suite.int8_bpb"}
"""Shown only when some trial has a value: records from before fine-tuning and the suite lack them."""
MISSING = "–"

# Evaluation-suite table: (column, heading, format); "int8 penalty" is derived (int8 bpb - bpb).
SUITE_COLUMNS = [("val_bpb", "val bpb", "{:.4f}"), ("suite.metrics.bpb", "suite bpb", "{:.4f}"),
                 ("suite.int8_bpb", "int8 bpb", "{:.4f}"), ("int8 penalty", "int8 − full", "{:+.3g}"),
                 ("suite.metrics.ppl", "ppl", "{:.4g}"), ("suite.metrics.top1", "top-1", "{:.1%}"),
                 ("suite.completion.exact_match", "exact match", "{:.1%}"),
                 ("suite.completion.bleu", "BLEU", "{:.3f}"), ("suite.completion.tasks", "tasks", "{:.0f}")]
# Fine-tuning table: (column, heading, format, True when higher is better).
FINETUNE_COLUMNS = [("finetune_gain_bpb", "gain (bpb)", "{:+.4f}", True),
                    ("forgetting_bpb", "forgetting (bpb)", "{:+.4f}", False),
                    ("finetune_val_bpb", "fine-tune val bpb", "{:.4f}", False)]
_CONTROLS = {c: "\ufffd" for c in range(32) if chr(c) not in "\t\n"} | {127: "\ufffd"}


def _short(loss: str) -> str:
    """A fittable loss's short name, for headings."""
    return FITTABLE[loss].short if loss in FITTABLE else loss


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(value: Any, fmt: str) -> str:
    """A number in `fmt`, or the missing mark."""
    return MISSING if _missing(value) else fmt.format(value)


def _median(values: list) -> float | None:
    kept = sorted(v for v in values if not _missing(v))
    if not kept:
        return None
    mid = len(kept) // 2
    return float(kept[mid]) if len(kept) % 2 else (kept[mid - 1] + kept[mid]) / 2


def _text(value: Any) -> str:
    """Model text for a <pre>: control characters (untrained models emit them) shown as U+FFFD, escaped."""
    return esc(str(value or "").translate(_CONTROLS))


def _with_columns(df: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """`df` with every named column, null where older records lack it."""
    return df.with_columns([pl.lit(None, dtype=pl.Float64).alias(c) for c in columns if c not in df.columns])


def _num(value: Any, kind: str = "") -> str:
    if _missing(value):
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


class _Page:
    """Accumulates sections and figures; plotly.js goes into the first figure only."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.figures = 0

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def figure(self, fig: go.Figure) -> None:
        self.parts.append(fig.to_html(full_html=False, include_plotlyjs=self.figures == 0,
                                      config={"displaylogo": False, "responsive": True}))
        self.figures += 1


def _counts(df: pl.DataFrame) -> dict[str, int]:
    if df.is_empty():
        return {}
    rows = df.group_by("status").len().sort("status").iter_rows()
    return {str(k): int(n) for k, n in rows}


def _loss(study: StudyFile) -> str:
    """The report's loss column: the one the study's scaling fit fits (its `scaling.loss`), so
    points, frontier, fitted curves and every "best" trial are judged by the same number."""
    return study.spec.scaling.loss


def _scored(df: pl.DataFrame, loss: str) -> pl.DataFrame:
    """The rows of `df` with a usable `loss` (finite and positive: the fit drops the rest and the
    figures draw it on log axes); an empty table where no record has the column."""
    df = _with_columns(df, [loss])
    value = pl.col(loss).cast(pl.Float64)
    return df.filter(value.is_not_null() & value.is_finite() & (value > 0))


def _best_first(df: pl.DataFrame, loss: str) -> pl.DataFrame:
    """`df` sorted by `loss`, lowest first, trials without a value (null or NaN) last."""
    df = _with_columns(df, [loss])
    return df.sort(pl.col(loss).cast(pl.Float64).fill_nan(None), nulls_last=True)


def _group_column(study: StudyFile, df: pl.DataFrame) -> str | None:
    field = study.spec.scaling.group_by
    return f"spec.{field}" if field and f"spec.{field}" in df.columns else None


def _searched_columns(study: StudyFile, df: pl.DataFrame) -> list[str]:
    names = list(study.spec.search)
    if study.spec.ladder:
        for entry in study.spec.ladder.sizes + study.spec.ladder.groups:
            names += [k for k in entry if k not in names]
    if study.spec.scaling.group_by and study.spec.scaling.group_by not in names:
        names.append(study.spec.scaling.group_by)
    return [f"spec.{n}" for n in names if f"spec.{n}" in df.columns]


def _header(page: _Page, study: StudyFile, df: pl.DataFrame) -> None:
    counts = _counts(df)
    starts = [d for d in df["started"].to_list() if d] if "started" in df.columns else []
    ends = [d for d in df["finished"].to_list() if d] if "finished" in df.columns else []
    spent = df["compute.6N+attn"].sum() if "compute.6N+attn" in df.columns else 0
    devices = sorted({str(d) for d in df["device"].drop_nulls().to_list()}) if "device" in df.columns else []
    rows = [("study", esc(study.name)), ("description", esc(study.spec.description)),
            ("base spec", f"{esc(study.base.name)} ({esc(study.base.digest())})"),
            ("first trial", esc(min(starts)) if starts else "-"), ("last finished", esc(max(ends)) if ends else "-"),
            ("trials", ", ".join(f"{n} {esc(k)}" for k, n in counts.items()) or "none yet"),
            ("compute spent", f"{spent or 0:.3g} FLOPs (6N+attn, trials that trained)"),
            ("hardware", esc(", ".join(devices) or "-")),
            ("report written", esc(datetime.now().isoformat(timespec="seconds")))]
    page.add(f"<h1>{esc(study.name)}</h1><table class='kv'>"
             + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"
             + "<details><summary>base spec</summary><pre>"
             + esc(yaml.safe_dump(study.base.model_dump(mode="json"), sort_keys=False)) + "</pre></details>")


def fit_view(fit: dict | None) -> dict | None:
    """The fit result (scaling.fit) rearranged for drawing: curves and held-out points per
    axis and group, one table row per parameter, per-group summaries."""
    if not fit:
        return None
    view = {"curves": {}, "backtest_points": {}, "rows": [], "groups": {}, "isoflop": fit.get("isoflop"),
            "warnings": fit.get("warnings", []), "unsupported": list(fit.get("unsupported", [])),
            "predictions": fit.get("predictions", []), "loss": (fit.get("conventions") or {}).get("loss"),
            "comparison": [c["verdict"] for c in (fit.get("groups") or {}).get("comparisons", [])]}
    grouped = (fit.get("groups") or {}).get("fits", {})
    entries = list(grouped.items()) if grouped else [("all runs", fit)]
    for group, f in entries:
        if "forms" not in f:                  # its reason is in fit["unsupported"] already
            continue
        for name, form in f["forms"].items():
            if "reason" in form:
                continue
            if form.get("curve"):
                c = form["curve"]
                view["curves"].setdefault(c["axis"], []).append(
                    {"group": group, "label": form.get("label", name), "x": c["x"], "y": c["y"],
                     "lo": c.get("lo"), "hi": c.get("hi")})
            backtest = form.get("backtest") or {}
            for p in backtest.get("held_out", []):
                view["backtest_points"].setdefault(backtest.get("by", fit.get("x")), []).append(
                    {"group": group, "x": p["key"], "y": p["observed"]})
            for pname, p in form.get("params", {}).items():
                view["rows"].append((group, form.get("label", name), pname, p))
            if name in ("x", "x-noE") and "alpha" in form.get("params", {}):
                view["groups"].setdefault(group, {})["exponent"] = _interval(form["params"]["alpha"])
            if form.get("derived", {}).get("loss_at_target"):
                view["groups"].setdefault(group, {})["predicted"] = _interval(form["derived"]["loss_at_target"])
    return view


def _interval(p: dict) -> str:
    if p.get("lo") is None:
        return f"{p['estimate']:.4g}"
    return f"{p['estimate']:.4g} [{p['lo']:.3g}, {p['hi']:.3g}]"


def _fit_table(view: dict) -> str:
    def interval(p: dict) -> str:
        if p.get("fixed"):
            return "fixed"
        return "" if p.get("lo") is None else f"[{p['lo']:.4g}, {p['hi']:.4g}]"
    rows = [f"<tr><td>{esc(group)}</td><td>{esc(label)}</td><td>{esc(name)}</td>"
            f"<td>{p['estimate']:.4g}</td><td>{interval(p)}</td></tr>" for group, label, name, p in view["rows"]]
    if not rows:
        return ""
    return ("<table class='data'><tr><th>group</th><th>form</th><th>parameter</th><th>estimate</th>"
            "<th>95% interval</th></tr>" + "".join(rows) + "</table>")


def _scaling(page: _Page, study: StudyFile, done: pl.DataFrame, fit: dict | None, fit_error: str | None) -> None:
    page.add("<h2>Scaling</h2>")
    loss = _loss(study)
    done = _scored(done, loss)
    if done.height < 2:
        page.add("<p class='note'>Not enough completed trials to show scaling yet.</p>")
        return
    if fit_error:
        page.add(f"<p class='note'>No fit: {esc(fit_error)}</p>")
    for reason in (fit or {}).get("unsupported", []):
        page.add(f"<p class='note'>{esc(reason)}</p>")
    for warning in (fit or {}).get("warnings", []):
        page.add(f"<p class='warn'>warning: {esc(warning)}</p>")
    if fit and fit.get("loss") not in (None, loss):
        page.add(f"<p class='warn'>warning: the fit is of {esc(fit['loss'])}, the points of the study's "
                 f"scaling loss {esc(loss)}</p>")
    group = _group_column(study, done)
    for axis in ("flops", "params", "tokens"):
        page.figure(figures.scaling_figure(done, axis, group, fit, loss))
    page.figure(figures.frontier_figure(done, loss))
    iso = figures.isoflop_figure(fit, loss)
    if iso is not None:
        page.figure(iso)
    if fit:
        page.add(_fit_table(fit))
        for line in fit["predictions"]:
            page.add(f"<p class='prediction'>{esc(line)}</p>")


def _comparison(page: _Page, study: StudyFile, done: pl.DataFrame, fit: dict | None) -> None:
    group = _group_column(study, done)
    if not group or done.is_empty():
        return
    page.add(f"<h2>Architecture comparison by {esc(study.spec.scaling.group_by)}</h2>")
    loss = _loss(study)
    by_group = (fit or {}).get("groups", {})
    rows = []
    for name, part in figures.groups(done, group):
        scored = _scored(part, loss)
        best = _best_first(scored, loss).row(0, named=True) if scored.height else None
        cell = f"{best[loss]:.4f} (trial {best['trial']})" if best else MISSING
        g = by_group.get(name, {})
        rows.append(f"<tr><td>{esc(name)}</td><td>{part.height}</td><td>{cell}</td>"
                    f"<td>{esc(g.get('exponent', ''))}</td><td>{esc(g.get('predicted', ''))}</td></tr>")
    page.add(f"<table class='data'><tr><th>group</th><th>runs</th>"
             f"<th>best {esc(_short(loss))}</th><th>fitted exponent</th>"
             "<th>predicted at target C</th></tr>" + "".join(rows) + "</table>")
    for verdict in (fit or {}).get("comparison", []):
        page.add(f"<p>{esc(verdict)}</p>")


def _trials(page: _Page, study: StudyFile, df: pl.DataFrame) -> None:
    fields = _searched_columns(study, df)
    loss, listed = _loss(study), [c for c, _ in TABLE_COLUMNS]
    table = TABLE_COLUMNS if loss in listed else \
        TABLE_COLUMNS[:4] + [(loss, _short(loss))] + TABLE_COLUMNS[4:]   # beside bpb
    shown = [(c, name) for c, name in table if c in df.columns
             and (c not in OPTIONAL_COLUMNS or df[c].null_count() < df.height)]
    columns = [("trial", "trial"), ("status", "status")] + [(c, c.removeprefix("spec.")) for c in fields] \
        + shown + [("reason", "failure reason")]
    head = "".join(f"<th>{esc(name)}</th>" for _, name in columns)
    body = []
    for row in df.iter_rows(named=True):
        cells = []
        for column, name in columns:
            value = row.get(column)
            sort = "" if value is None or isinstance(value, (str, bool)) else f" data-v='{value}'"
            cells.append(f"<td{sort}>{_num(value, name)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    page.add("<h2>Trials</h2><input id='filter' placeholder='filter rows (any text)'>"
             f"<table class='data sortable' id='trials'><thead><tr>{head}</tr></thead><tbody>"
             + "".join(body) + "</tbody></table>")


def _curves(page: _Page, study: StudyFile, done: pl.DataFrame, top: int = 6) -> None:
    """The pretraining val bpb curves of the best trials by the study's loss column."""
    if done.is_empty() or "curve" not in done.columns:
        return
    chosen = _best_first(done, _loss(study)).head(top)
    curves = [(f"trial {r['trial']}", r["curve"]) for r in chosen.iter_rows(named=True) if r["curve"]]
    page.add("<h2>Training curves</h2>")
    page.figure(figures.curves_figure(curves))


def _best_median_rows(name: str, part: pl.DataFrame, best: dict, columns: list[tuple[str, str, str]]) -> str:
    """Two table rows for one group: the best trial's values, then each column's median."""
    first = f"<td rowspan='2'>{esc(name)}</td><td rowspan='2'>{part.height}</td>"
    cells = "".join(f"<td>{_fmt(best.get(c), f)}</td>" for c, _, f in columns)
    medians = "".join(f"<td>{_fmt(_median(part[c].to_list()), f)}</td>" for c, _, f in columns)
    return (f"<tr>{first}<td>best: trial {best['trial']}</td>{cells}</tr>"
            f"<tr><td>median</td>{medians}</tr>")


def _suite(page: _Page, study: StudyFile, done: pl.DataFrame, examples: int = 3, samples: int = 2) -> None:
    """Per group, the best trial (lowest suite bpb) and the medians of the evaluation suite; int8
    vs full precision as a figure; the best trials' saved completions and samples."""
    page.add("<h2 id='suite'>Evaluation suite</h2>")
    if "suite.metrics.bpb" not in done.columns or done["suite.metrics.bpb"].null_count() == done.height:
        page.add("<p class='note'>No completed trial has an evaluation suite (records from older versions).</p>")
        return
    suite = _with_columns(done.filter(pl.col("suite.metrics.bpb").is_not_null()),
                          [c for c, _, _ in SUITE_COLUMNS if c != "int8 penalty"] + ["suite.corpus"])
    suite = suite.with_columns((pl.col("suite.int8_bpb") - pl.col("suite.metrics.bpb")).alias("int8 penalty"))
    corpora = sorted({str(c) for c in suite["suite.corpus"].drop_nulls().to_list()})
    page.add("<p>Each finished model judged on the held-out text of the corpus it was last trained on "
             f"({esc(', '.join(corpora) or MISSING)}): bpb and perplexity, next-token top-1 accuracy, bpb with "
             "int8 weights beside full precision (a small difference: the architecture compresses well), and "
             "greedy completions of held-out lines (exact match, BLEU-4). val bpb is the pretraining corpus's, as "
             "elsewhere in this report. Best: the lowest suite bpb.</p>")
    group = _group_column(study, suite)
    head = "".join(f"<th>{esc(h)}</th>" for _, h, _ in SUITE_COLUMNS)
    rows, bests = [], []
    for name, part in figures.groups(suite, group):
        best = part.sort("suite.metrics.bpb").row(0, named=True)
        bests.append((name, best))
        rows.append(_best_median_rows(name, part, best, SUITE_COLUMNS))
    page.add(f"<table class='data' id='suite-table'><tr><th>group</th><th>runs</th><th></th>{head}</tr>"
             + "".join(rows) + "</table>")
    page.figure(figures.int8_figure(suite, group))
    for name, best in bests:
        parts = []
        for ex in (best.get("suite.completion.examples") or [])[:examples]:
            prompt = str(ex.get("prompt") or "")
            tail = prompt if len(prompt) <= 160 else "…" + prompt[-160:]
            parts.append("<tr>" + "".join(f"<td><pre class='sample'>{_text(v)}</pre></td>"
                                          for v in (tail, ex.get("reference"), ex.get("output"))) + "</tr>")
        if parts:
            parts = ["<table class='data examples'><tr><th>prompt (tail)</th><th>reference</th><th>output</th></tr>"
                     + "".join(parts) + "</table>"]
        for sample in (best.get("suite.samples") or [])[:samples]:
            parts.append(f"<pre class='sample'><b>{_text(sample.get('prompt'))}</b>{_text(sample.get('text'))}</pre>")
        if parts:
            page.add(f"<h3>{esc(name)}: trial {best['trial']}, completions and samples saved in the run record</h3>"
                     + "".join(parts))


def _has_finetune(done: pl.DataFrame) -> bool:
    if "phases" not in done.columns:
        return False
    return any(any((p or {}).get("name") == "finetune" for p in phases or []) for phases in done["phases"].to_list())


def _finetune(page: _Page, study: StudyFile, done: pl.DataFrame, top: int = 6) -> None:
    """Per group, the best and median fine-tuning gain and forgetting; gain vs forgetting per
    trial; the fine-tuning curves of the trials with the lowest fine-tuned bpb."""
    if done.is_empty() or not _has_finetune(done):
        return
    ft = _with_columns(done, [c for c, *_ in FINETUNE_COLUMNS] + ["finetune_curve"])
    ft = ft.filter(pl.col("finetune_gain_bpb").is_not_null() | pl.col("forgetting_bpb").is_not_null())
    page.add("<h2 id='finetune'>Fine-tuning</h2><p>Gain: bpb on the fine-tuning corpus before fine-tuning minus "
             "after (what it bought, higher is better). Forgetting: bpb on the pretraining corpus after minus "
             "before (what it cost, lower is better). Best: each column's best trial.</p>")
    if ft.is_empty():
        page.add("<p class='note'>No completed fine-tuned trial has gain or forgetting recorded.</p>")
        return
    group = _group_column(study, ft)
    head = "".join(f"<th>{esc(h)}: best</th><th>{esc(h)}: median</th>" for _, h, _, _ in FINETUNE_COLUMNS)
    rows = []
    for name, part in figures.groups(ft, group):
        cells = []
        for column, _, fmt, higher in FINETUNE_COLUMNS:
            valid = part.filter(pl.col(column).is_not_null() & pl.col(column).is_not_nan()) \
                if part.schema[column].is_float() else part.filter(pl.col(column).is_not_null())
            best = valid.sort(column, descending=higher).row(0, named=True) if valid.height else None
            cells.append(f"<td>{_fmt(best[column], fmt)} (trial {best['trial']})</td>" if best
                         else f"<td>{MISSING}</td>")
            cells.append(f"<td>{_fmt(_median(part[column].to_list()), fmt)}</td>")
        rows.append(f"<tr><td>{esc(name)}</td><td>{part.height}</td>{''.join(cells)}</tr>")
    page.add(f"<table class='data' id='finetune-table'><tr><th>group</th><th>runs</th>{head}</tr>"
             + "".join(rows) + "</table>")
    page.figure(figures.finetune_figure(ft, group, _searched_columns(study, ft)))
    chosen = ft.filter(pl.col("finetune_val_bpb").is_not_null()).sort("finetune_val_bpb").head(top)
    curves = [(f"trial {r['trial']}", r["finetune_curve"]) for r in chosen.iter_rows(named=True) if r["finetune_curve"]]
    if curves:
        page.figure(figures.curves_figure(curves, x="step",
                                          title="fine-tuning corpus bits per byte during fine-tuning"))


def _samples(page: _Page, study: StudyFile, done: pl.DataFrame, prompt: str, tokens: int) -> None:
    from workbench.evaluate.generate import generate, load_run
    page.add(f"<h2>Samples</h2><p>Continuations of <code>{esc(prompt)}</code> from the best model of each group "
             "(temperature 0.8, top-k 50), generated now from the weights in its run folder, for people to judge "
             "(the evaluation suite above shows those saved in the run record).</p>")
    group, loss = _group_column(study, done), _loss(study)
    for name, part in figures.groups(done, group):
        best = _best_first(part, loss).row(0, named=True)
        run_dir = Path(best.get("run_dir") or "")
        try:
            model, tok = load_run(run_dir)
            text = prompt + generate(model, tok, prompt, tokens)
        except (FileNotFoundError, OSError):
            text = None
        title = f"{esc(name)}: trial {best['trial']}, {esc(_short(loss))} {_fmt(best[loss], '{:.4f}')}"
        body = f"<pre class='sample'>{esc(text)}</pre>" if text is not None else \
            "<p class='note'>weights not on this machine (trained elsewhere or deleted)</p>"
        page.add(f"<h3>{title}</h3>{body}")


def build(study: StudyFile, ostudy: optuna.Study, df: pl.DataFrame, fit: dict | None = None, fit_error: str | None = None,
          samples: bool = True, prompt: str = "def ", sample_tokens: int = 160) -> tuple[str, int]:
    """The whole report as one HTML string, and its number of figures."""
    fit = fit_view(fit)
    done = df.filter(pl.col("status") == "completed") if "status" in df.columns else df
    if "val_bpb" in done.columns:
        done = done.filter(pl.col("val_bpb").is_not_null())
    page = _Page()
    _header(page, study, df)
    _scaling(page, study, done, fit, fit_error)
    page.add("<h2>Search</h2>")
    for _, fig in figures.search_figures(ostudy):
        page.figure(fig)
    _comparison(page, study, done, fit)
    _suite(page, study, done)
    _finetune(page, study, done)
    _trials(page, study, df)
    _curves(page, study, done)
    if samples and not done.is_empty():
        _samples(page, study, done, prompt, sample_tokens)
    return _TEMPLATE.format(title=esc(study.name), figures=page.figures, body="\n".join(page.parts),
                            script=_SCRIPT), page.figures


def write(study: StudyFile, ostudy: optuna.Study, df: pl.DataFrame, out: Path, fit: dict | None = None,
          fit_error: str | None = None, **options) -> Path:
    """Build the report and write it atomically to `out`; `options` go to build()."""
    text, _ = build(study, ostudy, df, fit, fit_error, **options)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, text)
    return out


_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach((th, i) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0];
  const asc = th.dataset.dir !== 'asc'; th.dataset.dir = asc ? 'asc' : 'desc';
  const key = td => td.dataset.v !== undefined ? parseFloat(td.dataset.v) : td.textContent;
  [...body.rows].sort((a, b) => {
    const x = key(a.cells[i]), y = key(b.cells[i]);
    return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
  }).forEach(r => body.appendChild(r));
}));
const filter = document.getElementById('filter');
if (filter) filter.addEventListener('input', () => {
  const q = filter.value.toLowerCase();
  document.querySelectorAll('#trials tbody tr').forEach(r =>
    r.style.display = r.textContent.toLowerCase().includes(q) ? '' : 'none');
});
"""

_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="workbench-figures" content="{figures}">
<title>{title}: workbench report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }}
table.sortable th {{ cursor: pointer; background: #f4f4f4; position: sticky; top: 0; }}
table.kv th {{ color: #555; font-weight: normal; }}
.note {{ color: #555; font-style: italic; }} .warn {{ color: #a40; }}
.prediction {{ font-weight: bold; }}
pre.sample {{ background: #f7f7f7; padding: 0.8em; white-space: pre-wrap; }}
table.examples td {{ vertical-align: top; max-width: 30em; }} table.examples pre.sample {{ margin: 0; }}
#filter {{ padding: 0.3em; width: 20em; }}
</style></head><body>
{body}
<script>{script}</script>
</body></html>
"""
