"""Which device each study worker gets: one worker per GPU (or K per GPU when small trials
leave a GPU idle), pinned through CUDA_VISIBLE_DEVICES; on a CPU-only machine the cores are
split between workers."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerPlan:
    index: int
    env: dict[str, str]          # added to the worker's environment
    threads: int                 # torch CPU threads
    device: str                  # for people: "cuda:1 (2 trials share it)" or "cpu (1 thread)"


def gpu_count() -> int:
    """GPUs this process may use, without initialising CUDA in the supervisor."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        import torch
        return torch.cuda.device_count()
    except Exception:
        return 0


def plan_workers(workers: str | int, gpus: int, trials_per_gpu: int = 1, cpus: int | None = None) -> list[WorkerPlan]:
    """Plans for `workers` processes (`auto`: gpus x trials_per_gpu, or 1 without GPUs).
    Worker i uses GPU (i // trials_per_gpu) mod gpus, so packed workers share a GPU and a
    count beyond gpus x trials_per_gpu wraps round."""
    if trials_per_gpu < 1:
        raise ValueError("--trials-per-gpu must be at least 1")
    cpus = cpus or os.cpu_count() or 1
    if workers == "auto":
        n = gpus * trials_per_gpu if gpus else 1
    else:
        n = int(workers)
        if n < 1:
            raise ValueError("--workers must be at least 1 or auto")
    threads = max(1, cpus // n)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in visible.split(",")] if visible else [str(g) for g in range(gpus)]
    plans = []
    for i in range(n):
        if gpus:
            gpu = ids[(i // trials_per_gpu) % gpus]
            sharing = sum(1 for j in range(n) if ids[(j // trials_per_gpu) % gpus] == gpu)
            plans.append(WorkerPlan(i, {"CUDA_VISIBLE_DEVICES": gpu}, threads,
                                    f"cuda:{gpu} ({sharing} trial{'s' if sharing > 1 else ''} share it)"))
        else:
            plans.append(WorkerPlan(i, {"CUDA_VISIBLE_DEVICES": ""}, threads,
                                    f"cpu ({threads} thread{'s' if threads > 1 else ''})"))
    return plans
