"""Training batches: random windows reproducible from the seed, shared out between data-parallel
ranks row by row, with prompt targets left out of fine-tuning batches."""

from __future__ import annotations

import pytest
import torch

from support import two_phase
from workbench.data.batches import Batches
from workbench.data.prepared import prepare
from workbench.plumbing.errors import DataError

CPU = torch.device("cpu")


def test_windows_are_reproducible_from_the_seed_and_shifted_by_one():
    stream = torch.arange(1000, dtype=torch.int32)
    a, b, c = (Batches(stream, 8, 16, seed, CPU) for seed in (0, 0, 1))
    for _ in range(3):
        (xa, ya), (xb, yb), (xc, _) = next(a), next(b), next(c)
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and not torch.equal(xa, xc)
        assert xa.shape == ya.shape == (8, 16) and torch.equal(ya, xa + 1)   # the stream counts up


def test_ranks_together_see_the_one_device_batch():
    stream = torch.randint(0, 257, (5000,), dtype=torch.int32)
    whole = Batches(stream, 8, 16, 3, CPU)
    ranks = [Batches(stream, 8, 16, 3, CPU, rank=r, world=4) for r in range(4)]
    for _ in range(3):
        x, y = next(whole)
        parts = [next(r) for r in ranks]
        assert torch.equal(torch.cat([p[0] for p in parts]), x) and torch.equal(torch.cat([p[1] for p in parts]), y)


def test_a_stream_shorter_than_the_context_is_a_data_error():
    with pytest.raises(DataError, match="model.context 32 needs more"):
        Batches(torch.arange(20, dtype=torch.int32), 4, 32, 0, CPU)


def test_fine_tuning_batches_leave_prompt_targets_out():
    text = prepare(two_phase()).texts["finetune"]
    batches = Batches(text.train, 4, 32, 0, CPU, text.mask)
    x, y = next(batches)
    keep = y >= 0
    assert 0 < keep.sum() < keep.numel()
    assert batches.targets == int(keep.sum())
    full = Batches(text.train, 4, 32, 0, CPU)                    # the same windows, unmasked
    fx, fy = next(full)
    assert torch.equal(fx, x) and torch.equal(fy[keep], y[keep])
