"""The GPU check script still runs: its smoke mode at toy sizes on the CPU, so the one-shot run
on a GPU machine does not meet a broken script."""

import subprocess
import sys

import pytest
import torch

from support import ROOT


def test_gpu_check_smoke_runs_and_prints_its_table():
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke",
                          "--sections", "env,gpt2,positional"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = run.stdout.splitlines()
    assert any(r.startswith("gpt2") and "ours / baseline" in r for r in rows)
    assert any(r.startswith("positional") and "alibi / learned" in r for r in rows)
    assert not any("error:" in r for r in rows), run.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the check would run")
def test_gpu_check_without_a_gpu_says_so_in_one_line():
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
