"""What a scaling fit says, as types: estimates with their intervals, one entry per fitted law,
the IsoFLOP analysis, the compute-optimal allocation, groups and their comparisons, and the
provenance of the runs. `FitResult` is what `fit_runs` returns; its JSON is `workbench fit
--json` and the saved fit.json. Where the data cannot support a number, an entry carries a
`reason` instead, so reports say why rather than draw a wrong line.

Fields that do not apply are left out of the JSON rather than written as null; non-finite
numbers are written as null (scaling.estimate)."""

from __future__ import annotations

from typing import Iterator

from pydantic import Field, PrivateAttr

from workbench.scaling.estimate import Column, Estimate, Num, Plain, absent


class Conventions(Plain):
    """Which columns the runs' N, C and loss came from, and the grouping field."""

    N: str
    C: str
    loss: str
    group_by: str | None
    parameters: str = "as given"
    """The parameter convention of N: total, nonembedding, matmul, or as given (a user's table)."""
    alternative: str | None = absent()
    """The other parameter convention the runs also carry, which model choice fits too."""
    flops_per_param_token: Num = absent()
    """k in C = k·N·D: the median over the runs (set by the fit)."""


class Defaults(Plain):
    """What the source asks for when the caller does not: a study's `scaling:` section."""

    x: str
    group_by: str | None


class Provenance(Plain):
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


class Counts(Plain):
    rows: int
    used: int
    excluded: dict[str, int]


class Estimator(Plain):
    """How the laws were fitted and their intervals made."""

    objective: str
    huber_delta: float
    parametrisation: str
    optimizer: str
    bootstrap: int
    resampling: str | None = absent()
    """How each bootstrap resample's law was found: refitted, or, for many runs, one Newton step
    from the full-data optimum (scaling.onestep)."""
    interval: float
    seed: int
    outliers: str


class GoodnessOfFit(Plain):
    runs: int
    r2_log: Num
    rmse_log: Num
    objective: Num
    grad_norm: Num
    converged: bool
    message: str
    starts_agreeing: int


class Curve(Plain):
    """The fitted law along one axis, for plots, with its 95% bootstrap band."""

    axis: str
    x: list[Num]
    y: list[Num]
    lo: list[Num] | None = absent()
    hi: list[Num] | None = absent()


class HeldOut(Plain):
    """The held-out runs as columns, one entry per run (a table of a million runs holds out two
    hundred thousand: as columns they stay small in memory and in the JSON)."""

    key: Column
    observed: Column
    predicted: Column
    lo: Column | None = absent()
    """95% interval of the law fitted without the held-out runs, there (its bootstrap spread)."""
    hi: Column | None = absent()


class Backtest(Plain):
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
    half_width: Num = absent()
    """Mean half-width of the 95% intervals for one run at the held-out points, in log loss: the
    law's spread there and the run-to-run noise together."""
    outside: int | None = absent()
    """Held-out runs whose loss lies outside that interval."""
    passed: bool | None = absent()
    """The mean |log error| on the held-out runs is within the mean half-width of their intervals."""
    model_error: Num = absent()
    """Model-form error one extrapolation step out (SD of log loss): the root mean square of the
    held-out runs' log errors net of run-to-run noise, sqrt(max(0, mean(err²) - noise²)). Measured
    out of sample, it holds whatever the form gets wrong beyond the data (misspecification) along
    with the spread of the law fitted without them; one-run predictions carry it (scaling.predict)."""
    held_out: HeldOut | None = absent()


class BootstrapCount(Plain):
    resamples: int
    unconverged: int


class FormFit(Plain):
    """One law fitted to the runs, or the reason it was not; whether it may be used for a
    recommendation (supported), and if not, why (refusal) and what data would fix it."""

    label: str
    runs: int
    form: str | None = absent()
    """The form's name (x, x-noE, nd, nd-noE, nd-tied, nd-dc)."""
    convention: str | None = absent()
    """The parameter convention of N it was fitted under; None when N does not enter it."""
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
    supported: bool | None = absent()
    refusal: str | None = absent()
    fix: str | None = absent()
    unique_tokens: Num = absent()
    """Data-constrained form: the unique training tokens D' discounts repeats of (median)."""
    r_star: Num = absent()
    """Data-constrained form: R*_D, the repetitions after which repeated tokens are worth 1/e."""
    noise: Num = absent()
    """Run-to-run noise (SD of log loss) its predictions for one run add to the law's spread."""
    noise_dof: int | None = absent()
    """Degrees of freedom behind that noise estimate (None: given, assumed or unknown)."""
    flops_per_param_token: Num = absent()
    """L(N, D) forms: k in C = k·N·D under its parameter convention (the median over the runs)."""
    _draws: dict | None = PrivateAttr(None)
    _problems: list[tuple[str, str]] = PrivateAttr(default_factory=list)
    """Each warning with the data that would fix it (judged with the backtest by scaling.choose)."""

    @property
    def fitted(self) -> bool:
        return self.params is not None

    @property
    def draws(self) -> dict | None:
        """The bootstrap draws of E, A, B, alpha, beta (arrays); None when read back from JSON."""
        return self._draws


class Budget(Plain):
    """One IsoFLOP budget: its runs, and their loss-minimising size or why there is none."""

    flops: Num
    runs: int
    sizes: int | None = absent()
    """Distinct sizes (runs of one size are repeated seeds)."""
    flops_spread: Num
    """Largest over smallest compute among its runs, minus 1."""
    params: Column
    tokens: Column
    loss: Column
    reason: str | None = absent()
    add: str | None = absent()
    """Which sizes would give it an interior minimum: smaller or larger."""
    N_opt: Num = absent()
    D_opt: Num = absent()
    loss_opt: Num = absent()
    failed: Num = absent()
    """Share of bootstrap resamples in which it lost its interior minimum."""


class Noise(Plain):
    """The run-to-run noise (SD of log loss) intervals are drawn from, and where it came from."""

    sd: Num
    source: str
    dof: int | None = absent()


class IsoFLOP(Plain):
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
    noise: Noise | None = absent()
    excluded: list[str] | None = absent()
    """Budgets left out, each with what to add."""
    supported: bool | None = absent()
    """At least two budgets with an interior minimum and a bootstrap interval."""


class Allocation(Plain):
    """How to spend the target compute, from the supported L(N, D) fit with the lowest held-out
    error; or why no fit can say, and what data would fix it."""

    source: str | None = Field(None, alias="from", exclude_if=lambda v: v is None)
    """The fit it comes from (a key of `forms`)."""
    convention: str | None = absent()
    """The parameter convention N_opt is counted in."""
    target_flops: Num = absent()
    flops_per_param_token: Num = absent()
    a: Estimate | None = absent()
    b: Estimate | None = absent()
    N_opt: Estimate | None = absent()
    D_opt: Estimate | None = absent()
    tokens_per_param: Estimate | None = absent()
    loss_at_target: Estimate | None = absent()
    reason: str | None = absent()
    fix: list[str] | None = absent()


class Choice(Plain):
    """One row of the model-choice table: a fitted form under one parameter convention, its
    error on the held-out largest compute, and whether it may be used."""

    key: str
    """Its key in `forms`."""
    form: str
    convention: str | None
    label: str
    heldout_error: Num = None
    """Mean relative |error| on the held-out runs (the largest compute)."""
    supported: bool
    refusal: str | None = absent()


class Selection(Plain):
    """Model choice by extrapolation: every form (and, with `auto`, both parameter conventions)
    fitted without the largest compute; the supported one with the lowest held-out error is
    chosen for predictions."""

    holdout: float
    by: str = "flops"
    rows: list[Choice]
    chosen: str | None = None
    """Key of the chosen fit in `forms`; None when no fit is supported."""
    reason: str | None = absent()


class Repeated(Plain):
    """Runs that went over their training data more than `threshold` times: repeated tokens
    are worth less than fresh ones, and laws that count them as fresh are biased there."""

    threshold: float
    runs: int
    """Runs beyond the threshold."""
    known: int
    """Runs whose epochs are known."""
    max_epochs: Num = None
    message: str


class GroupFit(Plain):
    """One group's runs fitted alone, or why they were not."""

    runs: int
    reason: str | None = absent()
    forms: dict[str, FormFit] | None = absent()
    isoflop: IsoFLOP | None = absent()
    allocation: Allocation | None = absent()
    selection: Selection | None = absent()
    notes: list[str] | None = absent()


class Comparison(Plain):
    """Two groups compared on one quantity of one form: is the difference resolved?"""

    groups: list[str]
    form: str
    quantity: str
    difference: Estimate
    intervals_overlap: bool
    resolved: bool
    verdict: str


class Groups(Plain):
    by: str
    fits: dict[str, GroupFit]
    comparisons: list[Comparison]


class FitResult(Plain):
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
    selection: Selection | None = absent()
    repeated: Repeated | None = absent()
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
