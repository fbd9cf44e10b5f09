"""How fast are the scaling fits? One L(N, D) fit on 250 runs, 1000 bootstrap refits (one process
and all cores), and `load_runs` + `fit_runs` end to end on a 250-run table with 1000 resamples.

    .venv/bin/python benchmarks/fit_speed.py [--repeats 5]

Targets (2-core machine): one fit under 1 s, 1000 resamples under 30 s."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl

from workbench.scaling import powerlaw as pw
from workbench.scaling.fit import fit_runs
from workbench.scaling.runs import load_runs


def runs(n_side: int = 25, d_side: int = 10, noise: float = 0.015, seed: int = 0):
    """250 runs from Chinchilla's law: 25 sizes x 10 token counts, 1.5% noise."""
    rng = np.random.default_rng(seed)
    N, D = (a.ravel() for a in np.meshgrid(np.geomspace(1e8, 1e10, n_side), np.geomspace(1e9, 1e11, d_side)))
    L = (1.69 + 406.4 / N ** 0.34 + 410.7 / D ** 0.28) * np.exp(rng.normal(0, noise, N.size))
    return N, D, L


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    N, D, L = runs()
    X, y = np.log(np.c_[N, D]), np.log(L)
    pw.fit(pw.Form(), X, y)                                              # warm caches
    fit_s, fitted = timed(lambda: pw.fit(pw.Form(), X, y), args.repeats)
    one_s, draws = timed(lambda: pw.bootstrap(fitted, X, y, args.resamples, seed=1), 1)
    workers = len(os.sched_getaffinity(0))

    def pooled():       # pool start-up included, as fit_runs pays it
        with ProcessPoolExecutor(workers) as ex:
            return pw.bootstrap(fitted, X, y, args.resamples, seed=1, executor=ex, chunks=workers)
    pool_s, _ = timed(pooled, 1)
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "runs.parquet"
        pl.DataFrame({"params": N, "tokens": D, "loss": L}).write_parquet(table)
        e2e_s, result = timed(lambda: fit_runs(*load_runs(table), bootstrap=args.resamples), 1)
    out = {"runs": len(y), "cores": workers, "fit_s": fit_s, f"bootstrap_{args.resamples}_one_process_s": one_s,
           f"bootstrap_{args.resamples}_{workers}_processes_s": pool_s,
           f"fit_source_{args.resamples}_resamples_s": e2e_s,
           "bootstrap_unconverged": draws["unconverged"],
           "alpha": result.forms["nd"].params["alpha"].text(), "beta": result.forms["nd"].params["beta"].text()}
    for key, value in out.items():
        print(f"{key:40s} {value if not isinstance(value, float) else round(value, 3)}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
