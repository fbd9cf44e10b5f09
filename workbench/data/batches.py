"""Training batches: random windows of a token stream (nanoGPT style), gathered with one
indexing op, reproducible from the seed. The stream may be memory-mapped: only the windows drawn
are read, so a stream larger than memory trains as any other."""

from __future__ import annotations

import numpy as np
import torch

from workbench.plumbing.errors import DataError


def _numpy(a):
    return a.numpy() if isinstance(a, torch.Tensor) else a


class Batches:
    """Random windows of the training stream (nanoGPT style), reproducible from the seed. Under
    data parallelism every rank draws the same windows and keeps its own equal share of rows, so
    the ranks together see exactly the batch one device would."""

    def __init__(self, stream: np.ndarray | torch.Tensor, batch: int, T: int, seed: int, device: torch.device,
                 mask: np.ndarray | torch.Tensor | None = None, rank: int = 0, world: int = 1):
        if len(stream) <= T + 1:
            raise DataError(f"the training split has {len(stream)} tokens; model.context {T} "
                            "needs more: add data or shorten the context")
        self.stream, self.mask = _numpy(stream), _numpy(mask)
        self.batch, self.device, self.world = batch, device, world
        self.offsets = torch.arange(T + 1)
        self.rows = slice(rank * batch // world, (rank + 1) * batch // world)
        self.targets = 0        # with a mask: targets in the last micro-batch, all ranks' rows
        self.gen = torch.Generator().manual_seed(seed)
        self.pin = device.type == "cuda"

    def _to(self, t: torch.Tensor) -> torch.Tensor:
        return t.pin_memory().to(self.device, non_blocking=True) if self.pin else t

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(len(self.stream) - len(self.offsets) + 1, (self.batch, 1), generator=self.gen)
        idx = (starts[self.rows] + self.offsets).numpy()
        chunk = torch.from_numpy(self.stream[idx].astype(np.int64))              # (B, T+1)
        if self.mask is None:
            chunk = self._to(chunk)
            return chunk[:, :-1], chunk[:, 1:]
        counted = torch.from_numpy(self.mask[(starts + self.offsets[1:]).numpy()])   # every rank's rows
        self.targets = int(counted.sum())
        y = chunk[:, 1:].masked_fill(~counted[self.rows], -1)
        return self._to(chunk[:, :-1]), self._to(y)
