"""`workbench study run`, `status` and `export` from the command line."""

import json
import subprocess
import sys

import polars as pl

from support import write_study


def test_cli_study_status_and_export(tmp_path):
    path = write_study(tmp_path, trials=2, search={"model.width": {"choice": [32, 64]}},
                       ladder={"tokens": [256], "sizes": [{"model.depth": 1}]})
    run = subprocess.run([sys.executable, "-m", "workbench", "study", "run", str(path), "--workers", "1"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "3/3 trials: 3 complete | best searched val_bpb" in run.stderr and "| ladder 1/1 points done" in run.stderr
    status = subprocess.run([sys.executable, "-m", "workbench", "study", "status", str(path), "--json"],
                            cwd=tmp_path, capture_output=True, text=True)
    s = json.loads(status.stdout)
    assert s["states"] == {"complete": 3} and s["ladder"] == {"planned": 1, "done": 1, "failed": 0, "running": 0}
    assert len(s["best"]) == 2 and s["baselines"] == []            # the ladder point is never a best
    text = subprocess.run([sys.executable, "-m", "workbench", "study", "status", str(path)],
                          cwd=tmp_path, capture_output=True, text=True)
    assert "best searched trials" in text.stdout and "ladder 1/1 points done" in text.stdout
    assert "compute: " in text.stdout and "FLOPs (6N+attn, trials that trained)" in text.stdout
    export = subprocess.run([sys.executable, "-m", "workbench", "study", "export", str(path), "-o", "r.parquet"],
                            cwd=tmp_path, capture_output=True, text=True)
    exported = pl.read_parquet(tmp_path / "r.parquet")
    assert export.returncode == 0 and exported.filter(pl.col("status") == "completed").height == 3
    assert sorted(exported["role"].to_list()) == ["ladder", "search", "search"]
