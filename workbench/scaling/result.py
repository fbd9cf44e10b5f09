"""What a scaling fit says, as types: estimates with their intervals, one entry per fitted law,
the IsoFLOP analysis, the compute-optimal allocation, groups and their comparisons, and the
provenance of the runs. `FitResult` is what `fit_runs` returns; its JSON is `workbench fit
--json` and the saved fit.json. Where the data cannot support a number, an entry carries a
`reason` instead, so reports say why rather than draw a wrong line.

Fields that do not apply are left out of the JSON rather than written as null (`absent()`);
non-finite numbers are written as null."""

from __future__ import annotations

import math
from typing import Annotated, Any, Iterator

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


def _finite(value: Any) -> Any:
    """Numbers (numpy's too) as Python floats; NaN and infinities as None."""
    if value is None or isinstance(value, (bool, str)):
        return value
    try:
        value = float(value)
    except (TypeError, ValueError):
        return value
    return value if math.isfinite(value) else None


Num = Annotated[float | None, BeforeValidator(_finite)]
"""A number that may be missing (a non-finite value is missing)."""


def absent() -> Any:
    """A field left out of the JSON when it does not apply (is None)."""
    return Field(None, exclude_if=lambda v: v is None)


def num(value: float | None) -> str:
    """How every number of a fit is written: 4 significant digits, or scientific notation for
    the very large and very small; '-' when missing."""
    if value is None:
        return "-"
    return f"{value:.3e}" if abs(value) >= 1e5 or (value and abs(value) < 1e-3) else f"{value:.4g}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", serialize_by_alias=True, validate_by_name=True,
                              validate_assignment=True)


class Estimate(_Model):
    """A point estimate with its 95% bootstrap interval (lo, hi: None without one). A fixed
    parameter says so; a tied one names the parameter it equals."""

    estimate: Num
    lo: Num = None
    hi: Num = None
    fixed: bool | None = absent()
    tied_to: str | None = absent()

    def interval(self) -> str:
        """The interval in words: '[lo, hi]', 'fixed', '= alpha' or '(no interval)'."""
        if self.fixed:
            return "fixed"
        if self.tied_to:
            return f"= {self.tied_to}"
        return "(no interval)" if self.lo is None else f"[{num(self.lo)}, {num(self.hi)}]"

    def text(self) -> str:
        """The estimate and its interval, e.g. '0.3412 [0.3301, 0.3525]'."""
        if self.lo is None and not self.fixed and not self.tied_to:
            return num(self.estimate)
        return f"{num(self.estimate)} {self.interval()}"


class Conventions(_Model):
    """Which columns the runs' N, C and loss came from, and the grouping field."""

    N: str
    C: str
    loss: str
    group_by: str | None
    flops_per_param_token: Num = absent()
    """k in C = k·N·D: the median over the runs (set by the fit)."""


class Defaults(_Model):
    """What the source asks for when the caller does not: a study's `scaling:` section."""

    x: str
    group_by: str | None


class Provenance(_Model):
    """Where a table of runs came from, which rows were left out and why, and its conventions."""

    source: str
    kind: str
    """study or table."""
    layout: str
    """study-export (a study's trials, or their export) or runs (a user's own table)."""
    study: str | None = None
    rows: int
    used: int
    excluded: dict[str, int]
    """Rows left out, by reason (a trial's status, or no usable loss)."""
    conventions: Conventions
    notes: list[str] = []
    defaults: Defaults | None = None


class Counts(_Model):
    rows: int
    used: int
    excluded: dict[str, int]


class Estimator(_Model):
    """How the laws were fitted and their intervals made."""

    objective: str
    huber_delta: float
    parametrisation: str
    optimizer: str
    bootstrap: int
    interval: float
    seed: int
    outliers: str


class GoodnessOfFit(_Model):
    runs: int
    r2_log: Num
    rmse_log: Num
    objective: Num
    grad_norm: Num
    converged: bool
    message: str
    starts_agreeing: int


class Curve(_Model):
    """The fitted law along one axis, for plots, with its 95% bootstrap band."""

    axis: str
    x: list[Num]
    y: list[Num]
    lo: list[Num] | None = absent()
    hi: list[Num] | None = absent()


class HeldOut(_Model):
    key: Num
    observed: Num
    predicted: Num


class Backtest(_Model):
    """The law fitted without the largest runs (by `by`), and how far it misses them."""

    holdout: float
    train_runs: int
    test_runs: int
    by: str | None = None
    reason: str | None = absent()
    key_threshold: Num = absent()
    mae: Num = absent()
    bias: Num = absent()
    """Mean of predicted - observed."""
    max_abs: Num = absent()
    mae_relative: Num = absent()
    max_relative: Num = absent()
    held_out: list[HeldOut] | None = absent()


class BootstrapCount(_Model):
    resamples: int
    unconverged: int


class FormFit(_Model):
    """One law fitted to the runs, or the reason it was not."""

    label: str
    runs: int
    reason: str | None = absent()
    gof: GoodnessOfFit | None = absent()
    params: dict[str, Estimate] | None = absent()
    derived: dict[str, Estimate] | None = absent()
    """At the target compute: loss_at_target; for L(N, D) also the allocation's a, b, N_opt,
    D_opt and tokens_per_param."""
    curve: Curve | None = absent()
    bootstrap: BootstrapCount | None = absent()
    outliers_dropped: int | None = absent()
    backtest: Backtest | None = absent()
    warnings: list[str] | None = absent()

    @property
    def fitted(self) -> bool:
        return self.params is not None


class Budget(_Model):
    """One IsoFLOP budget: its runs, and their loss-minimising size or why there is none."""

    flops: Num
    runs: int
    flops_spread: Num
    """Largest over smallest compute among its runs, minus 1."""
    params: list[Num]
    tokens: list[Num]
    loss: list[Num]
    reason: str | None = absent()
    N_opt: Num = absent()
    D_opt: Num = absent()
    loss_opt: Num = absent()


class IsoFLOP(_Model):
    """The IsoFLOP analysis: per budget the optimal size, then N_opt ∝ C^a and D_opt ∝ C^b."""

    reason: str | None = absent()
    budgets: list[Budget] | None = absent()
    a: Estimate | None = absent()
    b: Estimate | None = absent()
    N_opt: Estimate | None = absent()
    D_opt: Estimate | None = absent()
    N_opt_at: Num = absent()
    D_opt_at: Num = absent()
    resamples: int | None = absent()
    failed: int | None = absent()
    budgets_from: str | None = absent()
    interval_reason: str | None = absent()


class Allocation(_Model):
    """How to spend the target compute (from an L(N, D) fit), or why the fit cannot say."""

    source: str | None = Field(None, alias="from", exclude_if=lambda v: v is None)
    """The form it comes from."""
    target_flops: Num = absent()
    flops_per_param_token: Num = absent()
    a: Estimate | None = absent()
    b: Estimate | None = absent()
    N_opt: Estimate | None = absent()
    D_opt: Estimate | None = absent()
    tokens_per_param: Estimate | None = absent()
    loss_at_target: Estimate | None = absent()
    reason: str | None = absent()


class GroupFit(_Model):
    """One group's runs fitted alone, or why they were not."""

    runs: int
    reason: str | None = absent()
    forms: dict[str, FormFit] | None = absent()
    isoflop: IsoFLOP | None = absent()
    allocation: Allocation | None = absent()
    notes: list[str] | None = absent()


class Comparison(_Model):
    """Two groups compared on one quantity of one form: is the difference resolved?"""

    groups: list[str]
    form: str
    quantity: str
    difference: Estimate
    intervals_overlap: bool
    resolved: bool
    verdict: str


class Groups(_Model):
    by: str
    fits: dict[str, GroupFit]
    comparisons: list[Comparison]


class FitResult(_Model):
    """Everything a fit says about a table of runs: provenance, estimator, every law, the
    IsoFLOP analysis, the allocation, groups, and sentences for people (warnings, what the data
    could not support, predictions, notes)."""

    source: str
    kind: str
    layout: str
    study: str | None
    x: str
    target_flops: Num
    conventions: Conventions
    counts: Counts
    estimator: Estimator
    forms: dict[str, FormFit]
    isoflop: IsoFLOP
    allocation: Allocation
    groups: Groups | None
    notes: list[str]
    warnings: list[str] = []
    unsupported: list[str] = []
    predictions: list[str] = []

    @property
    def reason(self) -> None:
        """The whole fit always exists (a group's part may carry a reason instead)."""
        return None

    def parts(self) -> Iterator[tuple[str, str | None, FitResult | GroupFit]]:
        """The overall fit, then each group: (prefix naming the group, group or None, part)."""
        yield "", None, self
        if self.groups:
            for g, part in self.groups.fits.items():
                yield f"{self.groups.by} = {g}: ", g, part

    def to_json(self, indent: int | None = None) -> str:
        """The result as JSON (what `workbench fit --json` prints and fit.json holds)."""
        return self.model_dump_json(indent=indent)
