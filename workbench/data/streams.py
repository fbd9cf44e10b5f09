"""Token streams: documents encoded once, joined by end-of-text ids, cached on disk by content
and tokenizer, and the statistics that say how a tokenizer does on a corpus."""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Iterator, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from workbench.data.corpus import Corpus
from workbench.data.texts import Piece, Texts
from workbench.data.tokenizer import TextTokenizer, cache_dir
from workbench.plumbing.files import write_atomic

_BATCH_DOCS = 256         # documents per encode_batch call ...
_BATCH_BYTES = 8 << 20    # ... and text per call: bounds the token lists held at once
_PART_BYTES = 4 << 20     # a longer document is encoded a part at a time (see Piece.parts)


def stream_dtype(tok: TextTokenizer) -> np.dtype:
    """uint16 when the vocabulary fits, else uint32: half the disk and memory of int32."""
    return np.dtype(np.uint16 if tok.vocab_size <= 2**16 else np.uint32)


def _batches(texts: Texts) -> Iterator[tuple[list[Piece], list[bool]]]:
    """Pieces in encode batches, with whether each ends its document (an end-of-text follows)."""
    batch, ends, size = [], [], 0
    for piece in texts.pieces:
        parts = piece.parts(_PART_BYTES)
        for i, part in enumerate(parts):
            batch.append(part)
            ends.append(i == len(parts) - 1)
            size += part.size
            if len(batch) >= _BATCH_DOCS or size >= _BATCH_BYTES:
                yield batch, ends
                batch, ends, size = [], [], 0
    if batch:
        yield batch, ends


def _chunks(tok: TextTokenizer, docs: Sequence[str], progress=None) -> Iterator[np.ndarray]:
    """The stream [eos, doc1..., eos, doc2..., eos] a batch at a time."""
    dtype = stream_dtype(tok)
    eos = np.array([tok.eos_id], dtype=dtype)
    yield eos
    for batch, ends in _batches(Texts.of(docs)):
        pieces = []
        for ids, end in zip(tok.encode_batch([p.text() for p in batch]), ends):
            pieces.append(np.array(ids, dtype=dtype))
            if end:
                pieces.append(eos)
        yield np.concatenate(pieces)
        if progress is not None:
            progress(sum(p.size for p in batch))


def token_stream(tok: TextTokenizer, docs: Sequence[str]) -> np.ndarray:
    """[eos, doc1 tokens..., eos, doc2 tokens..., eos]: uint16 when the vocabulary fits, else
    uint32."""
    return np.concatenate(list(_chunks(tok, docs)))


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


def cached_stream(tok: TextTokenizer, docs: Sequence[str], key: str, progress: bool = False) -> np.ndarray:
    """`token_stream(tok, docs)`, cached on disk and memory-mapped, so a stream larger than
    memory is written a batch at a time and read a window at a time. `key` names the documents
    (see `stream_key`); the file is cache_dir()/tokens/<key>-<tokenizer digest>.npy, so a stream
    is never read back for a different tokenizer whatever key a caller picks. The array is
    read-only. With `progress` (and a terminal), a progress bar follows the encoding."""
    if not re.fullmatch(r"[\w.-]+", key):
        raise ValueError(f"stream cache key {key!r} must be letters, digits, '.', '-' or '_'")
    path = cache_dir() / "tokens" / f"{key}-{tok.digest[:16]}.npy"
    if not path.exists():
        texts = Texts.of(docs)
        with _Bar(progress and sys.stderr.isatty(), f"tokenizing {texts.bytes / 2**20:,.0f} MiB", texts.bytes) as bar:
            write_atomic(path, lambda f: _write_npy(f, _chunks(tok, texts, bar.advance), stream_dtype(tok)))
    return np.load(path, mmap_mode="r")


def _write_npy(f, chunks: Iterator[np.ndarray], dtype: np.dtype) -> None:
    """A 1-D .npy file written a chunk at a time: the header is written for length 0 and
    rewritten with the true length at the end (numpy pads it so the length can grow in place)."""
    def header(n: int) -> bytes:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                   "fortran_order": False, "shape": (n,)})
        return buf.getvalue()

    start = header(0)
    f.write(start)
    n = 0
    for chunk in chunks:
        f.write(chunk.tobytes())
        n += len(chunk)
    final = header(n)
    if len(final) != len(start):
        raise AssertionError("the .npy header grew past its padding")
    f.seek(0)
    f.write(final)


class _Bar:
    """A rich progress bar over bytes, or nothing."""

    def __init__(self, enabled: bool, what: str, total: int):
        self.bar = None
        if enabled:
            from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                       TransferSpeedColumn)
            self.bar = Progress(TextColumn(what), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                TimeRemainingColumn(), transient=True)
            self.task = self.bar.add_task(what, total=total)

    def __enter__(self) -> _Bar:
        if self.bar:
            self.bar.start()
        return self

    def advance(self, n: int) -> None:
        if self.bar:
            self.bar.advance(self.task, n)

    def __exit__(self, *exc) -> None:
        if self.bar:
            self.bar.stop()


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
    digest: str | None = None
    """sha256 hex of the tokenizer's serialised form: equal digests encode alike."""
    file: str | None = None
    """The tokenizer file it was read from (kind file)."""

    @classmethod
    def of(cls, tok: TextTokenizer, stats: dict, file: str | None = None) -> TokenizerStats:
        """The record's statistics from `tokenizer_stats` of `tok`."""
        return cls(kind=tok.kind, vocab_size=tok.vocab_size, bytes_per_token=stats["bytes_per_token"],
                   roundtrip_rate=stats["roundtrip_rate"], unk_rate=stats["unk_rate"], digest=tok.digest,
                   file=file)
