"""The IsoFLOP analysis (Hoffmann et al. approach 2), on arrays: per compute budget the size at
which loss is lowest, estimated locally, then how that size and its tokens grow with compute.

Each budget's optimum comes from the sizes nearest its observed minimum: a least-squares
parabola in log N through the best size and its nearest neighbours (five sizes at most). A global
parabola through far-off sizes is biased when the valley is asymmetric, as it is whenever the
parameter and data exponents differ; a local one is not, to the order that matters here. A
budget whose best size is its smallest or largest has no interior minimum and is left out, with
the sizes it lacks named.

Intervals come from a parametric bootstrap of run-to-run noise: each resample multiplies every
loss by exp(sigma·z). The fit chooses sigma (scaling.fit: from repeated seeds where the study has
them, else estimated, else assumed and stated); `repeat_noise` and `scatter_noise` here estimate
it. Vectorised over resamples throughout."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WINDOW = 5                 # sizes in a budget's local parabola: the best and its nearest neighbours
ASSUMED_NOISE = 0.01       # relative run-to-run noise when the runs cannot tell it
MAX_FAILED = 0.10          # resamples that may lose a budget's minimum before the design is blamed

REFUSALS = {1: "fewer than 3 distinct sizes: a minimum needs 3",
            2: "the smallest size has the lowest loss: no interior minimum; add smaller sizes",
            3: "the largest size has the lowest loss: no interior minimum; add larger sizes",
            4: "the losses around the best size are not convex: no minimum near it; "
               "add sizes near the best one or repeat seeds"}


def budgets(log_c: np.ndarray, tol: float = np.log(1.1)) -> np.ndarray:
    """Label runs by compute budget: sorted log C split wherever consecutive runs differ by more
    than `tol` (10%), so a ladder's nominal budgets group however C was rounded."""
    order = np.argsort(log_c, kind="stable")
    labels = np.empty(len(log_c), int)
    labels[order] = np.concatenate([[0], np.cumsum(np.diff(np.asarray(log_c)[order]) > tol)])[:len(order)]
    return labels


@dataclass
class Valley:
    """One budget's distinct sizes (sorted), with the mean loss, mean log D and number of runs
    (seeds) at each."""

    u: np.ndarray          # log N of each distinct size
    loss: np.ndarray
    log_d: np.ndarray
    count: np.ndarray


def valley(log_n: np.ndarray, log_d: np.ndarray, loss: np.ndarray, tol: float = np.log(1.02)) -> Valley:
    """One budget's runs as sizes: runs within 2% in N are one size (repeated seeds)."""
    size = budgets(log_n, tol)                 # labels 0, 1, ... in order of N
    count = np.bincount(size)
    mean = lambda v: np.bincount(size, weights=v) / count
    return Valley(mean(log_n), np.exp(mean(np.log(loss))), mean(log_d), count)


def _windows(u: np.ndarray, k: int) -> np.ndarray:
    """For each size i, the indices (sorted) of the k sizes nearest to it in log N."""
    k = min(k, len(u))
    return np.sort(np.argsort(np.abs(u[None] - u[:, None]), axis=1, kind="stable")[:, :k], axis=1)


def local_minimum(u: np.ndarray, loss: np.ndarray, k: int = WINDOW) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The minimum of loss in log N near the lowest observed loss, for each row of `loss`
    (R, m) over the sorted sizes `u` (m,): a least-squares parabola through the k sizes nearest
    the best one. Returns log N_opt, the parabola's loss there, and a code per row (0 ok, else a
    key of REFUSALS)."""
    loss = np.atleast_2d(loss)
    R, m = loss.shape
    if m < 3:
        return np.full(R, np.nan), np.full(R, np.nan), np.ones(R, int)
    best = np.argmin(loss, axis=1)
    win = _windows(u, k)[best]                                           # (R, k)
    x = u[win] - u[best][:, None]
    V = np.stack([x * x, x, np.ones_like(x)], axis=-1)                   # (R, k, 3)
    y = np.take_along_axis(loss, win, axis=1)
    c2, c1, c0 = np.moveaxis(np.linalg.solve(np.einsum("rki,rkj->rij", V, V),
                                             np.einsum("rki,rk->ri", V, y)[..., None])[..., 0], -1, 0)
    with np.errstate(all="ignore"):
        vertex = -c1 / (2 * c2)
        at = c0 - c1 * c1 / (4 * c2)
    outside = (vertex < x.min(1)) | (vertex > x.max(1)) | ~(c2 > 0)
    code = np.where(best == 0, 2, np.where(best == m - 1, 3, np.where(outside, 4, 0)))
    return vertex + u[best], at, code


def repeat_cells(log_n: np.ndarray, log_d: np.ndarray, tol: float = np.log(1.02)) -> np.ndarray:
    """Cells of repeated seeds: runs of one N and one D, within `tol` (2%). Runs are grouped by
    the gaps between them (`budgets`), and a group wider than `tol` is no set of repeats (a
    table of many distinct sizes chains into one group): its runs get cell -1, none."""
    cells = np.full(len(log_n), -1)
    if not len(cells):
        return cells
    n, d = budgets(log_n, tol), budgets(log_d, tol)
    ids = np.unique(np.c_[n, d], axis=0, return_inverse=True)[1].ravel()
    tight = np.ones(ids.max() + 1, bool)
    for v in (np.asarray(log_n, float), np.asarray(log_d, float)):
        lo, hi = np.full(len(tight), np.inf), np.full(len(tight), -np.inf)
        np.minimum.at(lo, ids, v)
        np.maximum.at(hi, ids, v)
        tight &= hi - lo <= tol
    return np.where(tight[ids], ids, -1)


def repeat_noise(cells: np.ndarray, log_loss: np.ndarray) -> tuple[float, int] | None:
    """Run-to-run noise (SD of log loss) pooled over cells of repeated seeds (runs of one size
    and one budget; cell -1 is none), with its degrees of freedom; None when no cell has two runs."""
    keep = np.asarray(cells) >= 0
    if not keep.any():
        return None
    ids = np.unique(np.asarray(cells)[keep], return_inverse=True)[1].ravel()
    v = np.asarray(log_loss, float)[keep]
    count = np.bincount(ids)
    mean = np.bincount(ids, weights=v) / count
    ss, dof = float(((v - mean[ids]) ** 2).sum()), int((count - 1).sum())
    return (float(np.sqrt(ss / dof)), dof) if dof else None


def scatter_noise(labels: np.ndarray, log_n: np.ndarray, log_d: np.ndarray,
                  loss: np.ndarray) -> tuple[float, int] | None:
    """Noise estimated from the scatter of each budget's log losses about quadratics in log N
    through every 4 consecutive sizes (one degree of freedom each); includes any misfit of the
    quadratic, so it errs high. None when no budget has 4 sizes."""
    rss = []
    for label in np.unique(labels):
        m = labels == label
        v = valley(log_n[m], log_d[m], loss[m])
        for i in range(len(v.u) - 3):
            x, y = v.u[i:i + 4], np.log(v.loss[i:i + 4])
            rss.append(float(np.sum((np.polyval(np.polyfit(x - x.mean(), y, 2), x - x.mean()) - y) ** 2)))
    return (float(np.sqrt(np.mean(rss))), len(rss)) if rss else None


def _slopes(x: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Least-squares slopes of each row of Y (R, k) on x (k,)."""
    dx = x - x.mean()
    return (Y - Y.mean(-1, keepdims=True)) @ dx / (dx @ dx)


def _log_d_at(v: Valley, log_n: np.ndarray) -> np.ndarray:
    """log D along the budget at log N: exactly linear when C = 6ND, nearly so otherwise."""
    du = v.u - v.u.mean()
    slope = (du @ (v.log_d - v.log_d.mean())) / (du @ du)
    return v.log_d.mean() + slope * (log_n - v.u.mean())


def isoflop(labels: np.ndarray, log_c: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, loss: np.ndarray,
            resamples: int = 1000, seed: int = 0, target_log_c: float | None = None,
            noise: float = ASSUMED_NOISE) -> dict:
    """Per budget (runs sharing a label) the local minimum, then N_opt ∝ C^a and D_opt ∝ C^b by
    least squares in log space over the budgets with an interior minimum, extrapolated to
    `target_log_c` when given. The bootstrap multiplies each size's loss by exp(noise·z/√seeds)
    (`noise`: the SD of log loss of one run). A resample in which any of those budgets loses its
    minimum is failed; each budget's share of failures is kept. Point estimates are floats;
    bootstrap draws sit in `draws`."""
    rows, accepted = [], []
    for label in np.unique(labels):
        m = labels == label
        v = valley(log_n[m], log_d[m], loss[m])
        entry = {"flops": float(np.exp(log_c[m].mean())), "runs": int(m.sum()), "sizes": len(v.u),
                 "flops_spread": float(np.exp(log_c[m].max() - log_c[m].min()) - 1),
                 "params": np.exp(log_n[m]).tolist(), "tokens": np.exp(log_d[m]).tolist(), "loss": loss[m].tolist()}
        ln, at, code = local_minimum(v.u, v.loss)
        if code[0]:
            entry["reason"] = REFUSALS[int(code[0])]
            entry["add"] = {2: "smaller", 3: "larger"}.get(int(code[0]))
        else:
            entry.update(N_opt=float(np.exp(ln[0])), D_opt=float(np.exp(_log_d_at(v, ln[0]))), loss_opt=float(at[0]))
            accepted.append((len(rows), v, float(np.log(entry["flops"]))))
        rows.append(entry)
    out: dict = {"budgets": rows}
    if len(accepted) < 2:
        out["reason"] = f"{len(accepted)} budget(s) with an interior minimum: the exponents need at least 2"
        return out
    lc = np.array([c for _, _, c in accepted])

    def lines(ln: np.ndarray) -> dict[str, np.ndarray]:
        ld = np.stack([_log_d_at(v, ln[:, j]) for j, (_, v, _) in enumerate(accepted)], axis=1)
        got = {"a": _slopes(lc, ln), "b": _slopes(lc, ld)}
        if target_log_c is not None:     # the fitted lines, extrapolated to the target
            got["N_opt"] = np.exp(ln.mean(-1) + got["a"] * (target_log_c - lc.mean()))
            got["D_opt"] = np.exp(ld.mean(-1) + got["b"] * (target_log_c - lc.mean()))
        return got

    point = lines(np.array([[np.log(rows[i]["N_opt"]) for i, _, _ in accepted]]))
    out.update({k: float(v[0]) for k, v in point.items()})
    if resamples <= 0:
        return out
    rng = np.random.default_rng(seed)
    ln_all, ok = [], np.ones(resamples, bool)
    for i, v, _ in accepted:
        y = v.loss * np.exp(rng.normal(0.0, 1.0, (resamples, len(v.u))) * noise / np.sqrt(v.count))
        ln, _, code = local_minimum(v.u, y)
        rows[i]["failed"] = float(np.mean(code != 0))
        ln_all.append(ln)
        ok &= code == 0
    out["draws"] = lines(np.array(ln_all).T[ok])
    out["resamples"], out["failed"] = resamples, int((~ok).sum())
    return out
