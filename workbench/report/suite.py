"""The report's sections on what the models can do beyond their loss: the evaluation suite
(perplexity, top-1, int8 against full precision, completions and samples) and, for two-phase
studies, what fine-tuning bought and what it cost."""

from __future__ import annotations

import polars as pl

from workbench.report import figures
from workbench.report.figures import esc
from workbench.report.frame import Page
from workbench.report.rows import (MISSING, best_trial, fmt, group_column, median, ranked, searched_columns, text,
                                   with_columns)
from workbench.study.schema import StudyFile

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


def _best_median_rows(name: str, part: pl.DataFrame, best: dict, columns: list[tuple[str, str, str]]) -> str:
    """Two table rows for one group: the best trial's values, then each column's median."""
    first = f"<td rowspan='2'>{esc(name)}</td><td rowspan='2'>{part.height}</td>"
    cells = "".join(f"<td>{fmt(best.get(c), f)}</td>" for c, _, f in columns)
    medians = "".join(f"<td>{fmt(median(part[c].to_list()), f)}</td>" for c, _, f in columns)
    return (f"<tr>{first}<td>best: trial {best['trial']}</td>{cells}</tr>"
            f"<tr><td>median</td>{medians}</tr>")


def _examples(best: dict, examples: int, samples: int) -> list[str]:
    """A best trial's saved completions (prompt tail, reference, output) and samples."""
    parts = []
    for ex in (best.get("suite.completion.examples") or [])[:examples]:
        prompt = str(ex.get("prompt") or "")
        tail = prompt if len(prompt) <= 160 else "…" + prompt[-160:]
        parts.append("<tr>" + "".join(f"<td><pre class='sample'>{text(v)}</pre></td>"
                                      for v in (tail, ex.get("reference"), ex.get("output"))) + "</tr>")
    if parts:
        parts = ["<table class='data examples'><tr><th>prompt (tail)</th><th>reference</th><th>output</th></tr>"
                 + "".join(parts) + "</table>"]
    for sample in (best.get("suite.samples") or [])[:samples]:
        parts.append(f"<pre class='sample'><b>{text(sample.get('prompt'))}</b>{text(sample.get('text'))}</pre>")
    return parts


def suite_section(page: Page, study: StudyFile, done: pl.DataFrame, examples: int = 3, samples: int = 2) -> None:
    """Per group, the best trial (lowest suite bpb) and the medians of the evaluation suite; int8
    vs full precision as a figure; the best trials' saved completions and samples."""
    page.add("<h2 id='suite'>Evaluation suite</h2>")
    if "suite.metrics.bpb" not in done.columns or done["suite.metrics.bpb"].null_count() == done.height:
        page.add("<p class='note'>No completed trial has an evaluation suite (records from older versions).</p>")
        return
    suite = with_columns(done.filter(pl.col("suite.metrics.bpb").is_not_null()),
                         [c for c, _, _ in SUITE_COLUMNS if c != "int8 penalty"] + ["suite.corpus"])
    suite = suite.with_columns((pl.col("suite.int8_bpb") - pl.col("suite.metrics.bpb")).alias("int8 penalty"))
    corpora = sorted({str(c) for c in suite["suite.corpus"].drop_nulls().to_list()})
    page.add("<p>Each finished model judged on the held-out text of the corpus it was last trained on "
             f"({esc(', '.join(corpora) or MISSING)}): bpb and perplexity, next-token top-1 accuracy, bpb with "
             "int8 weights beside full precision (a small difference: the architecture compresses well), and "
             "greedy completions of held-out lines (exact match, BLEU-4). val bpb is the pretraining corpus's, as "
             "elsewhere in this report. Best: the lowest suite bpb.</p>")
    group = group_column(study, suite)
    head = "".join(f"<th>{esc(h)}</th>" for _, h, _ in SUITE_COLUMNS)
    rows, bests = [], []
    for name, part in figures.groups(suite, group):
        best = best_trial(part, "suite.metrics.bpb") or part.row(0, named=True)
        bests.append((name, best))
        rows.append(_best_median_rows(name, part, best, SUITE_COLUMNS))
    page.add(f"<table class='data' id='suite-table'><tr><th>group</th><th>runs</th><th></th>{head}</tr>"
             + "".join(rows) + "</table>")
    page.figure(figures.int8_figure(suite, group))
    for name, best in bests:
        parts = _examples(best, examples, samples)
        if parts:
            page.add(f"<h3>{esc(name)}: trial {best['trial']}, completions and samples saved in the run record</h3>"
                     + "".join(parts))


def _has_finetune(done: pl.DataFrame) -> bool:
    if "phases" not in done.columns:
        return False
    return any(any((p or {}).get("name") == "finetune" for p in phases or []) for phases in done["phases"].to_list())


def finetune_section(page: Page, study: StudyFile, done: pl.DataFrame, top: int = 6) -> None:
    """Per group, the best and median fine-tuning gain and forgetting; gain vs forgetting per
    trial; the fine-tuning curves of the trials with the lowest fine-tuned bpb."""
    if done.is_empty() or not _has_finetune(done):
        return
    ft = with_columns(done, [c for c, *_ in FINETUNE_COLUMNS] + ["finetune_curve"])
    ft = ft.filter(pl.col("finetune_gain_bpb").is_not_null() | pl.col("forgetting_bpb").is_not_null())
    page.add("<h2 id='finetune'>Fine-tuning</h2><p>Gain: bpb on the fine-tuning corpus before fine-tuning minus "
             "after (what it bought, higher is better). Forgetting: bpb on the pretraining corpus after minus "
             "before (what it cost, lower is better). Best: each column's best trial.</p>")
    if ft.is_empty():
        page.add("<p class='note'>No completed fine-tuned trial has gain or forgetting recorded.</p>")
        return
    group = group_column(study, ft)
    head = "".join(f"<th>{esc(h)}: best</th><th>{esc(h)}: median</th>" for _, h, _, _ in FINETUNE_COLUMNS)
    rows = []
    for name, part in figures.groups(ft, group):
        cells = []
        for column, _, pattern, higher in FINETUNE_COLUMNS:
            best = best_trial(part, column, higher)
            cells.append(f"<td>{fmt(best[column], pattern)} (trial {best['trial']})</td>" if best
                         else f"<td>{MISSING}</td>")
            cells.append(f"<td>{fmt(median(part[column].to_list()), pattern)}</td>")
        rows.append(f"<tr><td>{esc(name)}</td><td>{part.height}</td>{''.join(cells)}</tr>")
    page.add(f"<table class='data' id='finetune-table'><tr><th>group</th><th>runs</th>{head}</tr>"
             + "".join(rows) + "</table>")
    page.figure(figures.finetune_figure(ft, group, searched_columns(study, ft)))
    chosen = ranked(ft, "finetune_val_bpb").head(top)
    curves = [(f"trial {r['trial']}", r["finetune_curve"]) for r in chosen.iter_rows(named=True) if r["finetune_curve"]]
    if curves:
        page.figure(figures.curves_figure(curves, x="step",
                                          title="fine-tuning corpus bits per byte during fine-tuning"))
