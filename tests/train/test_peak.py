"""MFU divides by the matmul peak measured in the run's own compute dtype, so it stays below 1
for every precision (a bf16 run against an fp32 peak once reported 101-126%)."""

import json
import subprocess
import sys

import torch
import yaml

from support import tiny_spec
from workbench.accounting import matmul_peak
from workbench.train.bench import bench

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16" if torch.cuda.is_available() else "float32"}
"""The dtype the matmuls run in: on a CPU, Accelerate autocasts bf16 only, so fp16 runs in fp32."""


def small_spec(precision: str):
    return tiny_spec(**{"train.precision": precision, "train.completions": 0, "train.samples": 0,
                        "model.width": 128, "model.heads": 4, "train.batch_tokens": 1024,
                        "train.budget": {"steps": 4}, "train.eval_bytes": 1024,
                        "data": {"source": "synthetic", "documents": 200}})


def test_mfu_is_against_the_peak_of_the_runs_own_dtype(tmp_path):
    # Accelerate fixes the mixed precision once per process: each precision trains in its own,
    # one after another (a peak timed while another run trains would be too low).
    for precision in DTYPES:
        spec_file = tmp_path / f"{precision}.yaml"
        spec_file.write_text(yaml.safe_dump(small_spec(precision).model_dump(mode="json")))
        run = subprocess.run(
            [sys.executable, "-m", "workbench", "train", str(spec_file), "--out", str(tmp_path / precision), "--quiet"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        record = json.loads((tmp_path / precision / "record.json").read_text())
        assert record["peak_dtype"] == DTYPES[precision]
        assert 0 < record["mfu"] < 1, (precision, record["mfu"])


def test_bench_reports_the_same_ceiling_as_a_run_of_its_dtype():
    measured = bench(small_spec("fp32"), steps=3, warmup=1)
    assert measured["peak_dtype"] == "float32"
    assert measured["peak_flops"] == matmul_peak(torch.device("cpu"), torch.float32)   # once per process
    assert 0 < measured["mfu"] < 1
