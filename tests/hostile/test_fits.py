"""Careless tables of runs: degenerate data is not identifiable rather than a perfect fit, values
beyond any model are one clear error, and the fit's JSON goes where the user asks, checked first."""

import polars as pl
import pytest
from typer.testing import CliRunner

from workbench.cli import app
from workbench.plumbing.errors import FitError
from workbench.scaling.fit import fit_runs
from workbench.scaling.runs import read_runs

runner = CliRunner()


def table(path, params, tokens, loss):
    pl.DataFrame({"params": params, "tokens": tokens, "loss": loss}).write_csv(path)
    return path


@pytest.mark.parametrize("case", ["ten identical rows", "a constant loss"])
def test_degenerate_runs_are_not_identifiable(tmp_path, case):
    if case == "ten identical rows":
        path = table(tmp_path / "t.csv", [1e6] * 10, [1e8] * 10, [3.0] * 10)
    else:
        path = table(tmp_path / "t.csv", [1e6 * (i + 1) for i in range(10)], [1e8 * (10 - i) for i in range(10)], [3.0] * 10)
    result = fit_runs(*read_runs(path), bootstrap=20)
    fitted = [f for f in result.forms.values() if f.reason is None]
    assert not fitted and result.forms["x"].reason.startswith("not identifiable")


def test_a_value_beyond_any_model_is_one_clear_error(tmp_path):
    path = table(tmp_path / "t.csv", [1e6, 2e6, 1e308, 4e6, 8e6], [1e8] * 5, [3.0, 2.9, 2.8, 2.7, 2.6])
    with pytest.raises(FitError, match=r"column 'params' has 1 value\(s\) above 1e\+40.*row 3"):
        read_runs(path)
    result = runner.invoke(app, ["fit", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_the_fit_is_written_where_asked_and_never_beside_the_users_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    path = table(data / "runs.csv", [1e6 * 2 ** i for i in range(8)], [1e8 * 2 ** (7 - i) for i in range(8)],
                 [3.0 - 0.1 * i for i in range(8)])
    assert runner.invoke(app, ["fit", str(path), "--bootstrap", "0"]).exit_code == 0
    assert (tmp_path / "runs" / "fits" / "runs.csv.fit.json").is_file() and not (data / "runs.csv.fit.json").exists()
    taken = tmp_path / "taken"
    taken.write_text("a file")
    refused = runner.invoke(app, ["fit", str(path), "--bootstrap", "0", "-o", str(taken / "fit.json")])
    assert refused.exit_code == 2 and "is a file" in refused.output and taken.read_text() == "a file"
