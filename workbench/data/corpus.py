"""A corpus: the spec's `data` section as training and held-out text.

Every source (sources.py, synthetic.py) yields named documents in a fixed order. `max_bytes`
keeps a prefix of that order; the held-out split (split.py) is by document, by tail or by named
files. Documents stay where they are (files on disk, texts.py) until a tokenizer reads them, so a
corpus may be larger than memory. Nothing here knows about tokenizers: the held-out text
(`eval_documents`) is raw text, the same for every tokenizer, which is what makes bits per byte
comparable across them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from workbench.data import split as splits
from workbench.data.split import Split
from workbench.data.texts import Doc, MemoryDoc, Piece, Texts
from workbench.plumbing.errors import DataError
from workbench.plumbing.schema import Section


@dataclass
class Documents:
    """What a source reads: named documents in a fixed order, and what it knows about them."""

    docs: list[Doc | tuple[str, str]]
    """Documents, or (name, text) pairs held in memory."""
    replaced: int = 0
    """Invalid UTF-8 sequences replaced by U+FFFD because a file was not valid UTF-8."""
    entropy: float | None = None
    """The exact entropy rate in bits per byte, when the source knows it."""
    prompts: list[int] | None = None
    """Per document: characters of prompt it starts with (prompt/response corpora)."""
    files: set[str] = field(default_factory=set)
    """The real paths of the files read, for sources that read files."""

    def documents(self) -> list[Doc]:
        return [d if isinstance(d, Doc) else MemoryDoc(d[0], d[1].encode()) for d in self.docs]


class Source(Section):
    """Settings every corpus source has; each source adds its own and reads itself."""

    val_fraction: float = Field(0.05, gt=0.0, lt=1.0)
    """Fraction held out for evaluation: of the documents (split by document, chosen by a hash
    of each name, so the split is deterministic and stable when documents are added), or of each
    document's bytes (split by tail)."""
    max_bytes: int | None = Field(None, ge=1)
    """Use at most this many bytes of text (documents in a fixed order; default: all). With
    split.val_paths, of the training files."""
    split: Split = Field(default_factory=Split)
    """How the held-out text is chosen: by document (the default for several documents), by
    tail (the default for one document), or named files (val_paths)."""

    def read(self, paths: list[str] | None = None, field_name: str = "data.paths",
             exclude: frozenset[str] = frozenset()) -> Documents:
        """The source's documents. Sources that read files take other `paths` (named in errors
        as `field_name`) and leave out the files whose real paths are in `exclude`."""
        raise NotImplementedError


class CorpusStats(BaseModel):
    """A run's corpus as it was split (kept in the run record)."""

    model_config = ConfigDict(extra="forbid")

    split: splits.SplitBy
    """How the held-out text was chosen."""
    chosen: str
    """Why: "spec" when the spec says so, else the default and the reason for it."""
    val_fraction: float | None
    train_pieces: int
    """Training documents, or pieces of documents (a split by tail cuts each in two)."""
    val_pieces: int
    train_bytes: int
    val_bytes: int
    replaced_chars: int = 0
    """Invalid UTF-8 sequences in the corpus's files, read as U+FFFD."""


@dataclass(frozen=True)
class Corpus:
    """Training and held-out text of one data spec."""

    train: Sequence[str] = field(repr=False)
    """Training documents (or their pieces), in the source's fixed order."""
    val: Sequence[str] = field(repr=False)
    """Held-out documents (or their pieces), in the source's fixed order."""
    fingerprint: str
    """sha256 hex of the source settings and the names, split and content of every document."""
    entropy_bits_per_byte: float | None = None
    """Exact entropy rate of the source (synthetic data only): the loss no model can beat."""
    replaced_chars: int = 0
    """Invalid UTF-8 sequences replaced by U+FFFD because a file was not valid UTF-8."""
    train_prompts: list[int] | None = field(default=None, repr=False)
    """For prompt/response corpora: how many leading characters of each training document are
    prompt (not trained on); None for plain text."""
    val_prompts: list[int] | None = field(default=None, repr=False)
    """The same for the held-out documents."""
    stats: CorpusStats | None = None
    """The split used and the size of each side."""

    def pairs(self, docs: Sequence[str], prompts: list[int] | None) -> list[tuple[str, str]]:
        """Documents as (prompt, response); plain text has empty prompts."""
        if prompts is None:
            return [("", d) for d in docs]
        return [(d[:min(p, len(d))], d[min(p, len(d)):]) for d, p in zip(docs, prompts)]


def load_corpus(data: Source, where: str = "data") -> Corpus:
    """Read the corpus a data spec names and split it into training and held-out text; `where`
    names the data section in errors (data, finetune.data)."""
    s, fraction = data.split, data.val_fraction
    val_read = None
    if s.val_paths:
        if "paths" not in type(data).model_fields:
            raise DataError(f"{where}.split.val_paths: the {data.source} source reads no files; "
                            "split it by document or by tail")
        val_read = data.read(s.val_paths, f"{where}.split.val_paths")
    read = data.read(exclude=frozenset(val_read.files)) if val_read else data.read()
    docs, prompts = _kept(read, where, data.source)
    if data.max_bytes is not None:
        pieces = Texts([Piece(d, 0, d.size) for d in docs]).head(data.max_bytes).pieces
    else:
        pieces = [Piece(d, 0, d.size) for d in docs]
    prompts = None if prompts is None else prompts[:len(pieces)]

    if val_read is not None:
        val_docs, val_prompts = _kept(val_read, f"{where}.split.val_paths", data.source)
        train, val = pieces, [Piece(d, 0, d.size) for d in val_docs]
        by, chosen = "val_paths", "spec"
        train_prompts = prompts
    elif (s.by or ("tail" if len(pieces) == 1 else "document")) == "document":
        if len(pieces) < 2:
            raise DataError(f"{where}.split.by: a split by document needs two or more documents and "
                            f"this corpus has {len(pieces)}; use split: {{by: tail}} or name held-out "
                            f"files with {where}.split.val_paths")
        in_val = splits.by_document([p.doc for p in pieces], fraction)
        train = [p for p, v in zip(pieces, in_val) if not v]
        val = [p for p, v in zip(pieces, in_val) if v]
        by = "document"
        chosen = "spec" if s.by else f"default for a corpus of {len(pieces)} documents"
        train_prompts = None if prompts is None else [n for n, v in zip(prompts, in_val) if not v]
        val_prompts = None if prompts is None else [n for n, v in zip(prompts, in_val) if v]
    else:
        if prompts is not None:
            raise splits.prompts_cannot_be_cut(where)
        train, val = splits.by_tail(pieces, fraction, s.of)
        by, chosen = splits.describe("tail", s.of), "spec" if s.by else "default for a corpus of one document"
        train_prompts = val_prompts = None
    splits.check_sides(train, val, by, fraction, where)
    replaced = read.replaced + (val_read.replaced if val_read else 0)
    return Corpus(
        train=Texts(train), val=Texts(val), fingerprint=_fingerprint(data, train, val),
        entropy_bits_per_byte=read.entropy, replaced_chars=replaced,
        train_prompts=train_prompts, val_prompts=val_prompts,
        stats=CorpusStats(split=by, chosen=chosen, val_fraction=None if by == "val_paths" else fraction,
                          train_pieces=len(train), val_pieces=len(val),
                          train_bytes=sum(p.size for p in train), val_bytes=sum(p.size for p in val),
                          replaced_chars=replaced),
    )


def _kept(read: Documents, where: str, source: str) -> tuple[list[Doc], list[int] | None]:
    """The documents that have text, with their prompt lengths."""
    docs = read.documents()
    prompts = read.prompts or [0] * len(docs)
    kept = [(d, n) for d, n in zip(docs, prompts) if d.size]
    if not kept:
        raise DataError(f"{where}: the {source} corpus is empty (no document has any text)")
    return [d for d, _ in kept], None if read.prompts is None else [n for _, n in kept]


def take_bytes(texts: Sequence[str], n_bytes: int) -> list[str]:
    """The leading texts, whole, until n_bytes UTF-8 bytes; the last one is cut at a character
    boundary so the total is at most n_bytes and short of it by less than one character."""
    if isinstance(texts, Texts):     # cut the stored bytes: nothing past the budget is read
        return list(texts.head(n_bytes))
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


def _fingerprint(data: Source, train: list[Piece], val: list[Piece]) -> str:
    # Paths are left out: names and content identify the corpus, so moving a folder keeps the
    # caches keyed on it, and editing one character anywhere invalidates them. The split is
    # left out as settings and kept as what it did (each piece's bytes and side), so a spec
    # that names the default split shares its caches.
    settings = data.model_dump(mode="json", exclude={"paths", "split"})
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for side, pieces in ((0, train), (1, val)):
        for p in pieces:
            name = p.doc.name.encode()
            h.update(f"{len(name)}:{p.start}:{p.end}:{side}:{p.doc.sha256}:".encode())
            h.update(name)
    return h.hexdigest()
