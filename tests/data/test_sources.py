"""Every corpus source in SOURCES reads named documents; files, JSON Lines and Parquet sources
read what they should and name the path at fault; the standard library is the default corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import polars as pl
import pytest

from support import files_corpus as files, write_docs
from workbench.data.corpus import load_corpus
from workbench.data.sources import SOURCES, JsonlData, ParquetData, StdlibData
from workbench.plumbing.errors import DataError


def _jsonl(folder: Path) -> dict:
    (folder / "a.jsonl").write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(8)))
    return {"paths": [str(folder / "a.jsonl")]}


def _parquet(folder: Path) -> dict:
    pl.DataFrame({"text": [f"row {i}" for i in range(8)]}).write_parquet(folder / "a.parquet")
    return {"paths": [str(folder / "a.parquet")]}


def _files(folder: Path) -> dict:
    write_docs(folder / "docs", 8)
    return {"paths": [str(folder / "docs")]}


MATERIAL: dict[str, Callable[[Path], dict]] = {
    "python-stdlib": lambda folder: {"max_bytes": 50_000},
    "python-docstrings": lambda folder: {"max_bytes": 20_000},
    "files": _files,
    "jsonl": _jsonl,
    "parquet": _parquet,
    "synthetic": lambda folder: {"documents": 8, "doc_bytes": 64},
}
"""Fields (and files written for them) that make a small corpus of each source."""


@pytest.mark.parametrize("source", SOURCES)
def test_every_source_reads_a_split_corpus_of_named_documents(tmp_path, source):
    if source not in MATERIAL:
        pytest.fail(f"data source {source!r} has no test material: add it to MATERIAL")
    data = SOURCES[source].model_validate({"source": source, **MATERIAL[source](tmp_path)})
    read = data.read()
    names = [name for name, _ in read.docs]
    assert len(names) >= 2 and all(isinstance(name, str) and name for name in names)
    c = load_corpus(data)
    assert c.train and c.val and len(c.train) + len(c.val) <= len(names)
    assert load_corpus(data).fingerprint == c.fingerprint


# -------------------------------------------------------------------------------------- files


def test_files_folder_reads_text_recursively_and_skips_hidden_and_binary(tmp_path):
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "sub" / "b.py").write_text("print('béta')\r\n")
    (root / ".hidden").write_text("secret")
    (root / "image.bin").write_bytes(b"\x89PNG\0\0\x01")
    (root / "empty.txt").write_text("")
    c = files(root, val_fraction=0.5)
    assert sorted(c.train + c.val) == ["alpha\n", "print('béta')\r\n"]  # CRLF kept as written
    assert c.entropy_bits_per_byte is None and c.replaced_chars == 0


def test_files_glob_and_single_file(tmp_path):
    write_docs(tmp_path / "a", 3)
    (tmp_path / "a" / "notes.md").write_text("# notes\n")
    (tmp_path / "single.txt").write_text("just me\n")
    c = files(tmp_path / "a" / "*.txt", tmp_path / "single.txt")
    docs = sorted(c.train + c.val)
    assert len(docs) == 4 and "just me\n" in docs and "# notes\n" not in docs


def test_files_same_file_twice_is_one_document(tmp_path):
    (tmp_path / "x.txt").write_text("once\n")
    (tmp_path / "y.txt").write_text("other\n")
    c = files(tmp_path / "x.txt", tmp_path / "*.txt")
    assert sorted(c.train + c.val) == ["once\n", "other\n"]


def test_files_invalid_utf8_is_replaced_and_counted(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"ok \xff\xfe end")
    (tmp_path / "good.txt").write_text("fine")
    c = files(tmp_path)
    assert c.replaced_chars == 2
    assert "ok \ufffd\ufffd end" in c.train + c.val


@pytest.mark.parametrize("entry, message", [
    ("missing.txt", "no such file or folder"),
    ("*.nothing", "matches no files"),
    ("empty_dir", "holds no files"),
])
def test_files_errors_name_the_path(tmp_path, entry, message):
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match=message) as err:
        files(tmp_path / entry)
    assert entry in str(err.value) and "data.paths[0]" in str(err.value)
    assert "\n" not in str(err.value)


def test_files_binary_file_named_explicitly_is_an_error(tmp_path):
    (tmp_path / "blob.bin").write_bytes(b"\0\1\2")
    with pytest.raises(DataError, match="not a text file"):
        files(tmp_path / "blob.bin")


# ------------------------------------------------------------------------------ jsonl, parquet


def test_jsonl_one_document_per_line(tmp_path):
    rows = [{"text": f"row {i} ünïcode", "id": i} for i in range(20)]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    c = load_corpus(JsonlData(source="jsonl", paths=[str(tmp_path / "*.jsonl")]))
    assert sorted(c.train + c.val) == sorted(r["text"] for r in rows)


def test_jsonl_other_column(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"body": "one"}\n{"body": "two"}\n')
    c = load_corpus(JsonlData(source="jsonl", paths=[str(tmp_path / "a.jsonl")], column="body"))
    assert sorted(c.train + c.val) == ["one", "two"]


def test_jsonl_prompts_stay_with_their_responses_through_the_split(tmp_path):
    rows = [{"q": f"question {i}? ", "a": f"answer {i}"} for i in range(30)] + [{"q": "", "a": ""}]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    c = load_corpus(JsonlData(source="jsonl", paths=[str(tmp_path / "a.jsonl")], column="a", prompt="q"))
    pairs = c.pairs(c.train, c.train_prompts) + c.pairs(c.val, c.val_prompts)
    assert sorted(pairs) == sorted((r["q"], r["a"]) for r in rows[:-1])   # the empty row is dropped
    assert c.train_prompts and c.val_prompts


@pytest.mark.parametrize("content, message", [
    ('{"body": "x"}\n', "no column 'text'.*'body'"),
    ('{"text": 1}\n{"text": 2}\n', "row 0 has a number .* in column 'text'"),
    ('{"text": "a"}\n{"other": 1}\n', "row 1 has no string"),
    ('{"text": "a"}\n{"text": \n', "not readable as JSON Lines"),
])
def test_jsonl_errors(tmp_path, content, message):
    (tmp_path / "bad.jsonl").write_text(content)
    with pytest.raises(DataError, match=message) as err:
        load_corpus(JsonlData(source="jsonl", paths=[str(tmp_path / "bad.jsonl")]))
    assert "bad.jsonl" in str(err.value) and "\n" not in str(err.value)


def test_jsonl_folder_is_an_error(tmp_path):
    with pytest.raises(DataError, match="is a folder"):
        load_corpus(JsonlData(source="jsonl", paths=[str(tmp_path)]))


def test_parquet_one_document_per_row(tmp_path):
    texts = [f"parquet row {i} — ✓" for i in range(30)]
    pl.DataFrame({"id": range(30), "content": texts}).write_parquet(tmp_path / "a.parquet")
    c = load_corpus(ParquetData(source="parquet", paths=[str(tmp_path / "a.parquet")], column="content"))
    assert sorted(c.train + c.val) == sorted(texts)


def test_parquet_missing_and_non_string_columns(tmp_path):
    pl.DataFrame({"id": [1, 2], "text": ["a", "b"]}).write_parquet(tmp_path / "a.parquet")
    with pytest.raises(DataError, match="no column 'body'.*'id', 'text'"):
        load_corpus(ParquetData(source="parquet", paths=[str(tmp_path / "a.parquet")], column="body"))
    with pytest.raises(DataError, match="holds Int64"):
        load_corpus(ParquetData(source="parquet", paths=[str(tmp_path / "a.parquet")], column="id"))
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="not readable as Parquet"):
        load_corpus(ParquetData(source="parquet", paths=[str(tmp_path / "junk.parquet")]))


# ------------------------------------------------------------------------------------- stdlib


def test_stdlib_corpus_is_the_standard_library_without_tests():
    names = [name for name, _ in StdlibData().read().docs]
    assert len(names) > 500 and names == sorted(names)
    assert "os.py" in names and "json/decoder.py" in names
    for name in names:
        folders = name.split("/")[:-1]
        assert not {"test", "tests", "idle_test", "site-packages"} & set(folders), name
    c = load_corpus(StdlibData())
    total = sum(len(d.encode()) for d in c.train + c.val)
    assert total > 5_000_000 and len(c.train) > len(c.val) > 0
    assert c.replaced_chars == 0
