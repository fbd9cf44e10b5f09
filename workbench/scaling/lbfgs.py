"""Many independent L-BFGS minimisations advanced together on (G, ...) numpy arrays: the
bootstrap's thousand refits cost a few hundred numpy passes instead of a thousand scipy calls."""

from __future__ import annotations

import numpy as np


def batched_lbfgs(problem, theta0: np.ndarray, Xc: np.ndarray, y: np.ndarray,
                  memory: int = 10, max_iter: int = 1000, ftol: float = 1e-13,
                  gtol: float = 1e-10, window: int = 25, wtol: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """Minimise many independent objectives at once: row g of theta0 (G, P) starts the fit to
    its own data Xc[g] (n, K), y[g] (n,). The same L-BFGS update and projected backtracking
    line search as a one-at-a-time fit, written on (G, ...) arrays so that a thousand bootstrap
    refits cost a few hundred numpy passes instead of a thousand scipy calls. Each row stops on
    its own: relative decrease below ftol twice running, projected gradient below gtol, a line
    search that can no longer decrease it, or a crawl (less than wtol relative decrease over
    `window` iterations: a flat valley, typically E drifting to 0, whose far end the data cannot
    tell from here). Finished rows leave the working arrays.
    `problem` is a powerlaw.Problem: `objective(theta, (Xc, y))` gives values and gradients,
    `bounds` the box. Returns theta (G, P) and a mask of the rows that stopped before max_iter."""
    G, P = theta0.shape
    lo, hi = (np.array(b, float) for b in zip(*problem.bounds))
    out, converged = np.clip(theta0, lo, hi), np.zeros(G, bool)
    rows = np.arange(G)                                   # which original row each working row is
    th, Xw, yw = out.copy(), Xc, y
    f, g = problem.objective(th, (Xw, yw))
    scale = 1.0 / np.maximum(f, 1e-300)                   # each row's objective scaled to order one
    f, g = f * scale, g * scale[:, None]
    S, Y, rho = np.zeros((G, memory, P)), np.zeros((G, memory, P)), np.zeros((G, memory))
    quiet = np.zeros(G, int)
    history = [f]                                         # f of the last `window` iterations
    dot = lambda u, v: np.einsum("gp,gp->g", u, v)
    for it in range(max_iter):
        # Coordinates pinned at a bound with the gradient pushing outwards stay put.
        free = ~(((th <= lo) & (g > 0)) | ((th >= hi) & (g < 0)))
        gf = g * free
        # Two-loop recursion over the stored (s, y) pairs, newest first; empty slots have rho 0.
        order = [(it - 1 - j) % memory for j in range(memory)]
        q, alph = gf.copy(), np.zeros((len(th), memory))
        for i in order:
            alph[:, i] = rho[:, i] * dot(S[:, i], q)
            q -= alph[:, i, None] * Y[:, i]
        last = order[0]
        yy = dot(Y[:, last], Y[:, last])
        gamma = np.where(rho[:, last] * yy > 0, 1.0 / np.maximum(rho[:, last] * yy, 1e-300),
                         1.0 / np.maximum(np.abs(gf).sum(-1), 1.0))
        r = gamma[:, None] * q
        for i in reversed(order):
            r += S[:, i] * (alph[:, i] - rho[:, i] * dot(Y[:, i], r))[:, None]
        d = -r * free
        bad = dot(gf, d) >= 0                 # not a descent direction: restart on the gradient
        d[bad] = -gf[bad] / np.maximum(np.abs(gf[bad]).sum(-1, keepdims=True), 1.0)
        rho[bad] = 0.0
        # Projected backtracking (Armijo) line search, each row with its own step.
        step = np.ones(len(th))
        new_th, new_f, new_g = th.copy(), f.copy(), g.copy()
        pending = np.arange(len(th))
        for _ in range(60):
            cand = np.clip(th[pending] + step[pending, None] * d[pending], lo, hi)
            fc, gc = problem.objective(cand, (Xw[pending], yw[pending]))
            fc, gc = fc * scale[pending], gc * scale[pending, None]
            ok = np.isfinite(fc) & (fc <= f[pending] + 1e-4 * dot(g[pending], cand - th[pending]))
            new_th[pending[ok]], new_f[pending[ok]], new_g[pending[ok]] = cand[ok], fc[ok], gc[ok]
            pending = pending[~ok]
            if len(pending) == 0:
                break
            step[pending] *= 0.5
        stalled = np.zeros(len(th), bool)     # the line search met the limits of floating point
        stalled[pending] = True
        # Rows that took the full step and still descend steeply (the Wolfe curvature condition
        # fails) are in a long flat valley, e.g. E drifting towards 0: stretch their step while
        # that pays, or they would crawl there for thousands of iterations.
        slope0 = dot(g, d)
        grow = np.flatnonzero((step == 1.0) & ~stalled & (dot(new_g, d) < 0.9 * slope0))
        for _ in range(30):
            if len(grow) == 0:
                break
            step[grow] *= 4.0
            cand = np.clip(th[grow] + step[grow, None] * d[grow], lo, hi)
            fc, gc = problem.objective(cand, (Xw[grow], yw[grow]))
            fc, gc = fc * scale[grow], gc * scale[grow, None]
            ok = np.isfinite(fc) & (fc < new_f[grow]) & (np.abs(cand - new_th[grow]).max(-1) > 0)
            better = grow[ok]
            new_th[better], new_f[better], new_g[better] = cand[ok], fc[ok], gc[ok]
            grow = better[dot(gc[ok], d[better]) < 0.9 * slope0[better]]
        s, yv = new_th - th, new_g - g
        sy = dot(s, yv)
        keep = sy > 1e-12 * np.sqrt(dot(s, s) * dot(yv, yv))
        slot = it % memory
        S[:, slot], Y[:, slot] = s * keep[:, None], yv * keep[:, None]
        rho[:, slot] = np.where(keep, 1.0 / np.where(keep, sy, 1.0), 0.0)
        decrease = (f - new_f) / np.maximum(np.maximum(np.abs(f), np.abs(new_f)), 1.0)
        quiet = np.where(decrease <= ftol, quiet + 1, 0)
        pg = np.abs(np.clip(new_th - new_g, lo, hi) - new_th).max(-1)      # projected gradient
        th, f, g = new_th, new_f, new_g
        history = (history + [f])[-window - 1:]
        crawl = (history[0] - f) / np.maximum(np.abs(f), 1e-300) <= wtol if len(history) > window else False
        done = stalled | (quiet >= 2) | (pg <= gtol) | crawl
        if done.any():
            out[rows[done]], converged[rows[done]] = th[done], True
            keep_rows = ~done
            history = [h[keep_rows] for h in history]
            rows, th, f, g, S, Y, rho, quiet, scale, Xw, yw = (
                a[keep_rows] for a in (rows, th, f, g, S, Y, rho, quiet, scale, Xw, yw))
            if len(rows) == 0:
                break
    out[rows] = th                            # rows still running at max_iter
    return out, converged
