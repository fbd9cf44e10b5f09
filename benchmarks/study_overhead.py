"""Per-trial cost of running a study, apart from training: time from trial start to the first
training step (warm token cache), and storage/orchestration overhead per trial, on the embedded
journal file and optionally on PostgreSQL.

    python benchmarks/study_overhead.py [--trials 12] [--postgres postgresql+psycopg://postgres@127.0.0.1/DB]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import uuid
from pathlib import Path

import yaml

from workbench.study.file import load_study
from workbench.study.storage import create_or_resume, load_existing
from workbench.study.worker import work

BASE = {"name": "base", "model": {"depth": 1, "width": 32, "heads": 2, "context": 32},
        "data": {"source": "python-stdlib"},
        "train": {"budget": {"steps": 1}, "batch_tokens": 64, "eval_bytes": 1024}}


def measure(url: str, folder: Path, trials: int) -> dict:
    path = folder / f"bench-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump({"name": path.stem, "base": BASE, "trials": trials,
                                    "search": {"train.lr": {"float": [1e-4, 1e-2], "log": True}},
                                    "sampler": {"kind": "tpe", "seed": 0}, "pruner": {"kind": "none"}}))
    study = load_study(path)
    create_or_resume(study, url)
    work(study, url, root=folder / study.name)
    done = load_existing(study, url).get_trials()[1:]          # the first trial warms the caches
    startup = [t.user_attrs["startup_s"] for t in done]
    overhead = [(t.datetime_complete - t.datetime_start).total_seconds() - t.user_attrs["record"]["wall_s"]
                for t in done]
    return {"trials": len(done), "startup_s": statistics.median(startup),
            "overhead_s": statistics.median(overhead)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--postgres", help="a PostgreSQL URL whose database may hold scratch studies")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [("journal file", measure(str(Path(tmp) / "bench.journal"), Path(tmp), a.trials))]
        if a.postgres:
            rows.append(("postgresql", measure(a.postgres, Path(tmp), a.trials)))
    for name, r in rows:
        print(f"{name:13s} {r['trials']} trials: trial start to first step {r['startup_s']:.3f} s (median), "
              f"storage and orchestration overhead {r['overhead_s'] * 1e3:.0f} ms per trial (median)")


if __name__ == "__main__":
    main()
