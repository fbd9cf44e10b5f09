"""The held-out split: which text of a corpus is scored and never trained on.

Three ways, named in a source's `split:` section:

- by document: whole documents, chosen by a hash of each name. Deterministic, and a document
  keeps its side when others are added. The default for a corpus of several documents.
- by tail: the last `val_fraction` of each document (or of the whole corpus, `of: corpus`), cut
  just after a newline when one is near: the convention of single-file corpora. The default for
  a corpus of one document, which a split by document could only hold out whole or not at all.
- val_paths: files the user names; their text is held out and any of them also matched by
  `paths` is left out of training.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import model_validator
from pydantic_core import PydanticCustomError

from workbench.data.texts import LINE, Doc, Piece
from workbench.plumbing.errors import DataError
from workbench.plumbing.schema import Section


class Split(Section):
    """How a corpus is divided into training text and held-out text."""

    by: Literal["document", "tail"] | None = None
    """document: whole documents are held out, chosen by a hash of each document's name
    (deterministic, and stable when documents are added); tail: the last val_fraction of each
    document is held out (of: corpus, of the whole corpus), cut after a newline when one is
    near. Default: document for a corpus of several documents, tail for a single document."""
    of: Literal["document", "corpus"] = "document"
    """With by: tail, whose tail is held out: each document's, or the corpus's (its last
    documents in order, the first of them cut)."""
    val_paths: list[str] = []
    """Files, folders or glob patterns (relative to the spec file) to hold out instead: their text
    is scored and never trained on, and a file also matched by `paths` is left out of training.
    For the files, jsonl and parquet sources."""

    @model_validator(mode="after")
    def _one_way(self) -> Split:
        if self.val_paths and self.by is not None:
            raise PydanticCustomError("split", "give by or val_paths, not both (got by: {by})",
                                      {"by": self.by})
        if self.of == "corpus" and self.by != "tail":
            raise PydanticCustomError("split", "of: corpus is for by: tail", {})
        return self


def describe(by: str, of: str) -> str:
    """The record's name of a split: document, tail, tail of corpus or val_paths."""
    return "tail of corpus" if by == "tail" and of == "corpus" else by


def by_document(docs: list[Doc], fraction: float) -> list[bool]:
    """Which documents are held out: those whose name hashes below `fraction`. With two or more
    documents both sides get at least one."""
    h = [_unit_hash(d.name) for d in docs]
    in_val = [x < fraction for x in h]
    if len(docs) >= 2:
        if not any(in_val):
            in_val[h.index(min(h))] = True
        if all(in_val):
            in_val[h.index(max(h))] = False
    return in_val


def _unit_hash(name: str) -> float:
    """A name's position in [0, 1), uniform over names and fixed forever."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64


def tail_cut(piece: Piece, fraction: float) -> int:
    """Where the last `fraction` of a piece begins: just after the next newline when one comes
    within 64 KB, else at the next character. piece.end when the piece is too short to cut."""
    if piece.size < 2:
        return piece.end
    at = piece.start + min(piece.size - 1, max(1, round(piece.size * (1 - fraction))))
    return piece.cut(at, LINE)


def by_tail(pieces: list[Piece], fraction: float, of: str) -> tuple[list[Piece], list[Piece]]:
    """Training and held-out pieces: each piece's tail held out, or the corpus's."""
    train, val = [], []
    if of == "document":
        for p in pieces:
            cut = tail_cut(p, fraction)
            train.append(Piece(p.doc, p.start, cut))
            if cut < p.end:
                val.append(Piece(p.doc, cut, p.end))
        return train, val
    total = sum(p.size for p in pieces)
    keep = total - round(total * fraction)        # bytes of training text
    for p in pieces:
        if keep >= p.size:
            train.append(p)
        elif keep <= 0:
            val.append(p)
        else:
            cut = p.cut(p.start + keep, LINE)
            train.append(Piece(p.doc, p.start, cut))
            if cut < p.end:
                val.append(Piece(p.doc, cut, p.end))
        keep -= p.size
    return train, val


def check_sides(train: list[Piece], val: list[Piece], label: str, fraction: float, where: str) -> None:
    """One clear error when either side has no text, naming the sizes and the fix."""
    sizes = (f"{len(train)} training piece(s) of {sum(p.size for p in train):,} bytes, "
             f"{len(val)} held out of {sum(p.size for p in val):,} bytes")
    if not any(p.size for p in val):
        fix = ("add text to the held-out files" if label == "val_paths" else
               f"raise {where}.val_fraction (now {fraction}), or name held-out files with "
               f"{where}.split.val_paths")
        raise DataError(f"{where}.split: nothing is held out for evaluation by {label} ({sizes}); {fix}")
    if not any(p.size for p in train):
        fix = ("name training files in paths that are not among split.val_paths" if label == "val_paths"
               else f"lower {where}.val_fraction (now {fraction}) or add text")
        raise DataError(f"{where}.split: no text is left to train on by {label} ({sizes}); {fix}")


def prompts_cannot_be_cut(where: str) -> DataError:
    return DataError(f"{where}.split.by: tail would cut prompt/response pairs apart; hold out whole "
                     f"pairs with by: document, or name held-out files with {where}.split.val_paths")


SplitBy = Literal["document", "tail", "tail of corpus", "val_paths"]
