"""Document text that stays where it is until it is read.

A corpus larger than memory is never held whole: a document is a file on disk (`FileDoc`) or
bytes in memory (`MemoryDoc`), and the corpus's two sides are `Texts`, sequences of byte ranges
(`Piece`) of such documents, decoded one at a time when read. A file's size, content hash and
count of invalid UTF-8 sequences are read once and kept in an index beside the other caches,
keyed by the file's size, times and inode, so listing a large corpus again reads no text.

Offsets are in bytes of the stored text. Cuts fall where decoding gives the same characters
as decoding the whole document: at a newline, or before any byte that starts a character.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from workbench.plumbing.files import write_atomic

_BLOCK = 16 << 20         # bytes read at a time while scanning a file
_NUL_WINDOW = 8192        # a NUL byte this early marks a binary file (images, archives, bytecode)
_REPLACEMENT = "\ufffd".encode()
LINE = re.compile(rb"\n")
# Just before a newline that ends a line of text: byte-level pre-tokenizers always break there,
# and the whitespace after it starts the next part whole (a whitespace run cut in two, as in
# indented code, would be pre-tokenized apart). ASCII only: Unicode spaces are whitespace there.
LINE_END = re.compile(rb"(?<=[!-~])(?=\n)")


def cache_dir() -> Path:
    """Root of the on-disk caches: $WORKBENCH_CACHE if set, else ~/.cache/workbench."""
    root = Path(os.environ.get("WORKBENCH_CACHE") or Path.home() / ".cache" / "workbench")
    root.mkdir(parents=True, exist_ok=True)
    return root


def decode(raw: bytes) -> tuple[str, int]:
    """UTF-8 text and how many invalid sequences were replaced by U+FFFD (a U+FFFD the text
    already held is not counted)."""
    try:
        return raw.decode("utf-8"), 0
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        return text, text.count("\ufffd") - raw.count(_REPLACEMENT)


class Doc:
    """One named document whose bytes can be read in ranges."""

    name: str
    size: int
    """Bytes of stored text."""
    sha256: str
    """Hex digest of the stored bytes: what the corpus fingerprint follows."""

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        raise NotImplementedError

    def __iter__(self) -> Iterator[str]:
        """A document unpacks as (name, text), as sources' documents always have."""
        return iter((self.name, decode(self.read())[0]))


class MemoryDoc(Doc):
    """A document held in memory as UTF-8 bytes."""

    def __init__(self, name: str, raw: bytes):
        self.name, self.raw, self.size = name, raw, len(raw)
        self.sha256 = hashlib.sha256(raw).hexdigest()

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        return self.raw[start:end]


@dataclass(frozen=True)
class FileDoc(Doc):
    """A document read from its file when needed."""

    name: str
    path: str
    size: int
    sha256: str
    replaced: int
    """Invalid UTF-8 sequences in the file (each read as one U+FFFD)."""
    binary: bool
    """The file has a NUL byte near its start: not text."""

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        end = self.size if end is None else end
        with open(self.path, "rb") as f:
            f.seek(start)
            return f.read(max(0, end - start))


def scan(files: list[tuple[str, str, str]], index_name: str) -> list[FileDoc]:
    """(path, document name, real path) as FileDocs. Each file is read once for its hash and
    UTF-8 check; afterwards its entry in the index cache_dir()/files/<index_name>.json (by real
    path) is trusted while its size, modification and change times and inode stay the same."""
    index_path = cache_dir() / "files" / f"{index_name}.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):   # none yet, or damaged: rebuilt
        index = {}
    fresh, out = {}, []
    for path, name, key in files:
        st = os.stat(path)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        entry = index.get(key)
        if not (isinstance(entry, list) and entry[:4] == stamp and len(entry) == 7):
            entry = stamp + list(_facts(path))
        fresh[key] = entry
        out.append(FileDoc(name, path, entry[0], entry[4], entry[5], entry[6]))
    if fresh != index:
        write_atomic(index_path, json.dumps(fresh))
    return out


def _facts(path: str) -> tuple[str, int, bool]:
    """A file's sha256, its count of invalid UTF-8 sequences and whether it looks binary, read
    in blocks so a file larger than memory can be scanned."""
    h, replaced, binary = hashlib.sha256(), 0, False
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    carry = b""   # a U+FFFD already in the file may straddle two blocks
    with open(path, "rb") as f:
        first = True
        while block := f.read(_BLOCK):
            if first:
                binary, first = b"\0" in block[:_NUL_WINDOW], False
                if binary:          # skipped, or refused when named: never read further
                    return "", 0, True
            h.update(block)
            # Decoding the block counts U+FFFD the decoder made and any already in the file
            # (which may begin in the two bytes carried over); the latter are not replacements.
            replaced += decoder.decode(block).count("\ufffd") - (carry + block).count(_REPLACEMENT)
            carry = (carry + block)[-2:]
    replaced += decoder.decode(b"", final=True).count("\ufffd")
    return h.hexdigest(), replaced, binary


# --------------------------------------------------------------------------- pieces, Texts


def _starts_char(b: int) -> bool:
    return not 0x80 <= b < 0xC0          # UTF-8 continuation bytes never start a character


@dataclass(frozen=True)
class Piece:
    """Bytes start..end of one document."""

    doc: Doc
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start

    def text(self) -> str:
        return decode(self.doc.read(self.start, self.end))[0]

    def cut(self, at: int, pattern: re.Pattern | None = None, window: int = 1 << 16) -> int:
        """Where to cut this piece at or after document offset `at`: at the end of the first
        match of `pattern` within `window` bytes (after a newline, say), else before the first
        byte that starts a character; self.end when nothing would be left after the cut."""
        at = max(self.start, min(at, self.end))
        if pattern is not None:
            m = pattern.search(self.doc.read(at, min(self.end, at + window)))
            if m and at + m.end() < self.end:
                return at + m.end()
        ahead = self.doc.read(at, min(self.end, at + 4))
        return at + next((i for i, b in enumerate(ahead) if _starts_char(b)), len(ahead))

    def head(self, n_bytes: int) -> Piece | None:
        """At most the first n_bytes, cut before a character start (None if nothing fits)."""
        if n_bytes >= self.size:
            return self
        cut = self.start + n_bytes
        while cut > self.start and not _starts_char(self.doc.read(cut, cut + 1)[0]):
            cut -= 1
        return Piece(self.doc, self.start, cut) if cut > self.start else None

    def parts(self, max_bytes: int) -> list[Piece]:
        """This piece in parts of about max_bytes, each ending at the end of a line of text
        (where pre-tokenizers break anyway) when one is near, so a document larger than memory
        can be encoded a part at a time with the tokens of the whole."""
        out, start = [], self.start
        while self.end - start > max_bytes:
            cut = Piece(self.doc, start, self.end).cut(start + max_bytes, LINE_END)
            if cut >= self.end:
                break
            out.append(Piece(self.doc, start, cut))
            start = cut
        out.append(Piece(self.doc, start, self.end))
        return out


class Texts(Sequence[str]):
    """Texts of document pieces in order, decoded when read; their sizes are known unread."""

    def __init__(self, pieces: list[Piece]):
        self.pieces = pieces

    @classmethod
    def of(cls, texts: Sequence[str]) -> Texts:
        """Texts as they are, or strings held in memory."""
        if isinstance(texts, Texts):
            return texts
        return cls([Piece(d, 0, d.size) for d in (MemoryDoc(str(i), t.encode()) for i, t in enumerate(texts))])

    def __len__(self) -> int:
        return len(self.pieces)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Texts(self.pieces[i])
        return self.pieces[i].text()

    def __iter__(self) -> Iterator[str]:
        return (p.text() for p in self.pieces)

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and not isinstance(other, str) and list(self) == list(other)

    __hash__ = None

    def __add__(self, other) -> list[str]:
        return list(self) + list(other)

    def __radd__(self, other) -> list[str]:
        return list(other) + list(self)

    def __repr__(self) -> str:
        return f"Texts({len(self)} pieces, {self.bytes:,} bytes)"

    @property
    def sizes(self) -> list[int]:
        return [p.size for p in self.pieces]

    @property
    def bytes(self) -> int:
        return sum(p.size for p in self.pieces)

    def head(self, n_bytes: int) -> Texts:
        """The leading pieces, whole, until n_bytes; the last one cut before a character."""
        out, left = [], n_bytes
        for p in self.pieces:
            if left <= 0:
                break
            cut = p.head(left)
            if cut is not None:
                out.append(cut)
            if cut is not p:
                break
            left -= p.size
        return Texts(out)

    def sample(self, n_bytes: int) -> Texts:
        """About n_bytes spread evenly through the texts: whole pieces taken at a steady rate
        in order (a prefix of a corpus sorted by name would see only its first folders), or
        where pieces are too large for that, the head of each in proportion."""
        total = self.bytes
        if total <= n_bytes:
            return self
        rate, owed, used, keep = n_bytes / total, 0.0, 0, []
        for p in self.pieces:
            owed += p.size * rate
            if owed >= p.size and used + p.size <= n_bytes:
                keep.append(p)
                owed -= p.size
                used += p.size
        if used >= n_bytes / 2:
            return Texts(keep)
        heads = (p.head(max(1, int(p.size * rate))) for p in self.pieces)
        return Texts([h for h in heads if h is not None])
