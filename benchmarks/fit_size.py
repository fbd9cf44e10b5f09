"""How big a table can `workbench fit` take? A table of runs from a planted Chinchilla-like law
L(N, D) = 1.69 + 406.4/N^0.34 + 410.7/D^0.28 with 1.5% log-normal noise, N and D drawn
log-uniformly (every run distinct: no repeated rows to aggregate), written as Parquet and fitted
by `python -m workbench fit TABLE --bootstrap R` in a child process. Reports the child's wall time,
the CPU seconds of it and its worker processes, the peak resident memory of its largest process
and of all of them together, and the fitted exponents, against the targets. On a shared machine
the wall time includes waiting for other people's processes; the CPU seconds do not, and as the
fit never waits on anything else they bound an idle machine's wall time from above.

    python benchmarks/fit_size.py [--rows 200000 1000000] [--resamples 1000]

Targets (issue 15, 2-core machine): 1,000,000 rows with 1,000 resamples in under 2 GB and
under a minute."""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

TARGET_GB, TARGET_S = 2.0, 60.0
TRUTH = {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}


def table(rows: int, path: Path, noise: float = 0.015, seed: int = 0) -> Path:
    """`rows` runs of the planted law, N in [1e8, 1e10] and D in [1e9, 1e11] log-uniformly."""
    rng = np.random.default_rng(seed)
    N = np.exp(rng.uniform(np.log(1e8), np.log(1e10), rows))
    D = np.exp(rng.uniform(np.log(1e9), np.log(1e11), rows))
    t = TRUTH
    L = (t["E"] + t["A"] / N ** t["alpha"] + t["B"] / D ** t["beta"]) * np.exp(rng.normal(0, noise, rows))
    pl.DataFrame({"params": N, "tokens": D, "loss": L}).write_parquet(path)
    return path


def tree_usage(root: int) -> tuple[int, float]:
    """Resident bytes of a process and all its descendants now, and the CPU seconds they and
    their finished children have used (Linux /proc): the fit's worker processes count too, which
    the peak of any one process would hide."""
    parent, rss, cpu = {}, {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            pid = int(stat.parent.name)
            parent[pid], rss[pid] = int(fields[1]), int(fields[21]) * resource.getpagesize()
            cpu[pid] = sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            continue
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, pp in parent.items() if pp in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(rss.get(pid, 0) for pid in tree), sum(cpu.get(pid, 0.0) for pid in tree)


def measure(rows: int, resamples: int, folder: Path) -> dict:
    """Fit a fresh table in a child process: its wall time, the peak of any one of its processes
    (getrusage in a wrapper process per size, so one size's peak does not hide the next), and the
    peak sum over the child and its workers and the CPU seconds they used (sampled every 50 ms:
    on a shared machine, CPU seconds over the cores stand in for the wall time of an idle one), and
    the fitted L(N, D)."""
    source = table(rows, folder / f"runs-{rows}.parquet")
    out = folder / f"fit-{rows}.json"
    code = ("import json, resource, subprocess, sys, time\n"
            "t = time.perf_counter()\n"
            "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "wall = time.perf_counter() - t\n"
            "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
            "print(json.dumps({'rc': done.returncode, 'wall_s': wall, 'peak_kb': peak, 'err': done.stderr[-2000:]}))\n")
    cmd = [sys.executable, "-c", code, sys.executable, "-m", "workbench", "fit", str(source),
           "--bootstrap", str(resamples), "-o", str(out)]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    total, cpu = 0, 0.0
    while child.poll() is None:
        now, used = tree_usage(child.pid)
        total, cpu = max(total, now), max(cpu, used)
        time.sleep(0.05)
    got = json.loads(child.stdout.read())
    if got["rc"]:
        raise SystemExit(f"workbench fit failed on {rows} rows:\n{got['err']}")
    nd = json.loads(out.read_text())["forms"]["nd"]
    return {"rows": rows, "resamples": resamples, "wall_s": got["wall_s"], "peak_gb": got["peak_kb"] / 2 ** 20,
            "peak_all_gb": total / 2 ** 30, "cpu_s": cpu, **{p: nd["params"][p] for p in ("alpha", "beta")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    results, load = [], [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            results.append(measure(rows, args.resamples, Path(tmp)))
            print(json.dumps(results[-1]), flush=True)
    load.append(os.getloadavg()[0])
    print(f"\nmachine: {os.cpu_count()} cores, load average {load[0]:.1f} at the start, {load[1]:.1f} at the end")
    print(f"{'rows':>10} {'resamples':>9} {'wall s':>8} {'cpu s':>7} {'peak GB':>8} {'all GB':>7}  {'alpha [95%]':>26} {'beta [95%]':>26}  "
          f"targets: < {TARGET_S:.0f} s, < {TARGET_GB:.0f} GB")
    for r in results:
        ok = "ok" if r["wall_s"] < TARGET_S and r["peak_all_gb"] < TARGET_GB else \
            "ok on CPU s" if r["cpu_s"] < TARGET_S and r["peak_all_gb"] < TARGET_GB else "MISSED"
        iv = lambda p: f"{p['estimate']:.4f} [{p['lo'] or float('nan'):.4f}, {p['hi'] or float('nan'):.4f}]"
        print(f"{r['rows']:>10} {r['resamples']:>9} {r['wall_s']:>8.1f} {r['cpu_s']:>7.1f} {r['peak_gb']:>8.2f} {r['peak_all_gb']:>7.2f}  "
              f"{iv(r['alpha']):>26} {iv(r['beta']):>26}  {ok}  (truth alpha {TRUTH['alpha']}, beta {TRUTH['beta']})")


if __name__ == "__main__":
    main()
