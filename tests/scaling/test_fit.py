"""Scaling fits of tables of runs: every form with intervals and backtests, IsoFLOP and
allocation together, warnings and policies, groups and their verdicts, studies and their
exports, and the typed result's JSON."""

import json

import numpy as np
import pytest
from rich.console import Console

from scaling.planted import A_TRUE, export_like, fit_source, grid_runs, isoflop_runs, valley_ladder, write_table
from workbench.scaling import forms
from workbench.scaling import powerlaw as pw
from workbench.scaling.display import render
from workbench.scaling.forms import FitOptions
from workbench.scaling.fit import save
from workbench.scaling.estimate import Estimate
from workbench.scaling.result import FitResult


def _render(result, tmp_path) -> str:
    Console(file=open(tmp_path / "out.txt", "w"), width=120).print(render(result))
    return (tmp_path / "out.txt").read_text()


def test_external_table_fits_and_saves_its_json(tmp_path):
    C, N, D, L = isoflop_runs(1)
    path = write_table(tmp_path / "published.csv", params=N, tokens=D, loss=L)
    result = fit_source(path, bootstrap=100, target_flops=1e24)
    assert result.kind == "table" and result.counts.used == len(L)
    assert result.conventions.C == "6ND" and any("6·N·D" in n for n in result.notes)
    assert result.conventions.flops_per_param_token == pytest.approx(6.0)
    assert set(result.forms) == {"x", "x-noE", "nd", "nd-noE", "nd-tied"}   # a table has one N convention
    assert result.allocation.source in ("nd", "nd-tied") and result.selection.chosen is not None
    assert result.forms["nd"].derived["a"].estimate == pytest.approx(A_TRUE, abs=0.05)
    assert result.isoflop.a.estimate == pytest.approx(A_TRUE, abs=0.03)
    out = save(result, path.with_name(path.name + ".fit.json"))
    back = json.loads(out.read_text())
    for p in ("E", "A", "B", "alpha", "beta"):
        assert set(back["forms"]["nd"]["params"][p]) == {"estimate", "lo", "hi"}
    for q in ("a", "b", "N_opt", "D_opt", "tokens_per_param", "loss_at_target"):
        assert back["allocation"][q]["lo"] <= back["allocation"][q]["estimate"] <= back["allocation"][q]["hi"]
    assert back["allocation"]["from"] == result.allocation.source and "reason" not in back["allocation"]
    assert FitResult.model_validate_json(out.read_text()).to_json() == result.to_json()   # the JSON holds it all
    assert "compute-optimal allocation" in _render(result, tmp_path)


def test_study_export_fits_with_its_conventions(tmp_path):
    path = write_table(tmp_path / "export.parquet", **export_like())
    result = fit_source(path, bootstrap=100, n_convention="nonembedding", c_convention="6N")
    assert result.counts.excluded == {"diverged": 1, "failed": 1, "pruned": 2}
    assert result.conventions.flops_per_param_token == pytest.approx(6.0)
    assert result.isoflop.budgets_from == "ladder budgets"
    total = fit_source(path, bootstrap=0, n_convention="total", c_convention="6N+attn")
    assert total.conventions.flops_per_param_token == pytest.approx(6 * 1.05 / 1.1)
    failed = write_table(tmp_path / "failed.parquet", **{**export_like(), "status": ["failed"] * 31})
    nothing = fit_source(failed, bootstrap=10)
    assert nothing.counts.model_dump() == {"rows": 31, "used": 0, "excluded": {"failed": 31}}
    assert nothing.predictions == [] and nothing.allocation.reason and nothing.selection.chosen is None
    assert any("0 runs" in line for line in nothing.unsupported)


def test_tied_and_fixed_floor_forms(tmp_path):
    N, D, L = grid_runs(4, side=6)
    path = write_table(tmp_path / "runs.parquet", params=N, tokens=D, loss=L)
    result = fit_source(path, form="nd-tied,nd", fixed_e=1.69, bootstrap=50)
    tied = result.forms["nd-tied"].params
    assert tied["beta"].tied_to == "alpha" and tied["beta"].estimate == tied["alpha"].estimate
    assert tied["E"] == Estimate(estimate=1.69, fixed=True)
    assert json.loads(tied["E"].model_dump_json()) == {"estimate": 1.69, "lo": None, "hi": None, "fixed": True}
    assert result.forms["nd"].params["alpha"].estimate == pytest.approx(0.34, rel=0.1)
    assert result.allocation.source in ("nd", "nd-tied") and "E(fixed 1.69)" in result.forms["nd"].label


def test_real_study_and_its_parquet_export_fit_alike(tmp_path, monkeypatch):
    """A tiny study trained for real (ladder of 2 sizes x 2 token budgets, one diverging run)."""
    from support import write_study
    from workbench.study.file import load_study
    from workbench.study.storage import create_or_resume, default_storage, load_existing
    from workbench.study.table import trials_table, write_table as export
    from workbench.study.worker import work
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path, trials=0, enqueue=[{"model.init_std": 1e30}],
                       ladder={"tokens": [256, 1024], "sizes": [{"model.width": 16}, {"model.width": 64}]})
    study = load_study(path)
    create_or_resume(study, default_storage(study))
    assert work(study, default_storage(study)) == 5             # in this process: no worker start-up
    from_study = fit_source(path, bootstrap=50)
    assert from_study.kind == "study" and from_study.study == study.name
    # The diverged run is a baseline: a study with a ladder fits its ladder points only.
    assert from_study.counts.model_dump() == {"rows": 5, "used": 4, "excluded": {"baselines (not ladder points)": 1}}
    assert from_study.forms["x"].fitted and from_study.forms["nd"].reason
    export(trials_table(load_existing(study, default_storage(study))), tmp_path / "export.parquet")
    from_table = fit_source(tmp_path / "export.parquet", bootstrap=50)
    for name, entry in from_study.forms.items():
        assert entry.params == from_table.forms[name].params
    json.loads(from_study.to_json())


def test_warnings_for_bounds_and_a_floor_above_the_data(tmp_path):
    N = np.geomspace(1e6, 1e8, 12)
    rising = write_table(tmp_path / "rising.csv", params=N, tokens=np.full(12, 1e9), loss=2.0 * (N / 1e6) ** 0.05)
    result = fit_source(rising, x="params", form="x", bootstrap=0)
    assert any("alpha sits at its lower bound" in w for w in result.warnings)
    # A floor at the lowest losses is what a flattening curve gives; one above them by more than
    # twice the residual scatter contradicts the data.
    L = 2.0 + 50 * N ** -0.8
    fitted = pw.fit(pw.Form(terms=1), np.log(N)[:, None], np.log(L))
    opts = FitOptions(x="params", forms=["x"], target=None, bootstrap=0, delta=1e-3, holdout=0.2, seed=0,
                      fixed_e=None, outliers=None, workers=1)
    assert forms._warnings(fitted, L, None, opts, rmse=0.01) == []
    (above, fix), = forms._warnings(fitted, np.r_[L, 1.9], None, opts, rmse=0.01)
    assert "lies above the lowest observed loss (1.9)" in above and "smaller compute" in fix
    noise = np.random.default_rng(0).normal(0, 0.005, 12)        # a seed whose optimum has E = 0
    pure = write_table(tmp_path / "pure.csv", params=N, tokens=np.full(12, 1e9), loss=30 * N ** -0.1 * np.exp(noise))
    result = fit_source(pure, x="params", form="x,x-noE", bootstrap=0)
    assert any("E sits at its lower bound" in w for w in result.warnings)
    assert result.forms["x-noE"].params["alpha"].estimate == pytest.approx(0.1, rel=0.05)


def test_outlier_policy_is_explicit_and_counted(tmp_path):
    N, D, L = grid_runs(5, side=6)
    L[7] *= 1.5
    path = write_table(tmp_path / "runs.parquet", params=N, tokens=D, loss=L)
    plain = fit_source(path, form="nd", bootstrap=0)
    assert plain.estimator.outliers == "none" and plain.forms["nd"].outliers_dropped is None
    robust = fit_source(path, form="nd", bootstrap=0, outliers=4.0)
    assert robust.forms["nd"].outliers_dropped == 1 and "4 robust SDs" in robust.estimator.outliers


def test_backtest_holds_out_the_largest_compute(tmp_path):
    N, D, L = grid_runs(6, noise=0.0, side=6)
    path = write_table(tmp_path / "runs.csv", params=N, tokens=D, loss=L, flops=6 * N * D)
    bt = fit_source(path, form="nd", bootstrap=0, holdout=0.25).forms["nd"].backtest
    assert bt.by == "flops" and bt.test_runs == 9 and bt.train_runs == 27
    assert min(bt.held_out.key) == pytest.approx(np.sort(6 * N * D)[-9])
    assert bt.max_relative < 1e-3


def test_too_few_runs_give_reasons_not_numbers(tmp_path):
    path = write_table(tmp_path / "tiny.csv", params=[1e6, 2e6, 4e6], tokens=[1e8] * 3, loss=[3.0, 2.8, 2.7])
    result = fit_source(path, bootstrap=10)
    assert "needs at least 4" in result.forms["x"].reason
    assert "needs at least 6" in result.forms["nd"].reason
    assert result.allocation.reason and result.isoflop.reason and result.unsupported
    back = json.loads(result.to_json())
    assert set(back["forms"]["x"]) == {"label", "runs", "form", "reason"}        # nothing that does not apply
    assert "not fitted" in _render(result, tmp_path)


def test_groups_are_fitted_alone_and_compared_with_verdicts(tmp_path):
    rng = np.random.default_rng(0)
    N = np.geomspace(1e5, 1e8, 10)
    laws = {"steep": (1.0, 40.0, 0.30), "shallow": (1.0, 8.0, 0.15), "steep-too": (1.0, 40.0, 0.30)}
    rows = [(g, n, E + A * n ** -a) for g, (E, A, a) in laws.items() for n in N]
    rows += [("few", n, 3.0) for n in N[:3]]
    group, params, loss = zip(*rows)
    loss = np.array(loss) * np.exp(rng.normal(0, 0.005, len(loss)))
    path = write_table(tmp_path / "groups.parquet", params=params, tokens=[1e9] * len(loss), loss=loss, kind=group)
    result = fit_source(path, x="params", form="x", group_by="kind", bootstrap=200)
    fits = result.groups.fits
    assert "at least 4" in fits["few"].reason
    assert fits["steep"].forms["x"].params["alpha"].estimate == pytest.approx(0.30, rel=0.1)
    verdicts = {tuple(c.groups): c for c in result.groups.comparisons if c.quantity == "alpha"}
    resolved = verdicts[("shallow", "steep")]
    assert resolved.resolved and "excludes 0: resolved by the data" in resolved.verdict
    assert not verdicts[("steep", "steep-too")].resolved
    assert "not resolved" in verdicts[("steep", "steep-too")].verdict
    assert "groups by kind" in _render(result, tmp_path)


def test_an_isoflop_bootstrap_that_mostly_fails_is_reported_as_a_design_problem(tmp_path):
    C, N, D, L, _ = valley_ladder(0)
    path = write_table(tmp_path / "ladder.csv", params=N, tokens=D, loss=L, flops=C)
    quiet = fit_source(path, form="x", bootstrap=200)
    assert quiet.isoflop.supported and quiet.isoflop.interval_reason is None
    assert quiet.isoflop.noise.sd == pytest.approx(0.01, rel=0.3) and "no repeated seeds" in quiet.isoflop.noise.source
    assert any(line.startswith("IsoFLOP: N_opt ∝ C^") for line in quiet.predictions)
    noisy = fit_source(path, form="x", bootstrap=200, noise=0.05)      # five times the noise these runs show
    reason = noisy.isoflop.interval_reason
    assert reason.startswith("design problem") and "C = 1e+17 in" in reason and noisy.isoflop.noise.source == "given"
    assert not noisy.isoflop.supported and noisy.isoflop.a.lo is None
    assert not any(line.startswith("IsoFLOP: N_opt") for line in noisy.predictions)
    assert any(reason in line for line in noisy.unsupported)
