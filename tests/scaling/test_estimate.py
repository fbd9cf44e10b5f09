"""The fit's result types: one way to write an estimate and its interval, and JSON that leaves
out what does not apply and writes non-finite numbers as null."""

import json

from workbench.scaling.estimate import Estimate, num
from workbench.scaling.result import Backtest, Curve


def test_an_estimate_is_written_one_way():
    assert Estimate(estimate=0.34123, lo=0.3301, hi=0.35252).text() == "0.3412 [0.3301, 0.3525]"
    assert Estimate(estimate=2.5e10, lo=1e10, hi=4e10).text() == "2.500e+10 [1.000e+10, 4.000e+10]"
    assert Estimate(estimate=1.69, fixed=True).interval() == "fixed"
    assert Estimate(estimate=0.3, tied_to="alpha").text() == "0.3 = alpha"
    assert Estimate(estimate=3.0).interval() == "(no interval)" and Estimate(estimate=3.0).text() == "3"
    assert num(None) == "-" and num(0.0) == "0" and num(2e-4) == "2.000e-04"


def test_json_leaves_out_what_does_not_apply_and_nulls_non_finite_numbers():
    e = Estimate(estimate=float("nan"), lo=float("inf"), hi=1.0)
    assert e.estimate is None and json.loads(e.model_dump_json()) == {"estimate": None, "lo": None, "hi": 1.0}
    bt = Backtest(holdout=0.2, train_runs=3, test_runs=1, by="flops", reason="too few")
    assert set(json.loads(bt.model_dump_json())) == {"holdout", "train_runs", "test_runs", "by", "reason"}
    curve = Curve(axis="flops", x=[1.0, 2.0], y=[3.0, float("nan")])
    assert json.loads(curve.model_dump_json()) == {"axis": "flops", "x": [1.0, 2.0], "y": [3.0, None]}
