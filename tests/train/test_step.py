"""One optimizer step's parts: the learning-rate schedules, the loss over responses only, and
the optimizer's decay groups."""

import pytest
import torch

from support import model_spec
from workbench.model import build_model, lm_loss
from workbench.spec import ScheduleSpec
from workbench.train.step import lr_factor, make_optimizer, masked_loss


def test_schedules():
    cos = ScheduleSpec(kind="cosine", warmup=0.1, min_lr_ratio=0.1)
    assert lr_factor(cos, 0.05) == pytest.approx(0.5)
    assert lr_factor(cos, 0.1) == pytest.approx(1.0) and lr_factor(cos, 1.0) == pytest.approx(0.1)
    wsd = ScheduleSpec(kind="wsd", warmup=0.0, decay=0.2, min_lr_ratio=0.0)
    assert [lr_factor(wsd, p) for p in (0.5, 0.8, 0.9, 1.0)] == pytest.approx([1, 1, 0.5, 0])
    assert lr_factor(ScheduleSpec(kind="constant", warmup=0.0), 0.99) == 1.0


def test_the_loss_counts_responses_only():
    torch.manual_seed(0)
    logits = torch.randn(4, 32, 300)
    y = torch.randint(0, 300, (4, 32))
    y[:, :10] = -1                                         # prompt positions
    keep = y >= 0
    manual = torch.nn.functional.cross_entropy(logits[keep], y[keep])
    assert masked_loss(logits, y) == pytest.approx(manual.item(), rel=1e-6)
    # Prompt targets do not move the loss at all.
    shuffled = logits.clone()
    shuffled[~keep] = torch.randn_like(shuffled[~keep])
    assert masked_loss(shuffled, y) == pytest.approx(masked_loss(logits, y).item(), rel=1e-6)
    assert lm_loss(torch.zeros(1, 2, 300), torch.tensor([[-1, -1]]), "sum") == 0
    assert masked_loss(logits, torch.full((4, 32), -1)) == 0          # a micro-batch of prompts only


def test_data_parallel_shares_of_the_loss_average_to_the_one_device_mean():
    torch.manual_seed(0)
    logits, y = torch.randn(4, 8, 50), torch.randint(0, 50, (4, 8))
    y[0, :6] = y[3, :] = -1                                # ranks hold unequal numbers of targets
    count = int((y >= 0).sum())
    shares = [masked_loss(logits[r * 2:(r + 1) * 2], y[r * 2:(r + 1) * 2], count, world=2) for r in range(2)]
    assert sum(shares) / 2 == pytest.approx(masked_loss(logits, y).item(), rel=1e-6)


def test_matrices_decay_and_gains_and_biases_do_not():
    model = build_model(model_spec(bias=True))
    spec = model_spec(bias=True)
    decay, plain = make_optimizer(model, spec, torch.device("cpu")).param_groups
    assert decay["weight_decay"] == spec.train.weight_decay and plain["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in plain["params"])
    ids = [id(p) for g in (decay, plain) for p in g["params"]]
    assert len(ids) == len(set(ids)) == len({id(p) for p in model.parameters()})      # tied weights once
