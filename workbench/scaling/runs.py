"""The runs a fit reads, as one table with columns params, tokens, flops, loss, group, budget,
params_other (N under the other parameter convention, when known) and unique_tokens (the unique
training tokens each run drew from, when known): from a study's trials table (or its export), or
from a user's own table of runs (CSV or Parquet), with provenance: where they came from, which
rows were left out and why, and the conventions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from workbench.plumbing.errors import FitError
from workbench.scaling.result import Conventions, Defaults, Provenance

if TYPE_CHECKING:       # the study layer imports the model and torch: seconds a table's fit need not pay
    from workbench.study.schema import StudyFile

N_COLUMNS = {"total": "params.total", "nonembedding": "params.nonembedding", "matmul": "params.matmul"}
C_COLUMNS = {"6N": "compute.6N", "6N+attn": "compute.6N+attn"}
OTHER_CONVENTION = {"total": "nonembedding", "nonembedding": "total"}
"""The parameter convention a fit compares with the requested one (Kaplan's against the total)."""
TABLE_COLUMNS = "params, tokens, loss (optional: flops, group, unique_tokens or epochs)"
MAX_VALUE = 1e40       # beyond any model, corpus or compute budget: products like 6·N·D would overflow


def check_conventions(n_convention: str, c_convention: str) -> None:
    """Refuse an unknown N or C convention, naming the known ones."""
    if n_convention not in N_COLUMNS:
        raise FitError(f"unknown N convention {n_convention!r}: choose one of {', '.join(N_COLUMNS)}")
    if c_convention not in C_COLUMNS:
        raise FitError(f"unknown C convention {c_convention!r}: choose one of {', '.join(C_COLUMNS)}")


def load_runs(source: Path, *, loss: str | None = None, n_convention: str = "total",
              c_convention: str = "6N+attn", group_by: str | None = None,
              storage: str | None = None) -> tuple[pl.DataFrame, Provenance]:
    """The runs of SOURCE, a study file (its trials, read from `storage` by the study layer) or a
    table of runs (`read_runs`), with their provenance."""
    source = Path(source)
    if source.suffix in (".yaml", ".yml") and source.is_file():
        from workbench.specfile import read_yaml
        from workbench.study.table import load_trials
        if "base" not in read_yaml(source)[0]:
            raise FitError(f"{source}: a spec, not a study (a study file has a top-level `base:`)")
        study, _, table = load_trials(source, storage)
        return study_runs(study, table, loss, n_convention, c_convention, group_by)
    return read_runs(source, loss=loss, n_convention=n_convention, c_convention=c_convention, group_by=group_by)


def study_runs(study: StudyFile, table: pl.DataFrame, loss: str | None = None, n_convention: str = "total",
               c_convention: str = "6N+attn", group_by: str | None = None) -> tuple[pl.DataFrame, Provenance]:
    """A study's completed trials (its trials table, study.table) as runs to fit, under the
    study's scaling section where an argument is left out."""
    check_conventions(n_convention, c_convention)
    group_by = study.spec.scaling.group_by if group_by is None else group_by
    ladder = study.spec.ladder
    runs, prov = from_export(table, str(study.path), loss or study.spec.scaling.loss, n_convention, c_convention,
                             group_by, ladder.flops_convention if ladder and ladder.flops else None)
    prov.kind, prov.study = "study", study.name
    prov.defaults = Defaults(x=study.spec.scaling.x, group_by=group_by)
    return runs, prov


LEFT_OUT = {"search": "searched trials (not ladder points)", "baseline": "baselines (not ladder points)",
            "validation": "validation runs (held out to check the fit)",
            "branch": "branches of searched or baseline runs (not ladder points)"}


def ladder_runs(table: pl.DataFrame, loss: str) -> tuple[pl.DataFrame, dict[str, int]]:
    """A study with a ladder (or its export) fits its ladder points only: the searched trials
    and baselines differ in more than size and budget, and validation runs check the fit from outside. Where a
    tuned point has several completed runs, the one with the lowest loss stands for it. Returns
    the rows and what was left out, counted by reason."""
    if "role" not in table.columns or not (table["role"] == "ladder").any():
        return table, {}
    left = {LEFT_OUT[r]: n for r, n in table.filter(pl.col("role") != "ladder").group_by("role").len().iter_rows()
            if r in LEFT_OUT}
    kept = table.filter(pl.col("role") == "ladder")
    pointed = kept.filter(pl.col("point").is_not_null()) if "point" in kept.columns else None
    if pointed is not None and {"status", loss} <= set(kept.columns) and pointed["point"].n_unique() < len(pointed):
        done = pointed.filter((pl.col("status") == "completed") & pl.col(loss).is_not_null())
        best = done.sort(loss).unique("point", keep="first", maintain_order=True)
        tuned = len(done) - len(best)
        if tuned:
            left["tuning runs not the best of their point"] = tuned
        kept = pl.concat([best, kept.filter(~pl.col("trial").is_in(done["trial"].implode()))], how="diagonal_relaxed")
    return kept.sort("trial"), left


def read_runs(source: Path, *, loss: str | None = None, n_convention: str = "total",
              c_convention: str = "6N+attn", group_by: str | None = None) -> tuple[pl.DataFrame, Provenance]:
    """The runs in a table file: a study export (Parquet or CSV with `params.total`, `status`,
    ...) or an external table with the columns params, tokens, loss and optionally flops and
    group. Returns the runs and their provenance."""
    source = Path(source)
    if not source.is_file():
        raise FitError(f"{source}: no such file")
    check_conventions(n_convention, c_convention)
    table = _read_table(source)
    loss = loss or "val_bpb"
    if "params" in table.columns or "params.total" not in table.columns:
        runs, prov = _from_table(table, str(source), loss, group_by)
    else:
        runs, prov = from_export(table, str(source), loss, n_convention, c_convention, group_by)
    prov.kind, prov.study = "table", None
    prov.defaults = Defaults(x="flops", group_by=group_by)
    return runs, prov


def _read_table(path: Path) -> pl.DataFrame:
    try:
        if path.suffix == ".csv":
            return pl.read_csv(path, infer_schema_length=None)
        if path.suffix in (".parquet", ".pq"):
            return pl.read_parquet(path)
    except Exception as e:
        raise FitError(f"{path}: cannot read the table: {str(e).splitlines()[0]}") from None
    raise FitError(f"{path}: not a study (.yaml) or a table of runs (.csv, .parquet)")


def _group_column(table: pl.DataFrame, where: str, group_by: str | None) -> pl.Series:
    if group_by is None:
        name = "group" if "group" in table.columns else None
    else:
        name = next((c for c in (group_by, f"spec.{group_by}") if c in table.columns), None)
        if name is None:
            raise FitError(f"{where}: no column {group_by!r} (nor spec.{group_by}) to group by")
    if name is None:
        return pl.Series("group", [None] * len(table), pl.String)
    return table[name].cast(pl.String).alias("group")


def _from_table(table: pl.DataFrame, where: str, loss: str, group_by: str | None):
    """An external table: every value must be usable, or one clear error says where not."""
    loss_col = loss if loss in table.columns else "loss"
    missing = [c for c in ("params", "tokens", loss_col) if c not in table.columns]
    if missing:
        raise FitError(f"{where}: missing column(s) {', '.join(map(repr, missing))}: "
                       f"a table of runs needs {TABLE_COLUMNS}")
    has_flops = "flops" in table.columns
    for col in ["params", "tokens", loss_col] + (["flops"] if has_flops else []):
        _check_positive(table, col, where)
    cols = {c: table[c].cast(pl.Float64) for c in ("params", "tokens")}
    none = pl.Series([None] * len(table), dtype=pl.Float64)
    runs = pl.DataFrame({
        **cols, "flops": table["flops"].cast(pl.Float64) if has_flops else 6.0 * cols["params"] * cols["tokens"],
        "loss": table[loss_col].cast(pl.Float64), "group": _group_column(table, where, group_by),
        "budget": none, "params_other": none, "unique_tokens": _unique_tokens(table, where)})
    notes = [] if has_flops else ["C = 6·N·D: the table has no flops column"]
    return runs, Provenance(
        source=where, kind="table", layout="runs", rows=len(table), used=len(runs), excluded={}, notes=notes,
        conventions=Conventions(N="params", C="flops" if has_flops else "6ND", loss=loss_col, parameters="as given",
                                group_by=group_by or ("group" if "group" in table.columns else None)))


def _unique_tokens(table: pl.DataFrame, where: str) -> pl.Series:
    """The unique training tokens behind each run: a table's unique_tokens column, or tokens /
    epochs (a study's records carry both); null where unknown."""
    if "unique_tokens" in table.columns:
        _check_positive(table.filter(pl.col("unique_tokens").is_not_null()), "unique_tokens", where)
        return table["unique_tokens"].cast(pl.Float64).alias("unique_tokens")
    if "epochs" in table.columns and "tokens" in table.columns:
        epochs = table["epochs"].cast(pl.Float64)
        return (table["tokens"].cast(pl.Float64) / epochs.fill_null(float("nan"))).fill_nan(None).alias("unique_tokens")
    return pl.Series("unique_tokens", [None] * len(table), dtype=pl.Float64)


def _check_positive(table: pl.DataFrame, col: str, where: str) -> None:
    try:
        values = table[col].cast(pl.Float64).to_numpy()
    except Exception:
        raise FitError(f"{where}: column {col!r} is not numeric ({table[col].dtype})") from None
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise FitError(f"{where}: column {col!r} has {int(bad.sum())} missing, non-finite or "
                       f"non-positive value(s) (first at row {first + 1}: {table[col][first]})")
    huge = values > MAX_VALUE
    if huge.any():          # products such as 6·N·D and the power laws would overflow
        first = int(np.flatnonzero(huge)[0])
        raise FitError(f"{where}: column {col!r} has {int(huge.sum())} value(s) above {MAX_VALUE:.0e}, beyond "
                       f"any model, corpus or budget (first at row {first + 1}: {table[col][first]})")


def from_export(table: pl.DataFrame, where: str, loss: str, n_convention: str, c_convention: str,
                 group_by: str | None, ladder_convention: str | None = "per run"):
    """A study's trials: keep completed runs, count the rest by status, pick the columns of the
    chosen conventions. `ladder_convention` is the convention of an IsoFLOP ladder's budgets
    (None: the study has none; "per run": unknown, as in an export, so each run's
    spec.train.budget.flops_convention stands in)."""
    n_col, c_col = N_COLUMNS[n_convention], C_COLUMNS[c_convention]
    rows = len(table)
    table, excluded = ladder_runs(table, loss)
    if "status" in table.columns:
        for status, count in table.group_by("status").len().sort("status").iter_rows():
            if status != "completed":
                excluded[str(status)] = count
        kept = table.filter(pl.col("status") == "completed")
    else:
        kept = table
    if len(kept):
        missing = [c for c in (n_col, "tokens", c_col, loss) if c not in kept.columns]
        if missing:
            raise FitError(f"{where}: missing column(s) {', '.join(map(repr, missing))} "
                           f"(N convention {n_convention!r}, C convention {c_convention!r}, loss {loss!r})")
    else:   # nothing completed yet: the result will say so, form by form
        kept = pl.DataFrame({c: pl.Series([], dtype=pl.Float64) for c in (n_col, "tokens", c_col, loss)})
    other = OTHER_CONVENTION.get(n_convention)
    other_col = N_COLUMNS[other] if other else None
    runs = pl.DataFrame({"params": kept[n_col].cast(pl.Float64), "tokens": kept["tokens"].cast(pl.Float64),
                         "flops": kept[c_col].cast(pl.Float64), "loss": kept[loss].cast(pl.Float64),
                         "group": _group_column(kept, where, group_by) if len(kept) else
                         pl.Series([], dtype=pl.String), "budget": _ladder_budget(kept, ladder_convention),
                         "params_other": kept[other_col].cast(pl.Float64) if other_col in kept.columns
                         else pl.Series([None] * len(kept), dtype=pl.Float64),
                         "unique_tokens": _unique_tokens(kept, where)})
    ok = pl.all_horizontal([pl.col(c).is_finite() & (pl.col(c) > 0) for c in ("params", "tokens", "flops", "loss")])
    invalid = len(runs) - runs.filter(ok.fill_null(False)).height
    if invalid:
        excluded["no usable loss or size"] = invalid
    runs = runs.filter(ok.fill_null(False))
    return runs, Provenance(source=where, kind="table", layout="study-export", rows=rows, used=len(runs),
                            excluded=excluded, conventions=Conventions(
                                N=n_col, C=c_col, loss=loss, group_by=group_by, parameters=n_convention,
                                alternative=other if runs["params_other"].null_count() == 0 and len(runs) else None))


def _ladder_budget(kept: pl.DataFrame, convention: str | None) -> pl.Series:
    """A ladder run's compute under the convention its budget was set in, so that one budget's
    runs group exactly even when C is reported in another convention (which spreads them)."""
    none = pl.Series("budget", [None] * len(kept), pl.Float64)
    if convention is None or not len(kept) or "origin" not in kept.columns:
        return none
    ladder = pl.col("origin") == "ladder"
    if convention != "per run":
        expr = pl.when(ladder).then(pl.col(C_COLUMNS[convention]))
        return kept.select(expr.cast(pl.Float64)).to_series().alias("budget")
    field = "spec.train.budget.flops_convention"
    if field not in kept.columns:
        return none
    expr = pl.lit(None, pl.Float64)
    for name, col in C_COLUMNS.items():
        if col in kept.columns:
            expr = pl.when(ladder & (pl.col(field) == name)).then(pl.col(col)).otherwise(expr)
    return kept.select(expr.cast(pl.Float64)).to_series().alias("budget")
