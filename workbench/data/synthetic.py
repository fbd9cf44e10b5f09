"""The synthetic source: text from a random Markov chain whose entropy rate is computed exactly,
so the loss no model can beat is known and fitted irreducible losses can be checked against it."""

from __future__ import annotations

import string
from typing import Literal

import numpy as np
from pydantic import Field

from workbench.data.corpus import Documents, Source
from workbench.plumbing.errors import DataError

# Printable ASCII, one byte each, no whitespace (so no tokenizer treats any symbol specially).
_SYMBOLS = (string.ascii_lowercase + string.ascii_uppercase + string.digits + "+/").encode()
_MAX_TRANSITIONS = 2**24  # alphabet**(order+1) probabilities: 128 MiB of float64
_DENSE_CONTEXTS = 4096  # slow-mixing chains up to this size are solved directly


def _transition(pi: np.ndarray, P: np.ndarray, alphabet: int) -> np.ndarray:
    """One step of the context chain: context (x0, mid) emits y with P and becomes (mid, y)."""
    n_ctx = P.shape[0]
    joint = (pi[:, None] * P).reshape(alphabet, n_ctx // alphabet, alphabet)  # (x0, mid, y)
    return joint.sum(axis=0).reshape(n_ctx)


def _stationary(P: np.ndarray, alphabet: int, order: int) -> np.ndarray:
    """A stationary distribution over contexts of the order-k chain with next-symbol table P
    (contexts x alphabet; context index = base-alphabet digits, oldest symbol first)."""
    n_ctx = P.shape[0]
    if order == 0:
        return np.ones(1)
    pi = np.full(n_ctx, 1.0 / n_ctx)
    for _ in range(1_000):
        step = _transition(pi, P, alphabet)
        if np.abs(step - pi).sum() < 1e-13:
            return step / step.sum()
        pi = 0.1 * pi + 0.9 * step  # a little laziness: same fixed points, no periodic orbits
    if n_ctx <= _DENSE_CONTEXTS:
        # Small concentrations make nearly closed cycles that power iteration crawls out of;
        # solve pi T = pi, sum(pi) = 1 directly instead.
        T = np.zeros((n_ctx, n_ctx))
        src = np.repeat(np.arange(n_ctx), alphabet)
        dst = src % (n_ctx // alphabet) * alphabet + np.tile(np.arange(alphabet), n_ctx)
        T[src, dst] = P.reshape(-1)
        M = T.T - np.eye(n_ctx)
        M[-1] = 1.0
        try:
            solved = np.clip(np.linalg.solve(M, np.eye(n_ctx)[-1]), 0.0, None)
            solved /= solved.sum()
            if np.abs(_transition(solved, P, alphabet) - solved).sum() < 1e-10:
                return solved
        except np.linalg.LinAlgError:
            pass  # exactly reducible: no unique answer to solve for
    raise DataError("data: the synthetic chain mixes too slowly to compute its entropy rate "
                    "exactly; raise data.concentration or lower data.alphabet or data.order")


class SyntheticData(Source):
    """Text from a random Markov chain over a small alphabet, whose entropy rate (the loss no model
    can beat) is computed exactly, so fitted irreducible losses can be checked against truth."""

    source: Literal["synthetic"]
    """Generated text with a known entropy rate."""
    alphabet: int = Field(16, ge=2, le=64)
    """Number of distinct symbols (printable ASCII, one byte each)."""
    order: int = Field(2, ge=0, le=4)
    """Markov order: how many previous symbols the next one depends on."""
    concentration: float = Field(0.3, gt=0)
    """Dirichlet concentration of each context's next-symbol distribution; lower is more
    predictable."""
    documents: int = Field(2000, ge=2)
    """Number of documents generated."""
    doc_bytes: int = Field(1000, ge=1)
    """Length of each document in bytes."""
    seed: int = 0
    """Seed of the chain and of the text drawn from it."""

    def read(self) -> Documents:
        A, k, n, length = self.alphabet, self.order, self.documents, self.doc_bytes
        if A ** (k + 1) > _MAX_TRANSITIONS:
            raise DataError(f"data: alphabet**(order+1) = {A ** (k + 1):,} transition probabilities is "
                            f"more than {_MAX_TRANSITIONS:,}; lower data.alphabet or data.order")
        rng = np.random.default_rng(self.seed)
        P = rng.dirichlet(np.full(A, self.concentration), size=A**k)  # (contexts, A)
        pi = _stationary(P, A, k)
        plogp = np.where(P > 0, P * np.log2(np.where(P > 0, P, 1.0)), 0.0)
        entropy = float(pi @ -plogp.sum(axis=1))

        symbols = np.empty((n, length), dtype=np.uint8)
        ctx = rng.choice(A**k, size=n, p=pi)  # stationary start: the whole text is stationary
        for i in range(min(k, length)):
            symbols[:, i] = ctx // A ** (k - 1 - i) % A
        cdf = np.cumsum(P, axis=1)
        cdf[:, -1] = 1.0  # no draw may fall past the last symbol through rounding
        for t in range(k, length):  # sequential in time, vectorised over documents
            y = (rng.random(n)[:, None] > cdf[ctx]).sum(axis=1)
            symbols[:, t] = y
            if k:
                ctx = ctx % A ** (k - 1) * A + y
        raw = np.frombuffer(_SYMBOLS, dtype=np.uint8)[symbols].tobytes()
        docs = [(f"synthetic/{i}", raw[i * length:(i + 1) * length].decode("ascii")) for i in range(n)]
        return Documents(docs, entropy=entropy)
