"""Plotly figures for the report, built from the results table (polars) and the fit result.

Every string that came from a user (names, field values) is HTML-escaped before it reaches a
figure, because plotly renders a subset of HTML in titles, legends and hover text.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import plotly.graph_objects as go
import polars as pl

from workbench.scaling.repeats import EPOCH_LIMIT
from workbench.study.objectives import FITTABLE

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"]
AXES = {"flops": ("compute.6N+attn", "training compute C (FLOPs)"),
        "params": ("params.total", "parameters N"),
        "tokens": ("tokens", "training tokens D")}


def loss_label(loss: str) -> str:
    """`loss` (a results column) in words, escaped: what the scaling figures' y axes show."""
    return esc(_words(loss))


def _words(loss: str) -> str:
    return FITTABLE[loss].fit_words if loss in FITTABLE else loss


def esc(value: Any) -> str:
    return html.escape(str(value))


def _layout(fig: go.Figure, title: str, x: str, y: str, logx: bool = True, logy: bool = False) -> go.Figure:
    fig.update_layout(title=esc(title), template="plotly_white", height=420, margin=dict(l=60, r=20, t=50, b=50),
                      legend=dict(title=None))
    fig.update_xaxes(title=x, type="log" if logx else "linear")
    fig.update_yaxes(title=y, type="log" if logy else "linear")
    return fig


def groups(df: pl.DataFrame, group_col: str | None) -> list[tuple[str, pl.DataFrame]]:
    if not group_col or group_col not in df.columns:
        return [("all runs", df)]
    keys = sorted({str(v) for v in df[group_col].to_list()})
    return [(k, df.filter(pl.col(group_col).cast(pl.String) == k)) for k in keys]


def scaling_figure(done: pl.DataFrame, axis: str, group_col: str | None, fit,
                   loss: str = "val_bpb") -> go.Figure:
    """The `loss` column (the one the fit fitted) against C, N or D on log axes (`fit` is the
    report's FitView, report/scaling.py, or None), one colour per group, with the fitted law and its band where the fit provides one for this axis; runs that
    repeat their data beyond EPOCH_LIMIT epochs drawn open. `done` holds only rows with a usable
    `loss` (finite, positive: it is drawn on a log axis)."""
    column, label = AXES[axis]
    fig = go.Figure()
    for i, (name, part) in enumerate(groups(done, group_col)):
        color = PALETTE[i % len(PALETTE)]
        repeated = pl.col("epochs").fill_null(0) > EPOCH_LIMIT if "epochs" in part.columns else pl.lit(False)
        for rows, symbol, suffix in ((part.filter(~repeated), "circle", ""),
                                     (part.filter(repeated), "circle-open", f": beyond {EPOCH_LIMIT:g} epochs")):
            if rows.height or not suffix:
                fig.add_trace(go.Scatter(
                    x=rows[column].to_list(), y=rows[loss].to_list(), mode="markers", name=esc(name) + suffix,
                    marker=dict(color=color, size=8, opacity=0.8, symbol=symbol),
                    text=[f"trial {t}" for t in rows["trial"].to_list()],
                    hovertemplate="%{text}<br>%{x:.3g}, %{y:.4f}"))
        for curve in fit.curves.get(axis, []) if fit else []:
            if curve.get("group", "all runs") != name:
                continue
            curve_name = f"{esc(name)}: {esc(curve.get('label', 'fit'))}"
            dash = "solid" if "N, D" not in curve.get("label", "") else "dash"
            fig.add_trace(go.Scatter(x=curve["x"], y=curve["y"], mode="lines", name=curve_name,
                                     line=dict(color=color, dash=dash)))
            if curve.get("lo") and curve.get("hi"):
                fig.add_trace(go.Scatter(x=curve["x"] + curve["x"][::-1], y=curve["hi"] + curve["lo"][::-1],
                                         fill="toself", fillcolor=color, opacity=0.12, line=dict(width=0),
                                         name=f"{curve_name}, 95% band", hoverinfo="skip"))
        for point in fit.backtest_points.get(axis, []) if fit else []:
            if point.get("group", "all runs") == name:
                fig.add_trace(go.Scatter(x=[point["x"]], y=[point["y"]], mode="markers", showlegend=False,
                                         marker=dict(symbol="x", size=11, color=color),
                                         hovertext="held out (backtest)"))
    fig = _layout(fig, f"{_words(loss)} vs {label}", label, loss_label(loss), logy=True)
    # Keep the observed range in view: a wide extrapolation band must not flatten the data.
    y = np.asarray(done[loss].to_list(), dtype=float)
    if len(y):
        fig.update_yaxes(range=[np.log10(y.min() / 1.5), np.log10(y.max() * 1.3)])
    return fig


def isoflop_figure(fit, loss: str = "val_bpb") -> go.Figure | None:
    """One curve per compute budget: the fitted loss (`loss`) against N, with its local minimum
    (a star), or in the legend why it has none."""
    iso = fit.isoflop if fit else None
    budgets = [b for b in (iso.budgets if iso else None) or [] if b.params]
    if not budgets:
        return None
    fig = go.Figure()
    for i, b in enumerate(budgets):
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=b.params, y=b.loss, mode="markers+lines",
                                 name=f"C = {b.flops:.2g}", line=dict(color=color)))
        if b.N_opt:
            fig.add_trace(go.Scatter(x=[b.N_opt], y=[b.loss_opt], mode="markers", showlegend=False,
                                     marker=dict(symbol="star", size=14, color=color)))
        elif b.reason:
            fig.data[-1].name += f" ({esc(b.reason)})"
    return _layout(fig, "IsoFLOP curves (stars: minima of local parabolas in log N)", "parameters N",
                   loss_label(loss))


def frontier_figure(done: pl.DataFrame, loss: str = "val_bpb") -> go.Figure:
    """Runs and the empirical compute-optimal frontier (lowest `loss` reached at or below each C);
    `done` holds only rows with a usable `loss`."""
    d = done.sort("compute.6N+attn")
    c, y = d["compute.6N+attn"].to_numpy(), d[loss].to_numpy()
    best = np.minimum.accumulate(y)
    fig = go.Figure([
        go.Scatter(x=c.tolist(), y=y.tolist(), mode="markers", name="runs", marker=dict(color="#999")),
        go.Scatter(x=c.tolist(), y=best.tolist(), mode="lines", line_shape="hv", name="frontier",
                   line=dict(color="#d62728"))])
    return _layout(fig, "compute-optimal frontier", "training compute C (FLOPs)", loss_label(loss), logy=True)


def curves_figure(curves: list[tuple[str, list[dict]]], x: str = "tokens",
                  title: str = "evaluation bits per byte during training") -> go.Figure:
    """One line of val bpb per named curve (a list of EvalPoint dicts) against `x` (tokens or step)."""
    fig = go.Figure()
    for i, (name, curve) in enumerate(curves):
        fig.add_trace(go.Scatter(x=[p[x] for p in curve], y=[p["val_bpb"] for p in curve],
                                 mode="lines+markers", name=esc(name), line=dict(color=PALETTE[i % len(PALETTE)])))
    return _layout(fig, title, x, "val bits per byte", logx=x == "tokens")


def _hover(part: pl.DataFrame, fields: list[str]) -> list[str]:
    """'trial 3<br>model.width=64' per row: the trial and its searched fields, escaped."""
    cols = [(f.removeprefix("spec."), part[f].to_list()) for f in fields if f in part.columns]
    return ["<br>".join([f"trial {t}"] + [f"{esc(name)}={esc(values[i])}" for name, values in cols])
            for i, t in enumerate(part["trial"].to_list())]


def int8_figure(suite: pl.DataFrame, group_col: str | None) -> go.Figure:
    """bpb with int8 weights against full-precision bpb, one colour per group, with y = x: the
    higher a point sits above the line, the worse that architecture takes quantization."""
    fig = go.Figure()
    for i, (name, part) in enumerate(groups(suite, group_col)):
        fig.add_trace(go.Scatter(
            x=part["suite.metrics.bpb"].to_list(), y=part["suite.int8_bpb"].to_list(), mode="markers",
            name=esc(name), marker=dict(color=PALETTE[i % len(PALETTE)], size=8, opacity=0.8),
            text=_hover(part, []), hovertemplate="%{text}<br>bpb %{x:.4f}, int8 %{y:.4f}<extra></extra>"))
    values = [v for c in ("suite.metrics.bpb", "suite.int8_bpb") for v in suite[c].drop_nulls().to_list()]
    if values:
        lo, hi = min(values), max(values)
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x (no penalty)",
                                 line=dict(color="#999", dash="dash"), hoverinfo="skip"))
    return _layout(fig, "int8 weights vs full precision (suite corpus)", "full-precision bits per byte",
                   "int8 bits per byte", logx=False)


def finetune_figure(ft: pl.DataFrame, group_col: str | None, fields: list[str]) -> go.Figure:
    """Per trial, what fine-tuning bought (gain, up is better) against what it cost on the
    pretraining corpus (forgetting, left is better), one colour per group."""
    fig = go.Figure()
    for i, (name, part) in enumerate(groups(ft, group_col)):
        fig.add_trace(go.Scatter(
            x=part["forgetting_bpb"].to_list(), y=part["finetune_gain_bpb"].to_list(), mode="markers",
            name=esc(name), marker=dict(color=PALETTE[i % len(PALETTE)], size=9, opacity=0.8),
            text=_hover(part, fields),
            hovertemplate="%{text}<br>forgetting %{x:+.4f}, gain %{y:+.4f}<extra></extra>"))
    return _layout(fig, "fine-tuning gain vs forgetting (bits per byte)",
                   "forgetting: pretraining-corpus bpb after − before", "gain: fine-tuning-corpus bpb before − after",
                   logx=False)


def search_figures(ostudy) -> list[tuple[str, go.Figure]]:
    """Optuna's own views of the search, where the study has what each needs."""
    import optuna.visualization as vis
    from optuna.trial import TrialState
    complete = [t for t in ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.params]
    out: list[tuple[str, go.Figure]] = []
    multi = len(ostudy.directions) > 1
    target = {} if not multi else {"target": lambda t: t.values[0], "target_name": "objective 0"}
    candidates = [("history", lambda: history_figure(ostudy))]
    if len(complete) >= 2:
        # optuna's plot_param_importances rebuilds hover text trial by trial (seconds for 1000
        # trials); the importances themselves are quick, so draw them here.
        candidates += [("importances", lambda: importance_figure(ostudy, **target)),
                       ("parallel coordinates", lambda: vis.plot_parallel_coordinate(ostudy, **target)),
                       ("slices", lambda: vis.plot_slice(ostudy, **target))]
    if multi:
        candidates.append(("Pareto front", lambda: vis.plot_pareto_front(ostudy)))
    for name, make in candidates:
        try:
            fig = make()
        except Exception as e:  # e.g. importances need at least two distinct parameter values
            out.append((name, _note_figure(f"{name}: not available ({type(e).__name__}: {e})")))
            continue
        fig.update_layout(template="plotly_white", height=420)
        out.append((name, fig))
    return out


def history_figure(ostudy) -> go.Figure:
    """The search's history: each completed trial's (first) objective in trial order, and the
    best so far. Drawn here because Optuna's view indexes values by trial number, which breaks
    on a study seen with only some of its trials (the searched ones)."""
    from optuna.study import StudyDirection
    from optuna.trial import TrialState
    done = sorted(ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    sign = 1 if ostudy.directions[0] == StudyDirection.MINIMIZE else -1
    values = [t.values[0] for t in done]
    best = [sign * v for v in np.minimum.accumulate([sign * v for v in values])] if values else []
    fig = go.Figure([go.Scatter(x=[t.number for t in done], y=values, mode="markers", name="objective"),
                     go.Scatter(x=[t.number for t in done], y=best, mode="lines", name="best so far",
                                line=dict(shape="hv", color=PALETTE[1]))])
    return _layout(fig, "optimization history (searched trials)", "trial", "objective", logx=False)


def importance_figure(ostudy, target=None, target_name: str = "objective") -> go.Figure:
    import optuna
    values = optuna.importance.get_param_importances(ostudy, target=target)
    names = list(values)[::-1]
    fig = go.Figure(go.Bar(x=[values[n] for n in names], y=[esc(n) for n in names], orientation="h",
                           marker_color="#1f77b4"))
    fig.update_layout(title=f"parameter importances for {esc(target_name)} (PED-ANOVA)")
    fig.update_xaxes(title="importance")
    return fig


def _note_figure(text: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=esc(text), showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(template="plotly_white", height=160, xaxis_visible=False, yaxis_visible=False)
    return fig


def tuning_figure(ladder: pl.DataFrame, field: str, loss: str) -> go.Figure:
    """A tuned ladder: the best value of `field` (a column, e.g. spec.train.lr) at each point
    against the point's size, one line per compute budget, so a drift of the optimum with size
    shows (an untuned ladder would hide it in its exponents)."""
    fig = go.Figure()
    best = ladder.sort(loss).unique("point", keep="first", maintain_order=True)
    budget = pl.col("compute.6N+attn").log10().round(1)
    for i, (_, part) in enumerate(best.with_columns(budget.alias("_c")).sort("_c").group_by("_c", maintain_order=True)):
        part = part.sort("params.total")
        fig.add_trace(go.Scatter(x=part["params.total"].to_list(), y=part[field].to_list(), mode="lines+markers",
                                 name=f"C ≈ {part['compute.6N+attn'].median():.2g}",
                                 line=dict(color=PALETTE[i % len(PALETTE)]),
                                 text=[f"trial {t}: {esc(_words(loss))} {v:.4f}"
                                       for t, v in zip(part["trial"], part[loss])]))
    name = esc(field.removeprefix("spec."))
    return _layout(fig, f"best {name} of each ladder point against size", "parameters N", name, logy=True)


def validation_figure(checks: list[dict]) -> go.Figure:
    """Each validation run: its predicted loss with the 95% interval for one run, made before it
    trained, and the loss it then reached."""
    fig = go.Figure()
    done = [v for v in checks if v.get("predicted") is not None]
    x = [f"trial {v['number']}: C = {v['budget']:.2g}, N = {v['params']:.3g}" for v in done]
    fig.add_trace(go.Scatter(x=x, y=[v["predicted"] for v in done], mode="markers", name="predicted (95%, one run)",
                             marker=dict(symbol="diamond-open", size=12, color=PALETTE[0]),
                             error_y=dict(type="data", symmetric=False,
                                          array=[v["hi"] - v["predicted"] for v in done],
                                          arrayminus=[v["predicted"] - v["lo"] for v in done])))
    seen = [v for v in done if v.get("observed") is not None]
    fig.add_trace(go.Scatter(x=[x[done.index(v)] for v in seen], y=[v["observed"] for v in seen], mode="markers",
                             name="observed", marker=dict(size=10, color=PALETTE[1])))
    fig = _layout(fig, "validation beyond the ladder: predicted against observed", "validation run",
                  loss_label(done[0]["loss"]) if done else "loss", logx=False)
    fig.update_xaxes(type="category")
    fig.update_layout(height=340)
    return fig


def transfer_figure(done: pl.DataFrame, loss: str) -> go.Figure:
    """Learning rate against width: the loss of every run by its learning rate, one line per
    width, each width's best marked. Under a width-transfer parametrisation (mup) the best rate
    should stay put as the width grows; under the standard one it usually falls."""
    fig = go.Figure()
    for i, (width, part) in enumerate(done.sort("spec.model.width").group_by("spec.model.width", maintain_order=True)):
        best = part.group_by("spec.train.lr").agg(pl.col(loss).min()).sort("spec.train.lr")
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=best["spec.train.lr"].to_list(), y=best[loss].to_list(), mode="lines+markers",
                                 name=f"width {width[0]}", line=dict(color=color)))
        top = best.sort(loss).row(0, named=True)
        fig.add_trace(go.Scatter(x=[top["spec.train.lr"]], y=[top[loss]], mode="markers", showlegend=False,
                                 marker=dict(symbol="star", size=14, color=color),
                                 hovertext=f"best at width {width[0]}: lr {top['spec.train.lr']:.3g}"))
    return _layout(fig, "learning rate against width (stars: each width's best)", "train.lr",
                   loss_label(loss), logy=False)
