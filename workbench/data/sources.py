"""Corpus sources that read real text: the embedded standard library, its docstrings as
prompt/response pairs, plain-text files, JSON Lines and Parquet columns. Each source is one
schema section that reads itself; `SOURCES` names them all (with the synthetic source), and the
spec's `data` field accepts exactly these."""

from __future__ import annotations

import ast
import functools
import glob
import os
import sysconfig
from pathlib import Path
from typing import Callable, Literal

import polars as pl
from pydantic import Field

from workbench.data.corpus import Documents, Source
from workbench.data.synthetic import SyntheticData
from workbench.plumbing.errors import DataError


def _decode(raw: bytes) -> tuple[str, int]:
    """UTF-8 text and how many characters had to be replaced."""
    try:
        return raw.decode("utf-8"), 0
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        return text, text.count("\ufffd")


_SKIP_DIRS = {"test", "tests", "idle_test", "__pycache__"}


class StdlibData(Source):
    """The embedded default corpus: the running interpreter's standard-library source files
    (tests excluded), about 13 MB of real text on every machine."""

    source: Literal["python-stdlib"] = "python-stdlib"
    """Embedded default corpus."""

    def read(self) -> Documents:
        root = sysconfig.get_paths()["stdlib"]
        found = []
        for folder, subfolders, files in os.walk(root):
            # Prune while walking: site-packages alone can hold ten times the stdlib's files.
            subfolders[:] = [d for d in subfolders if d not in _SKIP_DIRS and not d.startswith("test_")
                             and not (folder == root and d in ("site-packages", "dist-packages"))]
            found += [os.path.join(folder, f) for f in files if f.endswith(".py")]
        docs, replaced = [], 0
        for rel in sorted(os.path.relpath(p, root).replace(os.sep, "/") for p in found):
            with open(os.path.join(root, rel), "rb") as f:
                text, bad = _decode(f.read())
            docs.append((rel, text))
            replaced += bad
        if not docs:
            raise DataError(f"data.source: no standard-library .py files found under {root}")
        return Documents(docs, replaced)


class DocstringData(Source):
    """Prompt/response pairs built from this machine's standard library: a function's `def`
    line(s) in, the first line of its docstring out (about 6,900 pairs, 0.6 MB). A pair is
    held out exactly when its file is held out of python-stdlib at the same val_fraction."""

    source: Literal["python-docstrings"]
    """Function signatures to docstring summaries."""

    def read(self) -> Documents:
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
    for rel, text in StdlibData().read().docs:
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


def _walk(folder: Path, base: Path) -> list[tuple[Path, str]]:
    """Files under a folder, sorted, hidden ones skipped; names relative to base."""
    out = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            out.append((path, path.relative_to(base).as_posix()))
    return out


def _is_glob(s: str) -> bool:
    return any(c in s for c in "*?[")


def _expand(paths: list[str], folders: bool) -> list[tuple[Path, str, bool]]:
    """Each entry of `paths` as (file, document name, named explicitly). Names are relative to
    the entry (a folder keeps its own name; a glob is relative to its fixed leading folders),
    so they do not change when the corpus is moved."""
    out: list[tuple[Path, str, bool]] = []
    seen: set[Path] = set()
    for i, entry in enumerate(paths):
        where = f"data.paths[{i}]"
        p = Path(entry)
        if _is_glob(entry):
            fixed = p.parts[: next(j for j, part in enumerate(p.parts) if _is_glob(part))]
            base = Path(*fixed) if fixed else Path(".")
            matches = [Path(m) for m in sorted(glob.glob(entry, recursive=True))]
            found: list[tuple[Path, str, bool]] = []
            for m in matches:
                if m.is_file():
                    found.append((m, m.relative_to(base).as_posix(), False))
                elif m.is_dir() and folders:
                    found += [(f, name, False) for f, name in _walk(m, base)]
            if not found:
                raise DataError(f"{where}: the pattern {entry} matches no files")
        elif p.is_dir():
            if not folders:
                raise DataError(f"{where}: {entry} is a folder; name files or a glob such as "
                                f"{entry}/*.*")
            found = [(f, name, False) for f, name in _walk(p, p.parent)]
            if not found:
                raise DataError(f"{where}: the folder {entry} holds no files")
        elif p.is_file():
            found = [(p, p.name, True)]
        else:
            raise DataError(f"{where}: {entry}: no such file or folder")
        for f, name, explicit in found:
            if f.resolve() not in seen:
                seen.add(f.resolve())
                out.append((f, name, explicit))
    return out


class FilesData(Source):
    """Plain-text files: each file is one document."""

    source: Literal["files"]
    """Plain-text files."""
    paths: list[str] = Field(min_length=1)
    """Files, folders (read recursively) or glob patterns, relative to the spec file."""

    def read(self) -> Documents:
        docs, replaced = [], 0
        for path, name, explicit in _expand(self.paths, folders=True):
            raw = path.read_bytes()
            if b"\0" in raw[:8192]:  # binary: images, archives, bytecode found in folders
                if explicit:
                    raise DataError(f"self.paths: {path} is not a text file (it contains NUL bytes)")
                continue
            text, bad = _decode(raw)
            docs.append((name, text))
            replaced += bad
        return Documents(docs, replaced)


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


def _column(frame_of: Callable[[Path], pl.DataFrame], data: JsonlData | ParquetData,
            what: str) -> Documents:
    """One document per row of the text column of each file; with a prompt column, the
    document is prompt + response and the prompt's length is kept."""
    docs, prompts = [], [] if data.prompt else None
    for path, name, _ in _expand(data.paths, folders=False):
        try:
            frame = frame_of(path)
        except (pl.exceptions.PolarsError, OSError) as e:
            raise DataError(f"{path}: not readable as {what}: {str(e).splitlines()[0]}") from None
        texts = _strings(frame, path, data.column, "data.column")
        if data.prompt:
            for row, (prompt, response) in enumerate(zip(_strings(frame, path, data.prompt, "data.prompt"), texts)):
                prompts.append(len(prompt))
                docs.append((f"{name}:{row}", prompt + response))
        else:
            docs += [(f"{name}:{row}", text) for row, text in enumerate(texts)]
    return Documents(docs, prompts=prompts)


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

    def read(self) -> Documents:
        # Infer the schema from every line, so a non-string value late in a file is not missed.
        return _column(lambda p: pl.read_ndjson(p, infer_schema_length=None), self, "JSON Lines")


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

    def read(self) -> Documents:
        def frame_of(path: Path) -> pl.DataFrame:
            names = list(pl.read_parquet_schema(path))
            wanted = [c for c in (self.prompt, self.column) if c]
            for column, field_name in zip(wanted, ("self.prompt", "self.column")[-len(wanted):]):
                if column not in names:  # say so before reading any data
                    raise _no_column(path, column, names, field_name)
            return pl.read_parquet(path, columns=wanted)
        return _column(frame_of, self, "Parquet")

SOURCES: dict[str, type[Source]] = {
    "python-stdlib": StdlibData,
    "python-docstrings": DocstringData,
    "files": FilesData,
    "jsonl": JsonlData,
    "parquet": ParquetData,
    "synthetic": SyntheticData,
}
"""Every corpus source by its `source` name: the spec's `data` field is a union of these."""
