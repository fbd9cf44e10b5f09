"""Positional schemes. Each is a module built from the spec's model section `m`, with three
hooks the model calls:

- `add(x)`: added to the token embeddings (B, T, C) before the first block;
- `rotate(q, k)`: applied to queries and keys (B, H, T, D) in every attention layer;
- `bias(T)`: an additive attention bias (H, T, T) that includes the causal mask, or None when
  plain causal attention suffices (then SDPA can use its fused causal kernels);

and two rules read from the spec alone: `table_params(m)`, the trained position parameters it
adds (counted as embedding parameters), and `problems(m)`, the shapes it cannot work with.

Adding a scheme means one class here and one entry in `SCHEMES`: the spec's allowed values, its
documentation, its shape checks and the parameter count all come from the table.
"""

from __future__ import annotations

import math

import torch
from torch import nn



class NoPosition(nn.Module):
    """No explicit positions: causal masking alone lets a model infer them (NoPE)."""

    def __init__(self, m):
        super().__init__()

    @staticmethod
    def table_params(m) -> int:
        """Trained position parameters (embedding parameters)."""
        return 0

    @staticmethod
    def problems(m) -> list[tuple[tuple[str, ...], str]]:
        """Shape rules of this scheme, as (field path, message) pairs."""
        return []

    def add(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def rotate(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return q, k

    def bias(self, T: int) -> torch.Tensor | None:
        return None


class Learned(NoPosition):
    """A trained table of position vectors added to the input (GPT-2)."""

    def __init__(self, m):
        super().__init__(m)
        self.table = nn.Embedding(self.rows(m), m.width)

    @staticmethod
    def rows(m) -> int:
        return m.positional.max_positions or m.context

    @staticmethod
    def table_params(m) -> int:
        return Learned.rows(m) * m.width

    @staticmethod
    def problems(m) -> list[tuple[tuple[str, ...], str]]:
        if m.context > Learned.rows(m):
            return [(("model", "context"), f"context {m.context} is longer than the "
                     f"{Learned.rows(m)} learned positions")]
        return []

    def add(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.table.weight[: x.shape[1]]


class Sinusoidal(NoPosition):
    """Fixed sines and cosines of geometric wavelengths added to the input (Vaswani et al.)."""

    def __init__(self, m):
        super().__init__(m)
        pos = torch.arange(m.context, dtype=torch.float32)[:, None]
        freq = torch.exp(torch.arange(0, m.width, 2, dtype=torch.float32) * (-math.log(10000.0) / m.width))
        table = torch.zeros(m.context, m.width)
        table[:, 0::2] = torch.sin(pos * freq)
        table[:, 1::2] = torch.cos(pos * freq)
        self.register_buffer("table", table, persistent=False)

    @staticmethod
    def problems(m) -> list[tuple[tuple[str, ...], str]]:
        if m.width % 2:
            return [(("model", "width"), f"sinusoidal positions need an even width, got {m.width}")]
        return []

    def add(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.table[: x.shape[1]].to(x.dtype)


class Rotary(NoPosition):
    """Rotary embeddings (Su et al.): rotate each pair of query/key dimensions by an angle
    proportional to the position, so attention scores depend on relative offsets."""

    def __init__(self, m):
        super().__init__(m)
        D = m.head_dim
        inv_freq = m.positional.theta ** (-torch.arange(0, D, 2, dtype=torch.float32) / D)
        angles = torch.outer(torch.arange(m.context, dtype=torch.float32), inv_freq)  # (T, D/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    @staticmethod
    def problems(m) -> list[tuple[tuple[str, ...], str]]:
        if m.width % m.heads == 0 and m.head_dim % 2:
            return [(("model", "positional", "kind"),
                     f"rope needs an even head dimension; width/heads = {m.head_dim}")]
        return []

    def rotate(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        T = q.shape[-2]
        cos, sin = self.cos[:T].to(q.dtype), self.sin[:T].to(q.dtype)
        return _rotate(q, cos, sin), _rotate(k, cos, sin)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # Pairs are (first half, second half) of the head dimension, as in GPT-NeoX and Llama.
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class ALiBi(NoPosition):
    """Attention with linear biases (Press et al.): each head subtracts slope x distance from its
    scores. Needs an explicit bias, so SDPA cannot use its fused causal flash kernel."""

    def __init__(self, m):
        super().__init__(m)
        self.register_buffer("slopes", alibi_slopes(m.heads), persistent=False)
        self._cache: tuple[int, torch.device, torch.dtype, torch.Tensor] | None = None

    def bias(self, T: int) -> torch.Tensor:
        dtype, device = self.slopes.dtype, self.slopes.device
        if self._cache and self._cache[:3] == (T, device, dtype):
            return self._cache[3]
        pos = torch.arange(T, device=device)
        distance = (pos[None, :] - pos[:, None]).to(dtype)                     # (T, T), <= 0 below diagonal
        bias = self.slopes[:, None, None] * distance[None]                     # (H, T, T)
        bias = bias.masked_fill(pos[None, :] > pos[:, None], float("-inf"))    # causal
        self._cache = (T, device, dtype, bias)
        return bias


def alibi_slopes(heads: int) -> torch.Tensor:
    """Geometric slopes 2^(-8/n), 2^(-16/n), ...; for non-powers of two, interleave the next
    power's slopes as in the paper's reference."""
    def power_of_two(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]
    if math.log2(heads).is_integer():
        slopes = power_of_two(heads)
    else:
        closest = 2 ** math.floor(math.log2(heads))
        slopes = power_of_two(closest) + power_of_two(2 * closest)[0::2][: heads - closest]
    return torch.tensor(slopes, dtype=torch.float32)


SCHEMES: dict[str, type[NoPosition]] = {
    "learned": Learned,
    "sinusoidal": Sinusoidal,
    "rope": Rotary,
    "alibi": ALiBi,
    "none": NoPosition,
}


def build_positional(m) -> NoPosition:
    """The scheme the model section `m` names."""
    return SCHEMES[m.positional.kind](m)
