"""Data-parallel runs: one run on `train.devices` processes (GPUs, or CPU processes talking
gloo) as an Accelerate job.

The caller (a `workbench train`, or the study worker that owns a trial) stays in charge: it
writes the run folder's spec, launches `accelerate launch --multi_gpu -m workbench.train.rank`,
reads the evaluation rows the main rank appends to metrics.jsonl as they come, and answers
each with a verdict file, so a pruner sees the same curve and stops the job at the same step as
an in-process run. The ranks agree on the verdict through a broadcast, write the record (status
pruned), and exit; the caller then reads record.json.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from workbench.plumbing.errors import LaunchError
from workbench.plumbing.files import write_atomic
from workbench.plumbing.process import die_with_parent
from workbench.record import METRICS_FILE, RECORD_FILE, EvalPoint, Pruned, RunRecord, read_record, write_spec
from workbench.spec import Spec

LOG_FILE = "launch.log"
VERDICT_WAIT_S = 600.0


def _verdict_file(run_dir: Path, point: EvalPoint) -> Path:
    return run_dir / f".verdict-{point.phase}-{point.step}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(spec: Spec, run_dir: Path | None, on_eval: Callable[[EvalPoint], None] | None = None,
           poll: float = 0.02, progress: bool = False) -> RunRecord:
    """Run `spec` on spec.train.devices processes and return its record. on_eval is called
    here, in the caller's process, for every judged evaluation; raising record.Pruned stops the
    job. With progress, each evaluation is printed to stderr as it comes."""
    import torch

    scratch = run_dir is None           # the job needs a folder to talk through; removed after
    run_dir = run_dir or Path(tempfile.mkdtemp(prefix=f"{spec.name}-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    write_spec(run_dir, spec)
    metrics = run_dir / METRICS_FILE
    for stale in [metrics, run_dir / RECORD_FILE, *run_dir.glob(".verdict-*"), *run_dir.glob(".error-rank*")]:
        stale.unlink(missing_ok=True)
    n = spec.train.devices
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(n),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), "-m", "workbench.train.rank", str(run_dir)]
    if on_eval is not None:
        cmd.append("--judged")
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, torch.get_num_threads() // n)),
           "TOKENIZERS_PARALLELISM": "false"}
    with open(run_dir / LOG_FILE, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=die_with_parent if sys.platform == "linux" else None)
    read = 0
    try:
        while True:
            code = proc.poll()
            if metrics.exists():
                with open(metrics, "rb") as f:
                    f.seek(read)
                    chunk = f.read()
                whole = chunk[:chunk.rfind(b"\n") + 1]
                read += len(whole)
                for line in whole.decode().splitlines():
                    row = json.loads(line)
                    if row.pop("kind") != "eval":
                        continue
                    judged, point = row.pop("judged", True), EvalPoint.model_validate(row)
                    if progress:
                        print(f"{spec.name} {point.phase} step {point.step:,} ({point.tokens:,} tokens, "
                              f"{point.elapsed_s:.0f} s): train loss {point.train_loss:.4f}, "
                              f"val bpb {point.val_bpb:.4f}", file=sys.stderr, flush=True)
                    if not judged:
                        continue
                    verdict = "go"
                    if on_eval is not None:
                        try:
                            on_eval(point)
                        except Pruned as e:
                            verdict = f"prune:{e}"
                        write_atomic(_verdict_file(run_dir, point), verdict)
            if code is not None:
                break
            time.sleep(poll)
    except BaseException:
        proc.terminate()
        proc.wait()
        raise
    if code != 0 or not (run_dir / RECORD_FILE).exists():
        # The first rank to fail says why; the others fail after it, when their peer is gone.
        said = sorted(run_dir.glob(".error-rank*"), key=lambda f: f.stat().st_mtime)
        why = said[0].read_text().strip() if said else \
            ((run_dir / LOG_FILE).read_text(errors="replace").strip().splitlines() or ["(no output)"])[-1]
        raise LaunchError(f"data-parallel run on {n} processes exited with {code} "
                          f"(log: {run_dir / LOG_FILE}): {why[:300]}")
    record = read_record(run_dir)
    if scratch:
        shutil.rmtree(run_dir, ignore_errors=True)
    return record


class Verdicts:
    """In the ranks: wait for the caller's verdict on each evaluation, agree on it, and stop
    every rank together when it says prune."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def __call__(self, point: EvalPoint) -> None:
        import torch
        from accelerate import PartialState
        from accelerate.utils import broadcast

        state = PartialState()            # the run's, set up by its Accelerator
        verdict = "go"
        if state.is_main_process:
            path, deadline = _verdict_file(self.run_dir, point), time.time() + VERDICT_WAIT_S
            while not path.exists() and time.time() < deadline:
                time.sleep(0.005)
            verdict = path.read_text() if path.exists() else "go"
            path.unlink(missing_ok=True)
        flag = broadcast(torch.tensor([verdict.startswith("prune:")], dtype=torch.int32, device=state.device))
        if flag.item():
            raise Pruned(verdict.removeprefix("prune:") or f"pruned at step {point.step}")
