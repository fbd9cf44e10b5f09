"""`workbench study run`, `status` and `export` from the command line."""

import subprocess
import sys

import polars as pl

from support import write_study


def test_cli_study_status_and_export(tmp_path):
    path = write_study(tmp_path, trials=2, search={"model.width": {"choice": [32, 64]}})
    run = subprocess.run([sys.executable, "-m", "workbench", "study", "run", str(path), "--workers", "1"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    status = subprocess.run([sys.executable, "-m", "workbench", "study", "status", str(path), "--json"],
                            cwd=tmp_path, capture_output=True, text=True)
    assert '"complete": 2' in status.stdout
    export = subprocess.run([sys.executable, "-m", "workbench", "study", "export", str(path), "-o", "r.parquet"],
                            cwd=tmp_path, capture_output=True, text=True)
    exported = pl.read_parquet(tmp_path / "r.parquet")
    assert export.returncode == 0 and exported.filter(pl.col("status") == "completed").height == 2
