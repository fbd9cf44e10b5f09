"""`workbench bench`: training speed of a spec on this device, measured in one process.

Throughput comes from unsynchronised steady-state steps, exactly as `train` runs them; a second
pass times each phase (data, forward, backward, optimizer) to show what the step spends outside
the model. Random tokens stand in for the corpus: speed does not depend on what the tokens say.
"""

from __future__ import annotations

import time
from dataclasses import asdict

import torch

from workbench import accounting
from workbench.data.batches import Batches
from workbench.spec import Spec
from workbench.train.step import Clock, make_engine, peak_memory, train_step


def bench(spec: Spec, steps: int = 20, warmup: int = 3) -> dict:
    """Measure tokens/s, step time, MFU and memory for `spec`; returns plain data."""
    t = spec.train
    engine = make_engine(spec)
    accelerator, model, optimizer, cuda, device = (engine.accelerator, engine.model, engine.optimizer,
                                                   engine.cuda, engine.device)
    T = spec.model.context
    stream = torch.randint(spec.tokenizer.size, (max(1 << 20, 4 * t.micro_tokens),), dtype=torch.int32)
    batches = Batches(stream, t.micro_tokens // T, T, t.seed, device)
    accum = t.batch_tokens // t.micro_tokens
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    model.train()

    def run(n: int, clock: Clock | None = None) -> float:
        sync()
        start = time.perf_counter()
        loss = None
        for _ in range(n):
            loss = train_step(model, optimizer, batches, accum, accelerator, t.grad_clip,
                              *([clock] if clock else []))
        if loss is not None:
            loss.item()                         # the steps are queued until a value is read
        sync()
        return time.perf_counter() - start

    first_step_s = run(1)
    run(max(0, warmup - 1))
    elapsed = run(steps)
    clock = Clock(enabled=True, cuda=cuda)
    timed = run(steps, clock)
    peak = engine.peak_flops()
    fpt = accounting.flops_per_token(spec)
    tokens_per_s = steps * t.batch_tokens / elapsed
    inside = sum(clock.seconds.get(k, 0.0) for k in ("forward", "backward", "optimizer"))
    mem, mem_kind = peak_memory(device)
    return {
        "name": spec.name,
        "device": str(device),
        "precision": accelerator.mixed_precision,
        "threads": torch.get_num_threads(),
        "params": asdict(accounting.count_params(spec)),
        "batch_tokens": t.batch_tokens,
        "steps": steps,
        "tokens_per_s": tokens_per_s,
        "step_time_s": elapsed / steps,
        "first_step_s": first_step_s,
        "mfu": tokens_per_s * fpt["6N+attn"] / peak,
        "peak_flops": peak,
        "peak_dtype": str(engine.compute_dtype).removeprefix("torch."),
        "peak_memory_bytes": mem,
        "peak_memory_kind": mem_kind,
        "phase_seconds_per_step": {k: v / steps for k, v in clock.seconds.items()},
        "outside_model_fraction": max(0.0, 1 - inside / timed),
    }
