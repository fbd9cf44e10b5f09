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
    threads: int                 # torch CPU threads (split again between a trial's processes)
    device: str                  # for people: "cuda:1 (2 trials share it)" or "cpu (1 thread)"
    devices: int = 1             # data-parallel processes per trial


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


def plan_workers(workers: str | int, gpus: int, trials_per_gpu: int = 1, cpus: int | None = None,
                 gpus_per_trial: int = 1) -> list[WorkerPlan]:
    """Plans for `workers` processes (`auto`: one per group of gpus_per_trial GPUs, times
    trials_per_gpu; 1 without GPUs). Worker i uses GPU group (i // trials_per_gpu) mod groups,
    so packed workers share a GPU and a count beyond the groups wraps round. Without GPUs a
    trial's gpus_per_trial processes run on the CPU (gloo)."""
    if trials_per_gpu < 1:
        raise ValueError("--trials-per-gpu must be at least 1")
    if gpus_per_trial < 1:
        raise ValueError("--gpus-per-trial must be at least 1")
    if gpus_per_trial > 1 and trials_per_gpu > 1:
        raise ValueError("GPUs per trial (--gpus-per-trial, or the base spec's train.devices) and "
                         "--trials-per-gpu cannot both be above 1")
    if gpus and gpus_per_trial > gpus:
        raise ValueError(f"{gpus_per_trial} GPUs per trial (--gpus-per-trial, or the base spec's train.devices) "
                         f"needs that many visible GPUs; this worker sees {gpus}")
    cpus = cpus or os.cpu_count() or 1
    groups = gpus // gpus_per_trial
    if workers == "auto":
        n = groups * trials_per_gpu if gpus else 1
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
            slot = (i // trials_per_gpu) % groups
            group = ",".join(ids[slot * gpus_per_trial:(slot + 1) * gpus_per_trial])
            sharing = sum(1 for j in range(n) if (j // trials_per_gpu) % groups == slot)
            where = f"cuda:{group}" if gpus_per_trial == 1 else f"cuda:{group} (one trial on {gpus_per_trial} GPUs)"
            if gpus_per_trial == 1:
                where += f" ({sharing} trial{'s' if sharing > 1 else ''} share it)"
            plans.append(WorkerPlan(i, {"CUDA_VISIBLE_DEVICES": group}, threads, where, gpus_per_trial))
        else:
            where = f"cpu ({threads} thread{'s' if threads > 1 else ''}"
            where += f", {gpus_per_trial} processes per trial)" if gpus_per_trial > 1 else ")"
            plans.append(WorkerPlan(i, {"CUDA_VISIBLE_DEVICES": ""}, threads, where, gpus_per_trial))
    return plans
