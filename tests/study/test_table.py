"""A study's trials as one table: run records flattened to columns, spec fields as dotted
columns, written to Parquet (or CSV without list columns) and read back equal."""

import datetime

import optuna
import polars as pl
from optuna.trial import TrialState

from workbench.study.table import load_trials, record_row, trial_row, trials_table, write_table


def test_a_finished_study_exports_every_trial_with_record_and_spec_columns(finished_study, tmp_path):
    df = trials_table(finished_study.ostudy)
    write_table(df, tmp_path / "out.parquet")
    back = pl.read_parquet(tmp_path / "out.parquet")
    assert back.equals(df) and back.height == 10 and back["trial"].to_list() == list(range(10))
    for column in ("spec.model.width", "params.total", "params.nonembedding", "tokens", "compute.6N+attn",
                   "val_bpb", "status", "reason", "tokens_per_s", "peak_memory_bytes", "curve"):
        assert column in back.columns
    assert back.filter(pl.col("status") == "completed")["val_bpb"].null_count() == 0
    assert isinstance(back["curve"].dtype, pl.List)
    assert back["role"].to_list() == back["origin"].to_list()
    assert sorted(back["role"].to_list()) == ["baseline"] * 2 + ["ladder"] * 4 + ["search"] * 4


def test_load_trials_reads_the_study_and_its_table_once(finished_study):
    study, ostudy, table = load_trials(finished_study.study.path, finished_study.url)
    assert study.name == finished_study.study.name and len(ostudy.get_trials()) == 10
    assert table.equals(trials_table(finished_study.ostudy))


def test_a_record_row_is_flat_with_the_curve_whole():
    record = {"status": "completed", "params": {"total": 10, "matmul": 6}, "compute": {"6N+attn": 1.5},
              "curve": [{"step": 1, "val_bpb": 3.0}], "suite": None}
    assert record_row(record) == {"status": "completed", "params.total": 10, "params.matmul": 6,
                                  "compute.6N+attn": 1.5, "suite": None, "curve": [{"step": 1, "val_bpb": 3.0}]}
    assert record_row(None) == {} and record == {**record}                   # the record is not changed


def test_a_trial_row_says_where_when_and_what():
    start = datetime.datetime(2025, 1, 1, 12, 0, 0)
    trial = optuna.trial.create_trial(
        state=TrialState.COMPLETE, values=[2.5], params={"model.width": 64},
        distributions={"model.width": optuna.distributions.CategoricalDistribution([32, 64])},
        user_attrs={"status": "completed", "origin": "search", "worker": "host:1", "run_dir": "runs/s/trials/0000",
                    "spec": {"model": {"width": 64}}, "record": {"val_bpb": 2.5, "params": {"total": 9}}})
    trial.datetime_start, trial.datetime_complete = start, start + datetime.timedelta(seconds=90)
    row = trial_row(trial)
    assert (row["state"], row["status"], row["origin"], row["role"], row["worker"], row["values"]) == \
        ("complete", "completed", "search", "search", "host:1", [2.5])
    assert row["duration_s"] == 90 and row["retried"] is False and row["retry_of"] is None
    assert (row["spec.model.width"], row["val_bpb"], row["params.total"]) == (64, 2.5, 9)
    running = trial_row(optuna.trial.create_trial(state=TrialState.RUNNING))    # no status of its own yet
    assert (running["state"], running["status"], running["duration_s"]) == ("running", "running", None)


def test_an_empty_study_is_an_empty_table_and_mixed_types_survive(tmp_path):
    ostudy = optuna.create_study()
    assert trials_table(ostudy).columns == ["trial"] and trials_table(ostudy).height == 0
    for kv in (None, 2):           # kv_heads null in one trial, an integer in the next
        ostudy.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE, value=1.0,
                                                   user_attrs={"spec": {"model": {"kv_heads": kv}}}))
    assert trials_table(ostudy)["spec.model.kv_heads"].to_list() == [None, 2]


def test_csv_leaves_list_and_struct_columns_out(tmp_path):
    df = pl.DataFrame({"trial": [0, 1], "val_bpb": [3.0, 2.5], "curve": [[1.0], [2.0, 3.0]]})
    write_table(df, tmp_path / "sub" / "t.csv")
    assert pl.read_csv(tmp_path / "sub" / "t.csv").columns == ["trial", "val_bpb"]
