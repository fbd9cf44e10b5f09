"""The runs a fit reads: external tables and study exports, with their provenance, and one clear
error naming the file and column when a table cannot be used."""

import pytest

from scaling.planted import export_like, write_table
from workbench.plumbing.errors import FitError
from workbench.scaling.runs import load_runs


def test_external_table_without_flops_counts_six_n_d(tmp_path):
    path = write_table(tmp_path / "runs.csv", params=[1e6, 2e6], tokens=[1e8, 3e8], loss=[3.0, 2.9], group=["a", "b"])
    runs, prov = load_runs(path)
    assert runs["flops"].to_list() == pytest.approx([6e14, 3.6e15])
    assert runs["group"].to_list() == ["a", "b"] and runs["budget"].null_count() == 2
    assert prov.kind == "table" and prov.layout == "runs" and prov.defaults.x == "flops"
    assert prov.conventions.C == "6ND" and prov.conventions.group_by == "group"
    assert any("6·N·D" in n for n in prov.notes)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_external_table_errors_name_the_file_and_column(tmp_path, suffix):
    path = write_table(tmp_path / f"runs{suffix}", params=[1e6, 2e6], loss=[3.0, 2.9])
    with pytest.raises(FitError, match=rf"runs{suffix}: missing column\(s\) 'tokens'"):
        load_runs(path)
    path = write_table(tmp_path / f"bad{suffix}", params=[1e6, 2e6, 4e6], tokens=[1e8, -1.0, 1e8], loss=[3.0, 2.9, 2.8])
    with pytest.raises(FitError, match=rf"bad{suffix}: column 'tokens' has 1 .*non-positive.*row 2"):
        load_runs(path)
    with pytest.raises(FitError, match="no such file"):
        load_runs(tmp_path / "absent.csv")
    with pytest.raises(FitError, match="unknown N convention 'kaplan'"):
        load_runs(path, n_convention="kaplan")


def test_study_export_keeps_completed_runs_and_records_conventions(tmp_path):
    path = write_table(tmp_path / "export.parquet", **export_like())
    runs, prov = load_runs(path, n_convention="nonembedding", c_convention="6N", loss="val_loss")
    assert prov.excluded == {"diverged": 1, "failed": 1, "pruned": 2}
    assert prov.conventions.model_dump() == {"N": "params.nonembedding", "C": "compute.6N", "loss": "val_loss",
                                             "group_by": None, "parameters": "nonembedding", "alternative": "total"}
    assert runs["params_other"].to_list() == pytest.approx([n * 1.1 for n in runs["params"].to_list()])
    assert len(runs) == 27 and runs["budget"].null_count() == 0
    # A ladder's budgets are its nominal ones (6N here), whichever convention C is reported in.
    total, _ = load_runs(path, c_convention="6N+attn")
    assert total["budget"].to_list() == runs["budget"].to_list() != total["flops"].to_list()
    with pytest.raises(FitError, match="no column 'model.depth'"):
        load_runs(path, group_by="model.depth")
    grouped, prov = load_runs(path, group_by="model.positional.kind")
    assert set(grouped["group"]) == {"rope", "alibi"} and prov.conventions.group_by == "model.positional.kind"
