"""Which trials a report section shows and how their values are written: the study's loss
column, the rows with a usable value, the best trial of a group, and one cell's text."""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from workbench.report.figures import esc
from workbench.study.objectives import FITTABLE
from workbench.study.schema import StudyFile

MISSING = "–"
_CONTROLS = {c: "\ufffd" for c in range(32) if chr(c) not in "\t\n"} | {127: "\ufffd"}


def short(loss: str) -> str:
    """A fittable loss's short name, for headings."""
    return FITTABLE[loss].short if loss in FITTABLE else loss


def missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt(value: Any, pattern: str) -> str:
    """A number in `pattern` (e.g. '{:.4f}'), or the missing mark."""
    return MISSING if missing(value) else pattern.format(value)


def median(values: list) -> float | None:
    kept = sorted(v for v in values if not missing(v))
    if not kept:
        return None
    mid = len(kept) // 2
    return float(kept[mid]) if len(kept) % 2 else (kept[mid - 1] + kept[mid]) / 2


def text(value: Any) -> str:
    """Model text for a <pre>: control characters (untrained models emit them) shown as U+FFFD, escaped."""
    return esc(str(value or "").translate(_CONTROLS))


def with_columns(df: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """`df` with every named column, null where older records lack it."""
    return df.with_columns([pl.lit(None, dtype=pl.Float64).alias(c) for c in columns if c not in df.columns])


def loss_column(study: StudyFile) -> str:
    """The report's loss column: the one the study's scaling fit fits (its `scaling.loss`), so
    points, frontier, fitted curves and every "best" trial are judged by the same number."""
    return study.spec.scaling.loss


def scored(df: pl.DataFrame, loss: str) -> pl.DataFrame:
    """The rows of `df` with a usable `loss` (finite and positive: the fit drops the rest and the
    figures draw it on log axes); an empty table where no record has the column."""
    df = with_columns(df, [loss])
    value = pl.col(loss).cast(pl.Float64)
    return df.filter(value.is_not_null() & value.is_finite() & (value > 0))


def ranked(df: pl.DataFrame, column: str, higher: bool = False) -> pl.DataFrame:
    """The rows with a finite `column`, best first: lowest, or highest with `higher`."""
    df = with_columns(df, [column])
    value = pl.col(column).cast(pl.Float64)
    return df.filter(value.is_not_null() & value.is_finite()).sort(value, descending=higher)


def best_trial(df: pl.DataFrame, column: str, higher: bool = False) -> dict | None:
    """The best row of `df` by `column` (see ranked) as a dict, or None when no row has a value:
    how every section picks a group's best trial."""
    best = ranked(df, column, higher)
    return best.row(0, named=True) if best.height else None


def group_column(study: StudyFile, df: pl.DataFrame) -> str | None:
    """The column of the study's `scaling.group_by` field, when the trials have it."""
    field = study.spec.scaling.group_by
    return f"spec.{field}" if field and f"spec.{field}" in df.columns else None


def searched_columns(study: StudyFile, df: pl.DataFrame) -> list[str]:
    """The spec columns the study varies: its search space, ladder sizes and groups, group_by."""
    names = list(study.spec.search)
    if study.spec.ladder:
        for entry in study.spec.ladder.sizes + study.spec.ladder.groups:
            names += [k for k in entry if k not in names]
    if study.spec.scaling.group_by and study.spec.scaling.group_by not in names:
        names.append(study.spec.scaling.group_by)
    return [f"spec.{n}" for n in names if f"spec.{n}" in df.columns]
