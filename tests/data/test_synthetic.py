"""The synthetic source: a Markov chain whose exact entropy rate is known, so fits can be
checked against ground truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from workbench.data.corpus import load_corpus
from workbench.data.synthetic import SyntheticData
from workbench.plumbing.errors import DataError


def conditional_entropy(docs: list[str], alphabet: int, order: int) -> float:
    """Plug-in H(next symbol | previous `order` symbols) in bits, Miller-Madow corrected."""
    length = len(docs[0])
    raw = np.frombuffer("".join(docs).encode(), dtype=np.uint8).reshape(len(docs), length)
    _, idx = np.unique(raw, return_inverse=True)
    idx = idx.reshape(raw.shape)
    ctx = np.zeros((len(docs), length - order), dtype=np.int64)
    for j in range(order):
        ctx = ctx * alphabet + idx[:, j:length - order + j]
    cells = np.bincount((ctx * alphabet + idx[:, order:]).ravel(),
                        minlength=alphabet ** (order + 1)).reshape(-1, alphabet)
    n = cells.sum()
    per_ctx = cells.sum(axis=1, keepdims=True)
    nz = cells > 0
    h = -(cells[nz] * np.log2(cells[nz] / np.broadcast_to(per_ctx, cells.shape)[nz])).sum() / n
    return h + (nz.sum() - (per_ctx > 0).sum()) / (2 * n * math.log(2))


@pytest.mark.parametrize("alphabet, order, concentration", [(8, 0, 0.5), (8, 2, 0.5), (4, 3, 0.2)])
def test_synthetic_entropy_rate_matches_the_generated_text(alphabet, order, concentration):
    spec = SyntheticData(source="synthetic", alphabet=alphabet, order=order,
                         concentration=concentration, documents=400, doc_bytes=2500, seed=3)
    c = load_corpus(spec)
    docs = c.train + c.val
    assert len(docs) == 400 and all(len(d) == len(d.encode()) == 2500 for d in docs)
    assert len(set("".join(docs))) <= alphabet
    exact = c.entropy_bits_per_byte
    assert 0 < exact < math.log2(alphabet)
    assert conditional_entropy(docs, alphabet, order) == pytest.approx(exact, abs=0.01)


def test_synthetic_is_deterministic_in_its_seed():
    spec = SyntheticData(source="synthetic", documents=50, doc_bytes=300, seed=7)
    a, b = load_corpus(spec), load_corpus(spec)
    assert a == b and a.train == b.train
    other = load_corpus(spec.model_copy(update={"seed": 8}))
    assert other.train != a.train and other.entropy_bits_per_byte != a.entropy_bits_per_byte


def test_synthetic_lower_concentration_is_more_predictable():
    rates = [load_corpus(SyntheticData(source="synthetic", concentration=c, documents=4,
                                       doc_bytes=10)).entropy_bits_per_byte
             for c in (0.05, 0.3, 5.0)]
    assert rates[0] < rates[1] < rates[2] < 4.0


def test_synthetic_too_many_transitions_is_an_error():
    with pytest.raises(DataError, match="alphabet.*order"):
        load_corpus(SyntheticData(source="synthetic", alphabet=64, order=4))
