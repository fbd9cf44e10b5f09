"""Branched warmup-stable-decay ladders against separate runs, at quickstart scale.

The ladder of studies/wsd-ladder.yaml (4 sizes x 5 budgets, 0.2, 0.4, ..., 1.0 of the largest),
with its budgets scaled by --scale (default 0.5, to keep 3 seeds both ways near 15 minutes), is
trained twice, each over several seeds (ladder groups): once as 20 separate WSD runs per seed
(each with its own 5% warmup and 20% decay), once branched (one run per size and seed, every
smaller budget a branch with a 20% decay). Printed: each point's loss both ways against the
seed-to-seed spread, the compute each way (measured from the run records), and the IsoFLOP
exponent of each ladder with its interval.

    python benchmarks/wsd_branches.py [--seeds 3] [--scale 0.5] [--workers 2] [--out runs/bench-wsd]

About 15 minutes on two otherwise idle CPU cores. The studies stay in --out (a second run resumes them).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from workbench.scaling.fit import fit_runs
from workbench.scaling.runs import study_runs
from workbench.study.file import load_study
from workbench.study.roles import compute_spent
from workbench.study.supervisor import supervise
from workbench.study.table import load_trials

ROOT = Path(__file__).resolve().parent.parent


def study_file(out: Path, name: str, seeds: int, scale: float, branched: bool) -> Path:
    """The wsd-ladder study with one ladder group per seed; separate runs get the same WSD
    schedule as the branches (5% warmup, 20% linear decay to 0.1 of the peak), each over its own D."""
    data = yaml.safe_load((ROOT / "studies" / "wsd-ladder.yaml").read_text())
    base = yaml.safe_load((ROOT / "specs" / "quickstart.yaml").read_text())
    base["train"].update(schedule={"kind": "wsd", "warmup": 0.05, "decay": 0.2}, completions=0, samples=0)
    data.update(name=name, base=base)
    data["ladder"]["groups"] = [{"train.seed": s} for s in range(seeds)]
    data["ladder"]["flops"] = [float(c) * scale for c in data["ladder"]["flops"]]
    if not branched:
        del data["ladder"]["branches"]
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run(path: Path, out: Path, workers: int) -> tuple[pl.DataFrame, dict, object, float]:
    study = load_study(path)
    url = str(out / f"{study.name}.journal")
    start = time.perf_counter()
    supervise(study, url, workers)
    seconds = time.perf_counter() - start
    study, ostudy, table = load_trials(study, url)
    points = table.filter(pl.col("role") == "ladder").select(
        pl.col("spec.model.width").alias("width"), pl.col("spec.train.seed").alias("seed"),
        pl.col("params.nonembedding").alias("N"), pl.col("tokens"), pl.col("val_bpb"))
    fit = fit_runs(*study_runs(study, table), bootstrap=400)
    return points, compute_spent(ostudy.get_trials(deepcopy=False)), fit, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--scale", type=float, default=0.5, help="multiplies the example's budgets")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-wsd"))
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    sep, sep_c, sep_fit, sep_s = run(study_file(a.out, "wsd-separate", a.seeds, a.scale, False), a.out, a.workers)
    br, br_c, br_fit, br_s = run(study_file(a.out, "wsd-branched", a.seeds, a.scale, True), a.out, a.workers)

    # Each (size, budget): the mean over seeds both ways, against the seed-to-seed SD of the separate runs.
    both = sep.join(br, on=["width", "seed", "tokens"], suffix="_br")
    cells = both.group_by("width", "tokens").agg(
        pl.col("val_bpb").mean().alias("separate"), pl.col("val_bpb_br").mean().alias("branched"),
        pl.col("val_bpb").std().alias("seed_sd"), pl.len().alias("seeds")).sort("width", "tokens")
    cells = cells.with_columns((pl.col("branched") - pl.col("separate")).alias("diff"))
    print(f"{'width':>5s} {'tokens':>9s} {'separate':>9s} {'branched':>9s} {'diff':>8s} {'seed SD':>8s}")
    for r in cells.iter_rows(named=True):
        print(f"{r['width']:5d} {r['tokens']:9d} {r['separate']:9.4f} {r['branched']:9.4f} {r['diff']:+8.4f} "
              f"{r['seed_sd']:8.4f}")
    within = int((cells["diff"].abs() <= cells["seed_sd"]).sum())
    # The SE of a difference of two means over `seeds` each is sd * sqrt(2 / seeds).
    z = cells["diff"].to_numpy() / (cells["seed_sd"].to_numpy() * np.sqrt(2 / a.seeds))

    def exponent(fit) -> str:
        iso = fit.isoflop
        return iso.a.text() if iso.a is not None else f"none ({iso.reason or iso.interval_reason})"

    b = br_c["branched"]
    rows = [
        ("points", f"{sep.height} separate runs; {b['points']} branch points from {b['runs']} runs"),
        ("within one seed SD", f"{within}/{cells.height} points; |mean diff| / its SE: median {np.median(np.abs(z)):.2f}, "
                               f"max {np.abs(z).max():.2f}; mean diff {cells['diff'].mean():+.4f} bpb"),
        ("compute (6N+attn)", f"separate {sep_c['flops']:.3g} FLOPs; branched {br_c['flops']:.3g} "
                              f"(shared {b['shared_flops']:.3g} + decays {b['decay_flops']:.3g})"),
        ("compute saving", f"{sep_c['flops'] / br_c['flops']:.2f}x (arithmetic limit with 20% decays: 2.14x)"),
        ("wall time", f"separate {sep_s:.0f} s, branched {br_s:.0f} s: {sep_s / br_s:.2f}x"),
        ("IsoFLOP a, separate", exponent(sep_fit)),
        ("IsoFLOP a, branched", exponent(br_fit)),
    ]
    if sep_fit.isoflop.a is not None and br_fit.isoflop.a is not None and sep_fit.isoflop.a.lo is not None:
        inside = sep_fit.isoflop.a.lo <= br_fit.isoflop.a.estimate <= sep_fit.isoflop.a.hi
        rows.append(("branched a inside separate interval", "yes" if inside else "NO"))
    print()
    for name, value in rows:
        print(f"{name:36s} {value}")


if __name__ == "__main__":
    main()
