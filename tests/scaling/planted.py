"""Planted scaling laws for the fit tests: runs drawn from a known law with seeded noise, as
arrays or as the tables users bring."""

from pathlib import Path

import numpy as np
import polars as pl

from workbench.scaling.fit import fit_runs
from workbench.scaling.runs import load_runs

# Chinchilla's fitted law (Hoffmann et al. 2022, approach 3) as the planted truth.
TRUTH = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
A_TRUE = TRUTH["beta"] / (TRUTH["alpha"] + TRUTH["beta"])
"""The planted compute-optimal exponent: N_opt ∝ C^a."""
LOAD = ("loss", "n_convention", "c_convention", "group_by", "storage")


def chinchilla(N, D, p=TRUTH):
    return p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]


def grid_runs(seed: int, noise: float = 0.01, side: int = 10, n0: float = 1e8, d0: float = 1e9):
    """side x side runs, N and D each spanning two decades (jittered), multiplicative noise."""
    rng = np.random.default_rng(seed)
    N, D = (a.ravel() for a in np.meshgrid(np.geomspace(n0, 100 * n0, side), np.geomspace(d0, 100 * d0, side)))
    N, D = N * np.exp(rng.uniform(-0.1, 0.1, N.size)), D * np.exp(rng.uniform(-0.1, 0.1, D.size))
    return N, D, chinchilla(N, D) * np.exp(rng.normal(0, noise, N.size))


def isoflop_runs(seed: int, noise: float = 0.01, budgets=np.geomspace(1e18, 1e22, 5), spread: float = 8.0):
    """Per budget, 9 sizes around the planted compute-optimal N, with D = C / (6N)."""
    rng = np.random.default_rng(seed)
    s = TRUTH["alpha"] + TRUTH["beta"]
    G = (TRUTH["alpha"] * TRUTH["A"] / (TRUTH["beta"] * TRUTH["B"])) ** (1 / s)
    rows = []
    for C in budgets:
        for N in G * (C / 6) ** (TRUTH["beta"] / s) * np.geomspace(1 / spread, spread, 9):
            rows.append((C, N, C / (6 * N)))
    C, N, D = np.array(rows).T
    return C, N, D, chinchilla(N, D) * np.exp(rng.normal(0, noise, len(C)))


VALLEY = {"E": 1.0, "A": 400.0, "B": 1200.0, "alpha": 0.5, "beta": 0.3}
"""An asymmetric planted law (alpha != beta) for IsoFLOP valleys."""


def valley_ladder(seed: int, noise: float = 0.01, sizes: int = 9, budgets: int = 5, seeds: int = 1):
    """An IsoFLOP ladder on VALLEY: `budgets` budgets over two decades, one set of `sizes` sizes
    for every budget spanning 30x around each budget's optimum (so each optimum sits elsewhere
    among them), `seeds` runs per point, multiplicative noise. Returns C, N, D, loss and the
    planted exponent a of N_opt ∝ C^a."""
    rng = np.random.default_rng(seed)
    p = VALLEY
    s = p["alpha"] + p["beta"]
    G = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / s)
    C_b = np.geomspace(1e15, 1e17, budgets)
    n_opt = G * (C_b / 6) ** (p["beta"] / s)
    lo, hi = np.log(n_opt.min() / np.sqrt(30)), np.log(n_opt.max() * np.sqrt(30))
    step = (hi - lo) / (sizes - 1)
    u = lo + rng.uniform(-0.5, 0.5) * step + step * np.arange(sizes)
    C, N = (np.repeat(a.ravel(), seeds) for a in np.meshgrid(C_b, np.exp(u), indexing="ij"))
    D = C / (6 * N)
    L = chinchilla(N, D, p) * np.exp(rng.normal(0, noise, len(C)))
    return C, N, D, L, p["beta"] / s


def two_conventions(seed: int, embedding: float = 3e7, noise: float = 0.005) -> dict:
    """An export-like table whose law is planted in non-embedding parameters, with a large
    embedding on top in the total: only the non-embedding convention follows the law."""
    rng = np.random.default_rng(seed)
    Nn, D = (a.ravel() for a in np.meshgrid(np.geomspace(1e7, 1e9, 7), np.geomspace(1e9, 1e11, 6)))
    L = chinchilla(Nn, D) * np.exp(rng.normal(0, noise, Nn.size))
    return {"status": ["completed"] * len(L), "params.total": Nn + embedding, "params.nonembedding": Nn,
            "tokens": D, "compute.6N": 6 * Nn * D, "compute.6N+attn": 6 * (Nn + embedding) * D, "val_bpb": L}


def rising_ladder() -> dict:
    """A ladder like a quickstart whose larger models are undertrained: at each of 3 budgets the
    smallest of 4 sizes has the lowest loss and loss rises with size."""
    rows = []
    for i, C in enumerate([1e11, 2e11, 4e11]):
        for j, N in enumerate([2e4, 6e4, 2e5, 4e5]):
            rows.append((C, N, C / (6 * N), 3.2 - 0.08 * i + 0.25 * j + 0.02 * ((i * 7 + j * 3) % 5 - 2)))
    C, N, D, L = map(np.array, zip(*rows))
    return {"status": ["completed"] * len(L), "origin": ["ladder"] * len(L), "params.total": N,
            "params.nonembedding": N * 0.6, "tokens": D, "compute.6N": C, "compute.6N+attn": C,
            "spec.train.budget.flops_convention": ["6N"] * len(L), "val_bpb": L}


def export_like() -> dict:
    """A table with the column names of `workbench study export`: completed ladder runs over
    three budgets, plus runs that failed, diverged or were pruned, and two positional kinds."""
    C, N, D, L = isoflop_runs(2, budgets=np.geomspace(1e18, 1e20, 3))
    k = len(C)
    status = ["completed"] * k + ["failed", "diverged", "pruned", "pruned"]
    pad = lambda v, fill: list(v) + [fill] * 4
    return {"trial": list(range(k + 4)), "status": status, "origin": ["ladder"] * (k + 4),
            "params.total": pad(N * 1.1, 1e8), "params.nonembedding": pad(N, 1e8),
            "tokens": pad(D, 1e9), "compute.6N": pad(C, 1e18), "compute.6N+attn": pad(C * 1.05, 1e18),
            "spec.train.budget.flops_convention": ["6N"] * (k + 4),
            "val_bpb": pad(L, None), "val_loss": pad(L * 0.69, None),
            "spec.model.positional.kind": (["rope", "alibi"] * k)[:k] + ["rope"] * 4}


def write_table(path: Path, **columns) -> Path:
    df = pl.DataFrame(columns)
    df.write_csv(path) if path.suffix == ".csv" else df.write_parquet(path)
    return path


def fit_source(source, **options):
    """Load the runs of a study or table and fit them, as `workbench fit` does."""
    runs, prov = load_runs(source, **{k: options.pop(k) for k in LOAD if k in options})
    return fit_runs(runs, prov, **options)


QUICK = {"A": 7.4, "alpha": 0.15, "B": 84.0, "beta": 0.31}
"""A law without E like the quickstart's fit (non-embedding N, val_bpb)."""
QUICK_SIZES = np.array([3120.0, 12384.0, 27792.0, 49344.0])
"""The quickstart ladder's non-embedding sizes (widths 16 to 64 at depth 1)."""
QUICK_K = 10.0
"""C / (N·D) of the quickstart's runs in non-embedding parameters."""


def quick_law(N, D, curvature: float = 0.0):
    """QUICK, times exp(-curvature·ln(D / 2e5)²): with curvature, the loss keeps falling at large
    D where the power law flattens, which no form of the fit can follow (a misspecified truth)."""
    return (QUICK["A"] / N ** QUICK["alpha"] + QUICK["B"] / D ** QUICK["beta"]) * np.exp(-curvature * np.log(D / 2e5) ** 2)


def quick_ladder(seed: int, curvature: float = 0.0, noise: float = 0.005) -> pl.DataFrame:
    """An export-like table of a ladder like the quickstart's: budgets 1e11, 2e11 and 4e11 FLOPs
    x the 4 sizes, losses from quick_law with multiplicative noise."""
    rng = np.random.default_rng(seed)
    C, N = (a.ravel() for a in np.meshgrid([1e11, 2e11, 4e11], QUICK_SIZES, indexing="ij"))
    D = C / (QUICK_K * N)
    L = quick_law(N, D, curvature) * np.exp(rng.normal(0, noise, C.size))
    return pl.DataFrame({"status": ["completed"] * len(L), "origin": ["ladder"] * len(L), "params.total": N,
                         "params.nonembedding": N, "tokens": D, "compute.6N": C, "compute.6N+attn": C,
                         "spec.train.budget.flops_convention": ["6N"] * len(L), "val_bpb": L})
