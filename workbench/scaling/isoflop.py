"""The IsoFLOP analysis (Hoffmann et al. approach 2): per compute budget, the size at which loss
is lowest, then how that size and its tokens grow with compute."""

from __future__ import annotations

import numpy as np


def budgets(log_c: np.ndarray, tol: float = np.log(1.1)) -> np.ndarray:
    """Label runs by compute budget: sorted log C split wherever consecutive runs differ by more
    than `tol` (10%), so a ladder's nominal budgets group however C was rounded."""
    order = np.argsort(log_c)
    labels = np.empty(len(log_c), int)
    label = 0
    for i, j in enumerate(order):
        if i and log_c[j] - log_c[order[i - 1]] > tol:
            label += 1
        labels[j] = label
    return labels


def _parabola_min(log_n: np.ndarray, log_d: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertex of loss ~ parabola in log N for one budget, vectorised over resamples: rows of
    the (R, m) arrays are resamples of the budget's m runs. Returns log N_opt, log D_opt and a
    reason code per row (0 ok, 1 fewer than 3 sizes, 2 not convex, 3 below the smallest size,
    4 beyond the largest)."""
    center = log_n.mean()
    u = log_n - center
    V = np.stack([u * u, u, np.ones_like(u)], axis=-1)                      # (R, m, 3)
    sizes = 1 + (np.diff(np.sort(u, axis=-1), axis=-1) > 1e-9).sum(-1)
    code = np.where(sizes < 3, 1, 0)
    gram = np.einsum("rmi,rmj->rij", V, V) + np.where(code == 1, 1.0, 0.0)[:, None, None] * np.eye(3)
    c2, c1, _ = np.moveaxis(np.linalg.solve(gram, np.einsum("rmi,rm->ri", V, loss)[..., None])[..., 0], -1, 0)
    with np.errstate(all="ignore"):
        vertex = -c1 / (2 * c2)
    code = np.where(code == 0, np.where(c2 <= 0, 2, np.where(vertex <= u.min(-1), 3,
                                        np.where(vertex >= u.max(-1), 4, 0))), code)
    # D along this budget: exactly linear in log N when C = 6ND, nearly so for other conventions.
    du, dd = u - u.mean(-1, keepdims=True), log_d - log_d.mean(-1, keepdims=True)
    with np.errstate(all="ignore"):
        slope = (du * dd).sum(-1) / (du * du).sum(-1)
    log_d_opt = log_d.mean(-1) + slope * (vertex - u.mean(-1))
    return vertex + center, log_d_opt, code


REFUSALS = {1: "fewer than 3 distinct sizes: a parabola needs 3",
            2: "loss is not convex in log N: no minimum",
            3: "minimum lies below the smallest size tried: not interior",
            4: "minimum lies beyond the largest size tried: not interior"}


def _slopes(x: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Least-squares slopes of each row of Y (R, k) on x (k,)."""
    dx = x - x.mean()
    return (Y - Y.mean(-1, keepdims=True)) @ dx / (dx @ dx)


def isoflop(labels: np.ndarray, log_c: np.ndarray, log_n: np.ndarray, log_d: np.ndarray,
            loss: np.ndarray, resamples: int = 1000, seed: int = 0, target_log_c: float | None = None) -> dict:
    """IsoFLOP analysis (Hoffmann et al. approach 2): per budget a parabola of loss in log N,
    its vertex N_opt (refused unless interior), then N_opt ~ C^a and D_opt ~ C^b by least squares
    in log space, extrapolated to `target_log_c` when given. The bootstrap resamples runs within
    each budget; a resample in which any accepted budget loses its interior minimum is counted
    as failed and skipped. Point estimates are plain floats; bootstrap draws sit in `draws`."""
    rows, accepted = [], []
    for label in np.unique(labels):
        m = labels == label
        entry = {"flops": float(np.exp(log_c[m].mean())), "runs": int(m.sum()),
                 "flops_spread": float(np.exp(log_c[m].max() - log_c[m].min()) - 1),
                 "params": np.exp(log_n[m]).tolist(), "tokens": np.exp(log_d[m]).tolist(), "loss": loss[m].tolist()}
        ln, ld, code = _parabola_min(log_n[m][None], log_d[m][None], loss[m][None])
        if code[0]:
            entry["reason"] = REFUSALS[int(code[0])]
        else:
            entry["N_opt"], entry["D_opt"] = float(np.exp(ln[0])), float(np.exp(ld[0]))
            entry["loss_opt"] = float(np.polyval(np.polyfit(log_n[m], loss[m], 2), ln[0]))
            accepted.append((np.flatnonzero(m), ln[0], ld[0]))
        rows.append(entry)
    out: dict = {"budgets": rows}
    if len(accepted) < 2:
        out["reason"] = f"{len(accepted)} budget(s) with an interior minimum: the exponents need at least 2"
        return out
    lc = np.array([log_c[i].mean() for i, _, _ in accepted])

    def lines(ln: np.ndarray, ld: np.ndarray) -> dict[str, np.ndarray]:
        got = {"a": _slopes(lc, ln), "b": _slopes(lc, ld)}
        if target_log_c is not None:     # the fitted lines, extrapolated to the target
            got["N_opt"] = np.exp(ln.mean(-1) + got["a"] * (target_log_c - lc.mean()))
            got["D_opt"] = np.exp(ld.mean(-1) + got["b"] * (target_log_c - lc.mean()))
        return got

    point = lines(np.array([[v for _, v, _ in accepted]]), np.array([[v for _, _, v in accepted]]))
    out.update({k: float(v[0]) for k, v in point.items()})
    if resamples <= 0:
        return out
    rng = np.random.default_rng(seed)
    ln_all, ld_all, ok = [], [], np.ones(resamples, bool)
    for i, _, _ in accepted:
        pick = i[rng.integers(0, len(i), size=(resamples, len(i)))]
        ln, ld, code = _parabola_min(log_n[pick], log_d[pick], loss[pick])
        ln_all.append(ln), ld_all.append(ld)
        ok &= code == 0
    out["draws"] = lines(np.array(ln_all).T[ok], np.array(ld_all).T[ok])
    out["resamples"], out["failed"] = resamples, int((~ok).sum())
    return out
