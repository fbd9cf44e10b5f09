"""A study's trials as one polars table: one row per trial, the same layout as a run record,
with spec fields flattened to dotted columns. What `study export`, the fit and the report read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import polars as pl

from workbench.plumbing.dotted import flatten
from workbench.study.roles import role
from workbench.study.schema import StudyFile


def record_row(record: dict | None) -> dict[str, Any]:
    """A run record as flat columns: params.total, compute.6N+attn, tokenizer.bytes_per_token...
    and the evaluation curve as one list column."""
    if not record:
        return {}
    record = dict(record)
    curve = record.pop("curve", [])
    row = flatten(record)
    row["curve"] = curve
    return row


def trial_row(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    attrs = t.user_attrs
    row = {
        "trial": t.number,
        "state": t.state.name.lower(),
        "status": attrs.get("status", t.state.name.lower()),
        "reason": attrs.get("reason"),
        "origin": attrs.get("origin"),
        "role": role(attrs),
        "retry_of": attrs.get("retry_of"),
        "retried": bool(attrs.get("retried", False)),
        "worker": attrs.get("worker"),
        "run_dir": attrs.get("run_dir"),
        "started": t.datetime_start,
        "finished": t.datetime_complete,
        "duration_s": (t.datetime_complete - t.datetime_start).total_seconds()
        if t.datetime_complete and t.datetime_start else None,
        "values": t.values,
        # Which designed (size, budget, group) a ladder run measures; a tuned ladder has several
        # runs per point, and fits use the best of them.
        "point": json.dumps(attrs["point"], sort_keys=True) if attrs.get("point") is not None else None,
    }
    row.update({f"prediction.{k}": v for k, v in (attrs.get("prediction") or {}).items()
                if isinstance(v, (int, float, str)) and not isinstance(v, bool)})
    row.update({f"spec.{k}": v for k, v in flatten(attrs.get("spec") or {}).items()})
    row.update(record_row(attrs.get("record")))
    return row


def trials_table(ostudy: optuna.Study) -> pl.DataFrame:
    """Every trial of a study, one row each, in trial order; `role` (see roles.ROLES) says why
    each ran: searched, baseline, ladder point or validation run."""
    rows = [trial_row(t) for t in ostudy.get_trials(deepcopy=False)]
    if not rows:
        return pl.DataFrame({"trial": []}, schema={"trial": pl.Int64})
    # Spec values can mix types across trials (e.g. kv_heads null or int): let polars see all rows.
    return pl.DataFrame(rows, infer_schema_length=None).sort("trial")


def write_table(df: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        df.drop([c for c, t in df.schema.items() if isinstance(t, (pl.List, pl.Struct))]).write_csv(path)
    else:
        df.write_parquet(path)


def load_trials(study: StudyFile | Path, storage: str | None = None) -> tuple[StudyFile, optuna.Study, pl.DataFrame]:
    """A study (its file, or the file's path), its stored trials (`storage`, default: its
    journal), and those trials as one table, read once."""
    from workbench.study.file import load_study
    from workbench.study.storage import default_storage, load_existing
    study = study if isinstance(study, StudyFile) else load_study(study)
    ostudy = load_existing(study, storage or default_storage(study))
    return study, ostudy, trials_table(ostudy)
