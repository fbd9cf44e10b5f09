"""Token streams: documents encoded once, joined by end-of-text ids, cached on disk by content
and tokenizer, and the statistics that say how a tokenizer does on a corpus."""

from __future__ import annotations

import re

import numpy as np
from pydantic import BaseModel, ConfigDict

from workbench.data.corpus import Corpus
from workbench.data.tokenizer import TextTokenizer, cache_dir
from workbench.plumbing.files import write_atomic

_BATCH = 256  # documents per encode_batch call: bounds memory on large corpora



def token_stream(tok: TextTokenizer, docs: list[str]) -> np.ndarray:
    """[eos, doc1 tokens..., eos, doc2 tokens..., eos]: uint16 when the vocabulary fits, else
    uint32."""
    dtype = np.uint16 if tok.vocab_size <= 2**16 else np.uint32
    eos = np.array([tok.eos_id], dtype=dtype)
    pieces = [eos]
    for start in range(0, len(docs), _BATCH):
        for ids in tok.encode_batch(docs[start:start + _BATCH]):
            pieces += [np.array(ids, dtype=dtype), eos]
    return np.concatenate(pieces)


def pair_stream(tok: TextTokenizer, pairs: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """[eos, prompt1, response1, eos, prompt2, ...] and a mask of the tokens that are targets:
    responses and the eos closing each (the model learns to stop), not prompts. Prompt and
    response are encoded apart, so no token spans the boundary."""
    ids, mask = [np.array([tok.eos_id])], [np.zeros(1, bool)]
    prompts = tok.encode_batch([p for p, _ in pairs]) if pairs else []
    responses = tok.encode_batch([r for _, r in pairs]) if pairs else []
    for p, r in zip(prompts, responses):
        ids += [np.array(p, dtype=np.int64), np.array(r + [tok.eos_id], dtype=np.int64)]
        mask += [np.zeros(len(p), bool), np.ones(len(r) + 1, bool)]
    return np.concatenate(ids), np.concatenate(mask)


def stream_key(corpus: Corpus, split: str) -> str:
    """A `cached_stream` key for some documents of a corpus: its fingerprint and which split
    (e.g. "train", or "eval-65536" for the first 65536 held-out bytes)."""
    return f"{corpus.fingerprint[:20]}-{split}"


def cached_stream(tok: TextTokenizer, docs: list[str], key: str) -> np.ndarray:
    """`token_stream(tok, docs)`, cached on disk. `key` names the documents (see `stream_key`);
    the file is cache_dir()/tokens/<key>-<tokenizer digest>.npy, so a stream is never read back
    for a different tokenizer whatever key a caller picks. The array is read-only; a cache hit
    is memory-mapped."""
    if not re.fullmatch(r"[\w.-]+", key):
        raise ValueError(f"stream cache key {key!r} must be letters, digits, '.', '-' or '_'")
    path = cache_dir() / "tokens" / f"{key}-{tok.digest[:16]}.npy"
    if path.exists():
        return np.load(path, mmap_mode="r")
    stream = token_stream(tok, docs)
    write_atomic(path, lambda f: np.save(f, stream))
    stream.flags.writeable = False
    return stream


def tokenizer_stats(tok: TextTokenizer, docs: list[str]) -> dict:
    """How a tokenizer does on documents: bytes_per_token (raw UTF-8 bytes of the documents over
    their tokens, end-of-text excluded), roundtrip_rate (fraction of documents that decode to
    exactly themselves), unk_rate (fraction of tokens that are <unk>), and the raw counts."""
    encoded = tok.encode_batch(docs)
    n_tokens = sum(map(len, encoded))
    n_bytes = sum(len(d.encode()) for d in docs)  # the raw text, never the tokens' lengths
    exact = sum(d == back for d, back in zip(docs, tok.decode_batch(encoded)))
    unk = 0 if tok.unk_id is None else sum(ids.count(tok.unk_id) for ids in encoded)
    return {
        "documents": len(docs),
        "bytes": n_bytes,
        "tokens": n_tokens,
        "bytes_per_token": n_bytes / n_tokens if n_tokens else 0.0,
        "roundtrip_rate": exact / len(docs) if docs else 1.0,
        "unk_rate": unk / n_tokens if n_tokens else 0.0,
    }


class TokenizerStats(BaseModel):
    """How a run's tokenizer does on its held-out text (kept in the run record)."""

    model_config = ConfigDict(extra="forbid")

    kind: str
    vocab_size: int
    """Trained vocabulary size (the model's table is padded to a multiple of vocab_multiple)."""
    bytes_per_token: float
    roundtrip_rate: float
    """Fraction of evaluation documents that decode back to exactly the original text."""
    unk_rate: float

    @classmethod
    def of(cls, tok: TextTokenizer, stats: dict) -> TokenizerStats:
        """The record's statistics from `tokenizer_stats` of `tok`."""
        return cls(kind=tok.kind, vocab_size=tok.vocab_size, bytes_per_token=stats["bytes_per_token"],
                   roundtrip_rate=stats["roundtrip_rate"], unk_rate=stats["unk_rate"])
