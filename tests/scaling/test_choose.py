"""Which law the answer comes from: every form under both parameter conventions judged on the
held-out largest compute, and no recommendation from a fit at a bound or one that misses its own
backtest, with the reason and the data that would fix it."""

import json

import numpy as np
import pytest

from scaling.planted import chinchilla, fit_source, rising_ladder, two_conventions, write_table


def test_auto_fits_every_form_under_both_conventions_and_keeps_the_best_extrapolation(tmp_path):
    path = write_table(tmp_path / "export.parquet", **two_conventions(0))
    result = fit_source(path, bootstrap=50)
    sel = result.selection
    pairs = {(c.form, c.convention) for c in sel.rows}
    assert pairs == {("x", None), ("x-noE", None)} | {(f, c) for f in ("nd", "nd-noE", "nd-tied")
                                                        for c in ("total", "nonembedding")}
    supported = [c for c in sel.rows if c.supported]
    assert sel.chosen == min(supported, key=lambda c: c.heldout_error).key
    # The law was planted in non-embedding parameters: that convention extrapolates best.
    assert result.forms[sel.chosen].convention == "nonembedding"
    assert result.allocation.convention == "nonembedding" and result.allocation.source.endswith("@nonembedding")
    assert any("(nonembedding parameters) says: train" in line for line in result.predictions)
    assert json.loads(result.to_json())["selection"]["chosen"] == sel.chosen


def test_fits_at_their_bounds_give_no_recommendation_and_say_what_would_fix_it(tmp_path):
    path = write_table(tmp_path / "ladder.parquet", **rising_ladder())
    result = fit_source(path, bootstrap=50, form="x,nd")
    nd = result.forms["nd"]
    assert nd.fitted and not nd.supported and "bound" in nd.refusal and nd.fix
    assert result.allocation.N_opt is None and "no supported L(N, D) fit" in result.allocation.reason
    assert result.allocation.fix and not any("says: train" in line for line in result.predictions)
    assert any(line.startswith("no recommendation") and "what would fix it" in line for line in result.unsupported)
    # Every budget's best size is its smallest: none has an interior minimum, and each says to add smaller sizes.
    assert [b.add for b in result.isoflop.budgets] == ["smaller"] * 3
    assert not result.isoflop.supported and not any(line.startswith("IsoFLOP: N_opt") for line in result.predictions)


def test_a_law_that_misses_its_own_backtest_gives_no_recommendation(tmp_path):
    rng = np.random.default_rng(0)
    N, D = (a.ravel() for a in np.meshgrid(np.geomspace(1e8, 1e10, 7), np.geomspace(1e9, 1e11, 6)))
    L = chinchilla(N, D) * np.exp(rng.normal(0, 0.003, N.size))
    L[6 * N * D >= np.quantile(6 * N * D, 0.8)] *= 1.06      # the largest runs leave the law: a new regime
    result = fit_source(write_table(tmp_path / "bent.csv", params=N, tokens=D, loss=L), bootstrap=50, form="nd")
    nd = result.forms["nd"]
    assert nd.warnings == [] and nd.backtest.passed is False and "backtest" in nd.refusal
    assert nd.backtest.mae_relative > np.expm1(nd.backtest.half_width)
    assert result.selection.chosen is None and result.allocation.reason and result.predictions == []
    planted = fit_source(write_table(tmp_path / "law.csv", params=N, tokens=D, loss=chinchilla(N, D)
                                     * np.exp(rng.normal(0, 0.003, N.size))), bootstrap=50, form="nd")
    assert planted.forms["nd"].supported and planted.forms["nd"].backtest.passed


def test_model_error_is_the_backtests_rms_log_error_net_of_noise():
    from workbench.scaling.choose import model_error
    from workbench.scaling.result import HeldOut

    held = HeldOut(key=[1.0, 2.0, 3.0], observed=[2.0, 3.0, 4.0],
                   predicted=[2.0 * np.exp(0.02), 3.0 * np.exp(-0.03), 4.0])
    rms = np.sqrt((0.02 ** 2 + 0.03 ** 2) / 3)
    assert model_error(held, 0.0) == pytest.approx(rms)
    assert model_error(held, 0.01) == pytest.approx(np.sqrt(rms ** 2 - 0.01 ** 2))
    assert model_error(held, 0.05) == 0.0          # errors the noise explains leave no model error
