"""Parametrisations: how initialisation, per-layer learning rates, the attention scale and the
output scale depend on the width. Each is a class built from the spec's model section `m`; the
model and the optimizer ask it five things:

- `init(name, p)`: initialise one parameter (by its name in the model);
- `lr_scale(name, p)`: the multiple of train.lr this parameter is trained at;
- `attention_scale()`: what attention scores are multiplied by (None: SDPA's 1/sqrt(head_dim));
- `output_scale()`: what the logits are multiplied by;
- `problems(m)`: the spec fields this parametrisation cannot work without.

Every parameter plays one of four roles, read from its name (`role`): the input tables (token
embedding, learned positions), the output matrix (an untied LM head; a tied one is the token
embedding), the hidden matrices (attention and MLP), and vectors (norm gains, biases).

Adding a parametrisation means one class here and one entry in `PARAMETRIZATIONS`: the spec's
allowed values and their documentation come from the table. None of them changes a parameter's
shape, so accounting and FLOPs are the same under every one.
"""

from __future__ import annotations

import math

import torch
from torch import nn

INPUT, HIDDEN, OUTPUT, VECTOR = "input", "hidden", "output", "vector"


def role(name: str, p: torch.Tensor) -> str:
    """input, hidden, output or vector: what a parameter does, from its name in the GPT."""
    if p.dim() < 2:
        return VECTOR
    if name.startswith(("embed.", "pos.")):
        return INPUT
    if name.startswith("head."):
        return OUTPUT
    return HIDDEN


def _residual_output(name: str) -> bool:
    """The matrices that write into the residual stream (attention and MLP output projections)."""
    return name.endswith(("proj.weight", "down.weight"))


class Standard:
    """Every matrix drawn with init_std and trained at train.lr (GPT-2).

    Residual output projections are drawn smaller by 1/sqrt(2 x depth), so the stream's variance
    does not grow with the number of blocks. The learning rate that is best at one width is
    usually too large at a larger one: updates of Adam move each coordinate by about lr, and a
    hidden matrix sums width of them.
    """

    def __init__(self, m):
        self.m = m

    @staticmethod
    def problems(m) -> list[tuple[tuple[str, ...], str]]:
        """Fields this parametrisation needs, as (field path, message) pairs."""
        return []

    def init_std(self, name: str, p: torch.Tensor) -> float:
        """Standard deviation of a matrix's normal initialisation."""
        depth = 1 / math.sqrt(2 * self.m.depth) if _residual_output(name) else 1
        return self.m.init_std * depth

    def init(self, name: str, p: torch.Tensor) -> None:
        if p.dim() >= 2:
            nn.init.normal_(p, mean=0.0, std=self.init_std(name, p))
        elif name.endswith("bias"):
            nn.init.zeros_(p)

    def lr_scale(self, name: str, p: torch.Tensor) -> float:
        return 1.0

    def attention_scale(self) -> float | None:
        return None

    def output_scale(self) -> float:
        return 1.0


class MaximalUpdate(Standard):
    """Maximal-update parametrisation (muP; Yang et al., Tensor Programs V): the learning rate
    tuned at model.base_width stays near-optimal at other widths.

    With r = width / base_width, relative to standard (and equal to it at r = 1):
    hidden matrices are drawn with std / sqrt(r) and trained at lr / r; the logits are multiplied
    by 1 / r; attention scores by sqrt(base_width / heads) / head_dim instead of
    1 / sqrt(head_dim). Input tables, the output matrix and vectors keep std and lr.
    """

    # Why each rule (Adam moves each coordinate of a parameter by about lr per step):
    # - hidden: an update of lr in every coordinate changes a matrix's output by about lr x
    #   fan_in, since the update lines up with its input; lr / r keeps that change the same at
    #   every width, and std / sqrt(r) (variance 1/fan_in) keeps the output at initialisation so.
    # - input: fan_in is the vocabulary (or the positions), which does not grow with width, so the
    #   standard rules already give each coordinate the same size at every width.
    # - output: the head sums width coordinates that its update lines up with, so its change grows
    #   with r; the 1 / r multiplier on the logits cancels that (and makes the logits at
    #   initialisation shrink with width, which does no harm). Putting the rule in a multiplier
    #   rather than in the head's init and lr keeps a tied head possible: the shared table is
    #   drawn and trained as an input table, and only its use as the head is scaled.
    # - attention: after training, queries and keys line up, so q.k grows like head_dim rather
    #   than sqrt(head_dim); scaling by 1/head_dim (times a constant that makes it standard's at
    #   base_width) keeps the scores' size fixed as heads widen. This takes the widths to share
    #   their number of heads (the head dimension grows with the width, as in muP's own
    #   experiments); the scale is standard's x sqrt(base_width / width) whatever the heads.
    # Weight decay stays train.weight_decay: AdamW's decay per step is lr x weight_decay, so the
    # hidden matrices' decay shrinks with their learning rate.

    def __init__(self, m):
        super().__init__(m)
        self.r = m.width / m.base_width

    @staticmethod
    def problems(m) -> list[tuple[tuple[str, ...], str]]:
        if m.base_width is None:
            return [(("model", "base_width"), "mup needs base_width: the width whose tuned learning "
                     "rate the others share")]
        return []

    def init_std(self, name: str, p: torch.Tensor) -> float:
        std = super().init_std(name, p)
        return std / math.sqrt(self.r) if role(name, p) == HIDDEN else std

    def lr_scale(self, name: str, p: torch.Tensor) -> float:
        return 1 / self.r if role(name, p) == HIDDEN else 1.0

    def attention_scale(self) -> float:
        return math.sqrt(self.m.base_width / self.m.heads) / self.m.head_dim

    def output_scale(self) -> float:
        return 1 / self.r


PARAMETRIZATIONS: dict[str, type[Standard]] = {"standard": Standard, "mup": MaximalUpdate}


def build_parametrization(m) -> Standard:
    """The parametrisation the model section `m` names."""
    return PARAMETRIZATIONS[m.parametrization](m)
