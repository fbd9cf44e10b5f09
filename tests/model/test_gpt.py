"""Every example spec builds a model whose parameters are the counted ones and trains a step."""

import pytest
import torch

from support import SPECS
from workbench.accounting import count_params
from workbench.model import build_model, lm_loss
from workbench.specfile import load_spec


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_example_spec_builds_and_steps(path):
    spec = load_spec(path, {"model.context": 32})
    torch.manual_seed(0)
    model = build_model(spec)
    assert sum(p.numel() for p in model.parameters()) == count_params(spec).total
    x = torch.randint(0, spec.tokenizer.size, (2, 33))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss = lm_loss(model(x[:, :-1]), x[:, 1:])
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())
    assert lm_loss(model(x[:, :-1]), x[:, 1:]) < loss  # the step learned something


def test_the_padded_vocabulary_is_never_predicted_as_a_target():
    spec = load_spec(SPECS[0], {"model.context": 32, "model.vocab_multiple": 64})
    model = build_model(spec)
    assert model.embed.num_embeddings % 64 == 0 and model.embed.num_embeddings >= spec.tokenizer.size
    logits = model(torch.randint(0, spec.tokenizer.size, (1, 8)))
    assert logits.shape == (1, 8, model.embed.num_embeddings)
    targets = torch.full((1, 8), -1)
    assert lm_loss(logits, targets, "sum") == 0                  # -1 targets are ignored
