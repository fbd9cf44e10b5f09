"""Parametrisations: every one in the table builds the same shapes; mup is standard at its base
width, gives hidden matrices lr x base_width / width, and keeps every layer's activations the
same size across widths over the first steps (the coordinate check), where standard's grow."""

import math

import numpy as np
import pytest
import torch

from support import model_spec
from workbench.model import build_model, lm_loss
from workbench.model.parametrization import HIDDEN, PARAMETRIZATIONS, role
from workbench.train.step import make_optimizer


def _spec(**model):
    return model_spec(parametrization="mup", base_width=64, **model)


@pytest.mark.parametrize("tie", [True, False])
def test_every_parametrization_builds_the_same_shapes(tie):
    shapes = {name: [(n, p.shape) for n, p in build_model(model_spec(
                  parametrization=name, base_width=32, tie_embeddings=tie, bias=True)).named_parameters()]
              for name in PARAMETRIZATIONS}
    assert len({str(s) for s in shapes.values()}) == 1


@pytest.mark.parametrize("tie", [True, False])
def test_mup_at_its_base_width_trains_as_standard(tie):
    losses = {}
    for name in PARAMETRIZATIONS:
        spec = model_spec(parametrization=name, base_width=64, tie_embeddings=tie)
        torch.manual_seed(0)
        model = build_model(spec)
        opt = make_optimizer(model, spec, torch.device("cpu"))
        x = torch.randint(0, 257, (4, 25), generator=torch.Generator().manual_seed(0))
        losses[name] = []
        for _ in range(3):
            loss = lm_loss(model(x[:, :-1]), x[:, 1:])
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses[name].append(loss.item())
    assert losses["mup"] == pytest.approx(losses["standard"], rel=1e-5)


def test_mup_scales_hidden_matrices_and_the_logits_by_the_width_ratio():
    spec = _spec(width=256, tie_embeddings=False, positional={"kind": "learned"}, bias=True)
    model = build_model(spec)
    groups = make_optimizer(model, spec, torch.device("cpu")).param_groups
    lr = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    t = spec.train
    for name, p in model.named_parameters():
        if role(name, p) == HIDDEN:
            assert lr[id(p)] == (t.lr / 4, t.weight_decay), name
            assert p.std().item() == pytest.approx(model.parametrization.init_std(name, p), rel=0.05)
        else:                                 # embeddings, positions, the head, gains and biases
            assert lr[id(p)] == (t.lr, t.weight_decay if p.dim() >= 2 else 0.0), name
    assert model.output_scale == 1 / 4
    assert model.blocks[0].attn.scale == math.sqrt(64 / 4) / 64                  # 1/head_dim x 4
    assert model.head.weight.std().item() == pytest.approx(spec.model.init_std, rel=0.05)


# ---------------------------------------------------------------------------- coordinate check

WIDTHS = [64, 128, 256, 512, 1024]


def activation_sizes(parametrization: str, width: int, steps: int = 4) -> dict[str, float]:
    """Mean absolute value of each layer's output, averaged over forward passes after 1 to
    `steps` Adam steps on one fixed batch (two blocks, four heads, a short context)."""
    spec = model_spec(width=width, heads=4, depth=2, parametrization=parametrization, base_width=WIDTHS[0])
    torch.manual_seed(0)
    model = build_model(spec)
    opt = make_optimizer(model, spec, torch.device("cpu"))
    x = torch.randint(0, 257, (4, 25), generator=torch.Generator().manual_seed(0))
    layers = {"embedding": model.embed, "logits": model}
    layers |= {f"block{i}.{part}": module for i, block in enumerate(model.blocks)
               for part, module in (("attention", block.attn), ("mlp", block.mlp), ("output", block))}
    sizes = dict.fromkeys(layers, 0.0)

    def hook(name):
        def record(module, inputs, output):
            sizes[name] += output.abs().mean().item() / steps
        return record

    for step in range(steps):
        loss = lm_loss(model(x[:, :-1]), x[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step == 0:
            for name, module in layers.items():
                module.register_forward_hook(hook(name))
    with torch.no_grad():
        model(x[:, :-1])
    return sizes


def slopes(parametrization: str) -> dict[str, float]:
    """Each layer's slope of log activation size against log width."""
    sizes = [activation_sizes(parametrization, w) for w in WIDTHS]
    return {layer: np.polyfit(np.log(WIDTHS), [np.log(s[layer]) for s in sizes], 1)[0] for layer in sizes[0]}


def test_coordinate_check_mup_is_flat_in_width_and_standard_grows():
    mup, standard = slopes("mup"), slopes("standard")
    assert all(abs(s) < 0.25 for s in mup.values()), mup
    # Standard: the input layer is the same as mup's; everything the hidden matrices make grows.
    assert abs(standard["embedding"]) < 0.25, standard
    assert all(s > 0.5 for layer, s in standard.items() if layer != "embedding"), standard
