"""Held-out evaluation: a model scored on a corpus's evaluation windows, in nats, bits per byte,
perplexity and top-1 accuracy."""

from __future__ import annotations

import math

import torch
from accelerate import Accelerator

from workbench.data.prepared import Text
from workbench.model.gpt import lm_loss
from workbench.record import Metrics


@torch.no_grad()
def heldout_metrics(model: torch.nn.Module, text: Text, device: torch.device, autocast, batch: int,
             accelerator: Accelerator | None = None) -> Metrics:
    """The model on a corpus's held-out windows; under data parallelism each rank scores its
    share of the windows and the sums are added up."""
    was_training = model.training
    model.eval()
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    sums = torch.zeros(2, device=device, dtype=torch.float64)                      # nats, correct
    for i in range(rank * batch, len(text.eval_x), batch * world):
        x, y = text.eval_x[i:i + batch].to(device), text.eval_y[i:i + batch].to(device)
        with autocast():
            logits = model(x)
        sums[0] += lm_loss(logits, y, reduction="sum").double()
        sums[1] += (logits.argmax(-1) == y).sum()
    if world > 1:
        sums = accelerator.reduce(sums, "sum")
    model.train(was_training)
    nats, correct = sums.tolist()
    n = int((text.eval_y >= 0).sum())
    loss = nats / n
    return Metrics(loss=loss, ppl=math.exp(min(loss, 700.0)), bpb=nats / (math.log(2) * text.eval_bytes),
                   top1=correct / n, tokens=n, bytes=text.eval_bytes)
