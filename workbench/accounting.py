"""Computational cost of a spec, from the spec alone: parameters (N) in every convention, FLOPs
per token (C = flops_per_token x D), memory, and the hardware's measured matmul peak for MFU.

Conventions, so that numbers from different papers can be compared:
- params.total: every trained parameter, tied matrices once.
- params.embedding: token embedding table, learned position table, untied output matrix.
- params.nonembedding: total - embedding (Kaplan et al.'s N).
- params.matmul: weights multiplied per token: every block matrix plus the output projection.
- flops "6N": 6 x nonembedding per training token (Kaplan's C = 6ND).
- flops "6N+attn": 6 x matmul + 12 x depth x width x context (PaLM; attention scores and values
  over full windows, forward and backward). MFU uses this one.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import asdict, dataclass

import torch

from workbench.model.gpt import padded_vocab
from workbench.model.layers import NORMS, Block
from workbench.model.positional import SCHEMES
from workbench.spec import Spec


@dataclass(frozen=True)
class Params:
    total: int
    embedding: int
    nonembedding: int
    matmul: int


def count_params(spec: Spec) -> Params:
    """N under every convention, from the spec alone; each layer variant counts its own."""
    m = spec.model
    d, V = m.width, padded_vocab(m, spec.tokenizer.size)
    matrices, other = Block.params(m)
    final_norm = NORMS[m.norm].params(m) if m.norm_placement == "pre" else 0
    head = 0 if m.tie_embeddings else V * d
    embedding = V * d + SCHEMES[m.positional.kind].table_params(m) + head
    total = embedding + m.depth * (matrices + other) + final_norm
    return Params(total=total, embedding=embedding, nonembedding=total - embedding,
                  matmul=m.depth * matrices + V * d)


def flops_per_token(spec: Spec) -> dict[str, float]:
    """Training FLOPs per token under each convention."""
    p, m = count_params(spec), spec.model
    return {"6N": 6.0 * p.nonembedding,
            "6N+attn": 6.0 * p.matmul + 12.0 * m.depth * m.heads * m.head_dim * m.context}


def budget_tokens(spec: Spec, tokens_per_second: float | None = None) -> int | None:
    """Training tokens the budget implies (None for a seconds budget without a rate)."""
    b, batch = spec.train.budget, spec.train.batch_tokens
    if b.tokens is not None:
        steps = -(-b.tokens // batch)
    elif b.steps is not None:
        steps = b.steps
    elif b.flops is not None:
        steps = max(1, round(b.flops / flops_per_token(spec)[b.flops_convention] / batch))
    elif tokens_per_second:
        steps = max(1, round(b.seconds * tokens_per_second / batch))
    else:
        return None
    return steps * batch


def compute(spec: Spec, tokens: float) -> dict[str, float]:
    return {name: f * tokens for name, f in flops_per_token(spec).items()}


def memory_estimate(spec: Spec, bytes_per_activation: int | None = None) -> dict[str, int]:
    """Training memory in bytes: fp32 weights, gradients and AdamW moments, plus activations
    saved for backward per micro-batch (about 34 x width values per token per layer for a block
    whose attention uses a fused kernel, after Korthikanti et al.), plus logits and their grads."""
    p, m, t = count_params(spec), spec.model, spec.train
    act = bytes_per_activation or (2 if t.precision in ("bf16", "fp16") else 4)
    tokens = t.micro_tokens
    activations = tokens * m.depth * m.width * 34 * act // 2
    logits = tokens * padded_vocab(m, spec.tokenizer.size) * 4 * 2
    out = {"weights": 4 * p.total, "gradients": 4 * p.total, "optimizer": 8 * p.total,
           "activations": activations + logits}
    out["total"] = sum(out.values())
    return out


def machine_memory() -> tuple[int, str]:
    """Bytes one run can use here and of what: the first GPU's memory, else physical memory."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory, "GPU memory"
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "memory"


def memory_problem(spec: Spec) -> str | None:
    """Why `spec` cannot possibly train on this machine (its estimated memory exceeds all the
    machine has), or None. Said before training, not as an out-of-memory traceback after."""
    need = memory_estimate(spec)["total"]
    have, what = machine_memory()
    if need <= have:
        return None
    return (f"estimated training memory {need / 2**30:,.1f} GiB exceeds this machine's {have / 2**30:,.1f} GiB "
            f"of {what}: shrink the model, the vocabulary or train.micro_batch_tokens")


def describe(spec: Spec) -> dict:
    """Everything `workbench describe` prints, as plain data."""
    tokens = budget_tokens(spec)
    finetune = None
    if spec.finetune is not None:
        tuned = spec.model_copy(update={"train": spec.finetune.recipe(spec.train)})
        ft_tokens = budget_tokens(tuned)
        finetune = {"tokens": ft_tokens, "compute": compute(tuned, ft_tokens) if ft_tokens else None}
    return {
        "name": spec.name,
        "params": asdict(count_params(spec)),
        "flops_per_token": flops_per_token(spec),
        "tokens": tokens,
        "compute": compute(spec, tokens) if tokens else None,
        "finetune": finetune,
        "memory_bytes": memory_estimate(spec),
        "memory_problem": memory_problem(spec),
    }


@functools.lru_cache(maxsize=None)
def matmul_peak(device: torch.device, dtype: torch.dtype, seconds: float = 0.3) -> float:
    """Measured dense matmul FLOP/s on this device in `dtype` (the run's compute dtype): the
    ceiling MFU is reported against. Timed with `linear`, the op the model's layers run: on a
    CPU, fp16 `a @ b` takes a path 15x slower than fp16 `linear`, so a bare matmul would set a
    ceiling the model passes. The best of three bursts, so a moment of contention does not lower
    the ceiling; measured once per process and dtype, so every run and bench of a study worker
    divides by the same ceiling."""
    n = 4096 if device.type == "cuda" else 1024
    # A generator of its own: drawing from the global one would shift the first run's dropout
    # masks in a process (this measurement is cached), so a run would depend on what ran before.
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    linear = torch.nn.functional.linear                       # a @ b.T: same FLOPs as a @ b
    linear(a, b)
    sync()
    best = 0.0
    for _ in range(3):
        iters, start = 0, time.perf_counter()
        while iters < 2 or time.perf_counter() - start < seconds / 3:
            linear(a, b)
            iters += 1
            if iters % 8 == 0:
                sync()
        sync()
        best = max(best, 2.0 * n ** 3 * iters / (time.perf_counter() - start))
    return best
