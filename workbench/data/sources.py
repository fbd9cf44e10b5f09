"""Corpus sources that read real text: the embedded standard library, its docstrings as
prompt/response pairs, plain-text files, JSON Lines and Parquet columns. Each source is one
schema section that reads itself; `SOURCES` names them all (with the synthetic source), and the
spec's `data` field accepts exactly these."""

from __future__ import annotations

import ast
import functools
import glob
import hashlib
import json
import os
import sysconfig
from pathlib import Path
from typing import Callable, Literal

import polars as pl
from pydantic import Field

from workbench.data.corpus import Documents, Source
from workbench.data.synthetic import SyntheticData
from workbench.data.texts import FileDoc, decode, scan
from workbench.plumbing.errors import DataError


def _index_name(kind: str, entries: list[str]) -> str:
    """The file index of one list of corpus entries (see texts.scan)."""
    return f"{kind}-{hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:20]}"


_SKIP_DIRS = {"test", "tests", "idle_test", "__pycache__"}


class StdlibData(Source):
    """The embedded default corpus: the running interpreter's standard-library source files
    (tests excluded), about 13 MB of real text on every machine."""

    source: Literal["python-stdlib"] = "python-stdlib"
    """Embedded default corpus."""

    def read(self, paths=None, field_name="data.paths", exclude=frozenset()) -> Documents:
        root = sysconfig.get_paths()["stdlib"]
        found = []
        for folder, subfolders, files in os.walk(root):
            # Prune while walking: site-packages alone can hold ten times the stdlib's files.
            subfolders[:] = [d for d in subfolders if d not in _SKIP_DIRS and not d.startswith("test_")
                             and not (folder == root and d in ("site-packages", "dist-packages"))]
            found += [os.path.join(folder, f) for f in files if f.endswith(".py")]
        names = sorted(os.path.relpath(p, root).replace(os.sep, "/") for p in found)
        if not names:
            raise DataError(f"data.source: no standard-library .py files found under {root}")
        real = os.path.realpath(root)
        docs = scan([(os.path.join(root, rel), rel, os.path.join(real, rel)) for rel in names],
                    _index_name("stdlib", [root]))
        return Documents(docs, sum(d.replaced for d in docs))


class DocstringData(Source):
    """Prompt/response pairs built from this machine's standard library: a function's `def`
    line(s) in, the first line of its docstring out (about 6,900 pairs, 0.6 MB). A pair is
    held out exactly when its file is held out of python-stdlib at the same val_fraction."""

    source: Literal["python-docstrings"]
    """Function signatures to docstring summaries."""

    def read(self, paths=None, field_name="data.paths", exclude=frozenset()) -> Documents:
        docs, prompts = [], []
        for rel, header, summary in _docstring_pairs(sysconfig.get_paths()["stdlib"]):
            docs.append((rel, header + summary))
            prompts.append(len(header))
        return Documents(docs, prompts=prompts)


@functools.lru_cache(maxsize=2)
def _docstring_pairs(root: str) -> list[tuple[str, str, str]]:
    """(file, prompt, response) for every documented function of the standard library: the
    prompt is the `def` line(s) and the opening quotes, the response the docstring's first line
    (then a newline; no closing quotes, which every model would get right for free). Named by file, so a pair is held out exactly when its file is held
    out of the python-stdlib corpus (at the same val_fraction): no answer leaks from pretraining."""
    out = []
    for doc in StdlibData().read().docs:
        rel, text = doc.name, decode(doc.read())[0]
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        lines = text.splitlines(keepends=True)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            doc = ast.get_docstring(node)
            summary = doc.strip().split("\n", 1)[0].strip() if doc else ""
            if not summary:
                continue
            first = node.body[0]
            header = "".join(lines[node.lineno - 1:first.lineno - 1])
            indent = lines[first.lineno - 1][:first.col_offset]
            out.append((rel, f'{header}{indent}"""', f"{summary}\n"))
    return out


def _walk(folder: Path, base: Path) -> list[tuple[str, str, bool]]:
    """Files under a folder in path order, hidden ones skipped, as (file, name relative to base,
    is a symbolic link). Links to folders are not followed. Directory entries say what they
    are without a system call per file, which counts in a corpus of many files."""
    out: list[tuple[str, str, bool]] = []

    def visit(path: str, rel: str) -> None:
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            if e.name.startswith("."):
                continue
            name = f"{rel}/{e.name}" if rel else e.name
            if e.is_dir(follow_symlinks=False):
                visit(e.path, name)
            elif e.is_file():
                out.append((e.path, name, e.is_symlink()))

    top = os.path.relpath(folder, base).replace(os.sep, "/")
    visit(str(folder), "" if top == "." else top)
    return out


def _is_glob(s: str) -> bool:
    return any(c in s for c in "*?[")


def _expand(paths: list[str], folders: bool, field_name: str = "data.paths") -> list[tuple[str, str, bool, str]]:
    """Each entry of `paths` as (file, document name, named explicitly, real path). Names are
    relative to the entry (a folder keeps its own name; a glob is relative to its fixed leading
    folders), so they do not change when the corpus is moved. A file reached twice is kept once."""
    out: list[tuple[str, str, bool, str]] = []
    seen: set[str] = set()
    real_dirs: dict[str, str] = {}

    def real(f: str, link: bool) -> str:
        # One realpath per folder rather than per file: each costs a system call per component.
        if link:
            return os.path.realpath(f)
        head, tail = os.path.split(os.path.abspath(f))
        if head not in real_dirs:
            real_dirs[head] = os.path.realpath(head)
        return os.path.join(real_dirs[head], tail)

    for i, entry in enumerate(paths):
        where = f"{field_name}[{i}]"
        p = Path(entry)
        if _is_glob(entry):
            fixed = p.parts[: next(j for j, part in enumerate(p.parts) if _is_glob(part))]
            base = Path(*fixed) if fixed else Path(".")
            matches = [Path(m) for m in sorted(glob.glob(entry, recursive=True))]
            found: list[tuple[str, str, bool, bool]] = []
            for m in matches:
                if m.is_file():
                    found.append((str(m), m.relative_to(base).as_posix(), False, m.is_symlink()))
                elif m.is_dir() and folders:
                    found += [(f, name, False, link) for f, name, link in _walk(m, base)]
            if not found:
                raise DataError(f"{where}: the pattern {entry} matches no files")
        elif p.is_dir():
            if not folders:
                raise DataError(f"{where}: {entry} is a folder; name files or a glob such as "
                                f"{entry}/*.*")
            found = [(f, name, False, link) for f, name, link in _walk(p, p.parent)]
            if not found:
                raise DataError(f"{where}: the folder {entry} holds no files")
        elif p.is_file():
            found = [(str(p), p.name, True, p.is_symlink())]
        else:
            raise DataError(f"{where}: {entry}: no such file or folder")
        for f, name, explicit, link in found:
            key = real(f, link)
            if key not in seen:
                seen.add(key)
                out.append((f, name, explicit, key))
    return out


class FilesData(Source):
    """Plain-text files: each file is one document."""

    source: Literal["files"]
    """Plain-text files."""
    paths: list[str] = Field(min_length=1)
    """Files, folders (read recursively) or glob patterns, relative to the spec file."""

    def read(self, paths: list[str] | None = None, field_name: str = "data.paths",
             exclude: frozenset[str] = frozenset()) -> Documents:
        paths = self.paths if paths is None else paths
        found = [f for f in _expand(paths, True, field_name) if f[3] not in exclude]
        explicit = {f for f, _, e, _ in found if e}
        docs: list[FileDoc] = []
        for doc in scan([(f, name, key) for f, name, _, key in found], _index_name("files", paths)):
            if doc.binary:  # images, archives, bytecode found in folders
                if doc.path in explicit:
                    raise DataError(f"{field_name}: {doc.path} is not a text file (it contains NUL bytes)")
                continue
            docs.append(doc)
        return Documents(docs, sum(d.replaced for d in docs), files={key for *_, key in found})


def _no_column(path: Path, column: str, columns: list[str], field_name: str = "data.column") -> DataError:
    return DataError(f"{path}: no column {column!r} ({field_name}); it has "
                     f"{', '.join(map(repr, columns)) or 'no columns'}")


def _strings(frame: pl.DataFrame, path: Path, column: str, field_name: str) -> list[str]:
    if column not in frame.columns:
        raise _no_column(path, column, frame.columns, field_name)
    col = frame.get_column(column)
    if isinstance(col.dtype, (pl.Categorical, pl.Enum)):
        col = col.cast(pl.String)
    if col.dtype != pl.String:
        raise DataError(f"{path}: column {column!r} holds {col.dtype}, not strings")
    if col.null_count():
        row = col.is_null().arg_max()
        raise DataError(f"{path}: row {row} has no string in column {column!r}")
    return col.to_list()


def _rows(data: JsonlData | ParquetData, columns_of: Callable[[Path], tuple[dict[str, list[str]], int]],
          paths: list[str] | None, field_name: str, exclude: frozenset[str]) -> Documents:
    """One document per row of the text column of each file; with a prompt column, the
    document is prompt + response and the prompt's length is kept."""
    docs, prompts, replaced, files = [], [] if data.prompt else None, 0, set()
    for file, name, _, key in _expand(data.paths if paths is None else paths, False, field_name):
        if key in exclude:
            continue
        files.add(key)
        path = Path(file)
        columns, bad = columns_of(path)
        replaced += bad
        texts = columns[data.column]
        if data.prompt:
            for row, (prompt, response) in enumerate(zip(columns[data.prompt], texts)):
                prompts.append(len(prompt))
                docs.append((f"{name}:{row}", prompt + response))
        else:
            docs += [(f"{name}:{row}", text) for row, text in enumerate(texts)]
    return Documents(docs, replaced, prompts=prompts, files=files)


_MISSING = object()


def _json_columns(path: Path, wanted: list[tuple[str, str]]) -> tuple[dict[str, list[str]], int]:
    """The wanted (column, field name) string columns of a JSON Lines file, and its count of
    invalid UTF-8 sequences. Read line by line, so a value that is not text (a number, say) is an
    error naming its line, row and column rather than a string polars would make of it."""
    try:
        text, replaced = decode(path.read_bytes())
    except OSError as e:
        raise DataError(f"{path}: not readable as JSON Lines: {e.strerror}") from None
    out: dict[str, list[str]] = {c: [] for c, _ in wanted}
    first_keys: list[str] | None = None
    missing: dict[str, tuple[int, int]] = {}       # column -> first (line, row) without it
    row = 0
    for line_no, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{line_no}: not readable as JSON Lines: {e.msg}") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{line_no}: not readable as JSON Lines: expected an object, "
                            f"got {type(obj).__name__}")
        first_keys = list(obj) if first_keys is None else first_keys
        for column, field_name in wanted:
            value = obj.get(column, _MISSING)
            if isinstance(value, str):
                out[column].append(value)
                continue
            if value is _MISSING or value is None:
                missing.setdefault(column, (line_no, row))
                continue
            what = {bool: "a boolean", int: "a number", float: "a number", list: "a list",
                    dict: "an object"}[type(value)]
            raise DataError(f"{path}:{line_no}: row {row} has {what} ({json.dumps(value)[:40]}) in "
                            f"column {column!r} ({field_name}), not text")
        row += 1
    for column, field_name in wanted:
        if column in missing:
            if not out[column] and column not in (first_keys or []):
                raise _no_column(path, column, first_keys or [], field_name)
            line_no, at = missing[column]
            raise DataError(f"{path}:{line_no}: row {at} has no string in column {column!r} ({field_name})")
    return out, replaced


class JsonlData(Source):
    """JSON Lines files: each line's text column is one document."""

    source: Literal["jsonl"]
    """JSON Lines files."""
    paths: list[str] = Field(min_length=1)
    """Files or glob patterns, relative to the spec file."""
    column: str = "text"
    """Field holding the text (with `prompt`: the response)."""
    prompt: str | None = None
    """Field holding a prompt: each row is then a prompt/response pair (supervised instruction
    tuning), trained and scored on the response tokens only."""

    def read(self, paths: list[str] | None = None, field_name: str = "data.paths",
             exclude: frozenset[str] = frozenset()) -> Documents:
        wanted = [(c, f) for c, f in ((self.prompt, "data.prompt"), (self.column, "data.column")) if c]
        return _rows(self, lambda p: _json_columns(p, wanted), paths, field_name, exclude)


class ParquetData(Source):
    """Parquet files: each row's text column is one document."""

    source: Literal["parquet"]
    """Parquet files."""
    paths: list[str] = Field(min_length=1)
    """Files or glob patterns, relative to the spec file."""
    column: str = "text"
    """Column holding the text (with `prompt`: the response)."""
    prompt: str | None = None
    """Column holding a prompt: each row is then a prompt/response pair (supervised instruction
    tuning), trained and scored on the response tokens only."""

    def read(self, paths: list[str] | None = None, field_name: str = "data.paths",
             exclude: frozenset[str] = frozenset()) -> Documents:
        wanted = [(c, f) for c, f in ((self.prompt, "data.prompt"), (self.column, "data.column")) if c]

        def columns_of(path: Path) -> tuple[dict[str, list[str]], int]:
            try:
                names = list(pl.read_parquet_schema(path))
                for column, name in wanted:
                    if column not in names:  # say so before reading any data
                        raise _no_column(path, column, names, name)
                frame = pl.read_parquet(path, columns=[c for c, _ in wanted])
            except (pl.exceptions.PolarsError, OSError) as e:
                raise DataError(f"{path}: not readable as Parquet: {str(e).splitlines()[0]}") from None
            return {c: _strings(frame, path, c, name) for c, name in wanted}, 0
        return _rows(self, columns_of, paths, field_name, exclude)

SOURCES: dict[str, type[Source]] = {
    "python-stdlib": StdlibData,
    "python-docstrings": DocstringData,
    "files": FilesData,
    "jsonl": JsonlData,
    "parquet": ParquetData,
    "synthetic": SyntheticData,
}
"""Every corpus source by its `source` name: the spec's `data` field is a union of these."""
