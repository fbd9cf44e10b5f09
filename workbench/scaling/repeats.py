"""Repeated data: which runs went over their training data too many times to count its tokens as
fresh, and the data-constrained law of Muennighoff et al. (2023) for studies that go past that.

Their effective data discounts each repetition beyond the first epoch: with U unique tokens
trained on D times in total, R = D/U - 1 repetitions count as

    D' = U + U·R*·(1 - exp(-R/R*))

so the first few repetitions are worth almost as much as fresh tokens, and D' never exceeds
U·(1 + R*). The law is then L = E + A/N^alpha + B/D'^beta. R* = 15.4 is their fitted value (up
to about 4 epochs repeated tokens are nearly as good as new; past about 16 they add little)."""

from __future__ import annotations

import numpy as np

EPOCH_LIMIT = 4.0
"""Beyond about this many epochs repeated tokens are worth measurably less than fresh ones."""
R_STAR = 15.4
"""R*_D of Muennighoff et al. (2023): repetitions after which repeated tokens are worth 1/e."""


def effective_tokens(D: np.ndarray, U: np.ndarray, r_star: float = R_STAR) -> np.ndarray:
    """D' for D tokens drawn from U unique ones (D' = D while D <= U)."""
    D, U = np.asarray(D, float), np.asarray(U, float)
    R = np.maximum(D / U - 1.0, 0.0)
    return np.where(D <= U, D, U + U * r_star * -np.expm1(-R / r_star))


def constrained_allocation(p: dict, k: float, flops, unique: float, r_star: float = R_STAR) -> dict[str, np.ndarray]:
    """Compute-optimal allocation under the data-constrained law at C = k·N·D with `unique`
    tokens available: the N minimising E + A/N^alpha + B/D'(C/(kN))^beta. Broadcasts like
    powerlaw.allocation (parameter draws against budgets) and returns the same keys; a and b are
    the local slopes of log N_opt and log D_opt in log C."""
    flops = np.asarray(flops, float)
    u = _argmin(p, k, flops, unique, r_star)
    step = 1e-3
    a = (_argmin(p, k, flops * np.exp(step), unique, r_star, start=u) - u) / step
    logc = np.log(flops / k)
    n_opt, d_opt = np.exp(u), np.exp(logc - u)
    return {"a": a, "b": 1.0 - a, "N_opt": n_opt, "D_opt": d_opt, "tokens_per_param": d_opt / n_opt,
            "loss_at_target": _loss(p, logc, u, unique, r_star)}


def _loss(p: dict, logc, u, unique: float, r_star: float):
    """The data-constrained law along a budget: at log N = u with D = C/(kN), log(C/k) = logc."""
    E, A, B, alpha, beta = (np.asarray(p[n], float) for n in ("E", "A", "B", "alpha", "beta"))
    with np.errstate(all="ignore"):
        return E + A * np.exp(-alpha * u) + B * effective_tokens(np.exp(logc - u), unique, r_star) ** -beta


def _argmin(p: dict, k: float, flops: np.ndarray, unique: float, r_star: float, start=None) -> np.ndarray:
    """log N_opt along each budget: a coarse grid above the fresh-data optimum (repeats only
    push the optimum towards more parameters), then Newton steps on the slope of the loss."""
    alpha, beta, A, B = (np.asarray(p[n], float) for n in ("alpha", "beta", "A", "B"))
    logc = np.log(flops / k)
    with np.errstate(all="ignore"):
        if start is None:
            s = alpha + beta
            u0 = (np.log(alpha * A) - np.log(beta * B)) / s + beta / s * logc          # fresh data
            grid = u0[..., None] + np.linspace(-0.5, 8.0, 35)
            values = _loss({q: np.asarray(p[q], float)[..., None] for q in ("E", "A", "B", "alpha", "beta")},
                           logc[..., None] if np.ndim(logc) else logc, grid, unique, r_star)
            values = np.where(np.isfinite(values), values, np.inf)
            start = np.take_along_axis(grid, np.argmin(values, axis=-1)[..., None], axis=-1)[..., 0]
        u, h = np.asarray(start, float), 1e-3
        for _ in range(25):
            f0, fp, fm = (_loss(p, logc, u + d, unique, r_star) for d in (0.0, h, -h))
            g, c = (fp - fm) / (2 * h), (fp - 2 * f0 + fm) / (h * h)
            u = np.where(c > 0, u - np.clip(g / np.where(c > 0, c, 1.0), -1.0, 1.0), u)
    return u
