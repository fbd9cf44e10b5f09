"""A corpus: the spec's `data` section as training and held-out documents.

Every source (sources.py, synthetic.py) yields named documents in a fixed order. `max_bytes`
keeps a prefix of that order; the held-out split is chosen by a hash of each document's name, so
it is deterministic and a document keeps its side when others are added. Nothing here knows
about tokenizers: the held-out text (`eval_documents`) is raw text, the same for every
tokenizer, which is what makes bits per byte comparable across them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from pydantic import Field

from workbench.plumbing.errors import DataError
from workbench.plumbing.schema import Section

Doc = tuple[str, str]  # (name, text)


@dataclass
class Documents:
    """What a source reads: named documents in a fixed order, and what it knows about them."""

    docs: list[Doc]
    replaced: int = 0
    """Characters replaced by U+FFFD because a file was not valid UTF-8."""
    entropy: float | None = None
    """The exact entropy rate in bits per byte, when the source knows it."""
    prompts: list[int] | None = None
    """Per document: characters of prompt it starts with (prompt/response corpora)."""


class Source(Section):
    """Settings every corpus source has; each source adds its own and reads itself."""

    val_fraction: float = Field(0.05, gt=0.0, lt=1.0)
    """Fraction of documents held out for evaluation, chosen by a hash of each document's name,
    so the split is deterministic and stable when documents are added."""
    max_bytes: int | None = Field(None, ge=1)
    """Use at most this many bytes of text (documents in a fixed order; default: all)."""

    def read(self) -> Documents:
        raise NotImplementedError


@dataclass(frozen=True)
class Corpus:
    """Training and held-out documents of one data spec."""

    train: list[str] = field(repr=False)
    """Training documents, in the source's fixed order."""
    val: list[str] = field(repr=False)
    """Held-out documents, in the source's fixed order."""
    fingerprint: str
    """sha256 hex of the source settings and the names, split and text of every document."""
    entropy_bits_per_byte: float | None = None
    """Exact entropy rate of the source (synthetic data only): the loss no model can beat."""
    replaced_chars: int = 0
    """Characters replaced by U+FFFD because a file was not valid UTF-8."""
    train_prompts: list[int] | None = field(default=None, repr=False)
    """For prompt/response corpora: how many leading characters of each training document are
    prompt (not trained on); None for plain text."""
    val_prompts: list[int] | None = field(default=None, repr=False)
    """The same for the held-out documents."""

    def pairs(self, docs: list[str], prompts: list[int] | None) -> list[tuple[str, str]]:
        """Documents as (prompt, response); plain text has empty prompts."""
        if prompts is None:
            return [("", d) for d in docs]
        return [(d[:min(p, len(d))], d[min(p, len(d)):]) for d, p in zip(docs, prompts)]


def load_corpus(data: Source) -> Corpus:
    """Read the corpus a data spec names and split it into training and held-out documents."""
    read = data.read()
    prompts = read.prompts or [0] * len(read.docs)
    kept = [(doc, n) for doc, n in zip(read.docs, prompts) if doc[1]]
    docs, prompts = [doc for doc, _ in kept], [n for _, n in kept]
    if not docs:
        raise DataError(f"data: the {data.source} corpus is empty (no document has any text)")
    if data.max_bytes is not None:
        kept = take_bytes([text for _, text in docs], data.max_bytes)
        docs = [(name, text) for (name, _), text in zip(docs, kept)]
    in_val = _split([name for name, _ in docs], data.val_fraction)
    prompts = None if read.prompts is None else prompts[:len(docs)]
    return Corpus(
        train=[text for (_, text), v in zip(docs, in_val) if not v],
        val=[text for (_, text), v in zip(docs, in_val) if v],
        fingerprint=_fingerprint(data, docs, in_val),
        entropy_bits_per_byte=read.entropy,
        replaced_chars=read.replaced,
        train_prompts=None if prompts is None else [n for n, v in zip(prompts, in_val) if not v],
        val_prompts=None if prompts is None else [n for n, v in zip(prompts, in_val) if v],
    )


def take_bytes(texts: list[str], n_bytes: int) -> list[str]:
    """The leading texts, whole, until n_bytes UTF-8 bytes; the last one is cut at a character
    boundary so the total is at most n_bytes and short of it by less than one character."""
    out: list[str] = []
    left = n_bytes
    for text in texts:
        if left <= 0:
            break
        raw = text.encode()
        if len(raw) > left:
            # A cut inside a multi-byte character leaves an incomplete tail, which "ignore" drops.
            cut = raw[:left].decode("utf-8", errors="ignore")
            if cut:
                out.append(cut)
            break
        out.append(text)
        left -= len(raw)
    return out


def eval_documents(corpus: Corpus, n_bytes: int) -> list[str]:
    """The held-out evaluation text: held-out documents in their fixed order until n_bytes UTF-8
    bytes (the last one cut at a character boundary). Independent of any tokenizer, so every
    tokenizer is scored on the same raw text."""
    return take_bytes(corpus.val, n_bytes)


# ------------------------------------------------------------------------- split, fingerprint


def _unit_hash(name: str) -> float:
    """A name's position in [0, 1), uniform over names and fixed forever."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64


def _split(names: list[str], val_fraction: float) -> list[bool]:
    """Which documents are held out. With two or more documents both sides get at least one."""
    h = [_unit_hash(n) for n in names]
    in_val = [x < val_fraction for x in h]
    if len(names) >= 2:
        if not any(in_val):
            in_val[h.index(min(h))] = True
        if all(in_val):
            in_val[h.index(max(h))] = False
    return in_val


def _fingerprint(data: Source, docs: list[Doc], in_val: list[bool]) -> str:
    # Paths are left out: names and text identify the corpus, so moving a folder keeps the
    # caches keyed on it, and editing one character anywhere invalidates them.
    settings = data.model_dump(mode="json", exclude={"paths"})
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for (name, text), v in zip(docs, in_val):
        name_b, text_b = name.encode(), text.encode()
        h.update(f"{len(name_b)}:{len(text_b)}:{int(v)}:".encode())
        h.update(name_b)
        h.update(text_b)
    return h.hexdigest()


# ------------------------------------------------------------------------------------ sources
