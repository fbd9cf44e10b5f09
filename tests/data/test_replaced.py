"""Text that is not what it should be is reported: invalid UTF-8 read as U+FFFD is counted in the
run record and printed by `workbench train`; a JSON Lines value that is not text is an error
naming the file, line, row and column, never coerced to a string."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from workbench.data import texts
from workbench.data.corpus import load_corpus
from workbench.data.sources import FilesData, JsonlData
from workbench.plumbing.errors import DataError
from workbench.record import read_record

CLEAN = (Path(sysconfig.get_paths()["stdlib"]) / "argparse.py").read_text()[:60_000]


def train_cli(folder: Path, data: dict) -> tuple[subprocess.CompletedProcess, Path]:
    spec = {"name": "reported", "model": {"depth": 1, "width": 32, "heads": 2, "context": 32}, "data": data,
            "train": {"budget": {"steps": 3}, "batch_tokens": 128, "eval_bytes": 2048, "completions": 0, "samples": 0}}
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    run = subprocess.run([sys.executable, "-m", "workbench", "train", "spec.yaml", "--out", "run", "--quiet"],
                         cwd=folder, capture_output=True, text=True, timeout=300)
    return run, folder / "run"


def test_replaced_characters_are_recorded_and_printed(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "good.txt").write_text(CLEAN)
    # Three invalid sequences: a lone continuation byte, a truncated 3-byte character, a stray 0xFF;
    # a U+FFFD written on purpose is text, not a replacement.
    (tmp_path / "c" / "bad.txt").write_bytes(CLEAN[:20_000].encode() + b" \x80 \xe2\x82 \xff \xef\xbf\xbd end\n")
    run, folder = train_cli(tmp_path, {"source": "files", "paths": ["c"]})
    assert run.returncode == 0, run.stderr[-2000:]
    assert read_record(folder).corpus.replaced_chars == 3
    assert "invalid UTF-8" in run.stdout and "3 sequences read as U+FFFD" in run.stdout


def test_clean_text_prints_no_replacement_line(tmp_path):
    (tmp_path / "clean.txt").write_text(CLEAN)
    run, folder = train_cli(tmp_path, {"source": "files", "paths": ["clean.txt"]})
    assert run.returncode == 0, run.stderr[-2000:]
    assert read_record(folder).corpus.replaced_chars == 0 and "invalid UTF-8" not in run.stdout


def test_the_count_does_not_depend_on_where_blocks_are_read(tmp_path, monkeypatch):
    """Files are scanned in blocks; a character or a U+FFFD split across two blocks is counted
    once, exactly as decoding the whole file counts it."""
    raw = ("é😀\ufffd".encode() + b"\xff\xc3" + b"ab\xe2\x82") * 50
    (tmp_path / "x.txt").write_bytes(raw)
    whole = texts.decode(raw)[1]
    assert whole == 150
    for block in (1, 2, 3, 5, 7, 64):
        monkeypatch.setattr(texts, "_BLOCK", block)
        (tmp_path / "x.txt").write_bytes(raw + b" " * block)   # a new stamp: scanned again
        c = load_corpus(FilesData(source="files", paths=[str(tmp_path / "x.txt")]))
        assert c.replaced_chars == whole, block


def test_replaced_characters_in_jsonl_are_counted(tmp_path):
    rows = b'{"text": "caf\xe9"}\n{"text": "fine"}\n{"text": "na\xefve"}\n'
    (tmp_path / "a.jsonl").write_bytes(rows)
    c = load_corpus(JsonlData(source="jsonl", paths=[str(tmp_path / "a.jsonl")]))
    assert c.replaced_chars == 2 and sorted(c.train + c.val) == ["caf\ufffd", "fine", "na\ufffdve"]


@pytest.mark.parametrize("value, what", [
    (1, "a number (1)"), (2.5, "a number (2.5)"), (True, "a boolean (true)"), (["x"], 'a list (["x"])'),
    ({"t": "x"}, "an object"),
])
def test_a_value_that_is_not_text_names_file_line_row_and_column(tmp_path, value, what):
    lines = [{"text": "first"}, {"other": 0, "text": "second"}, {}, {"text": value}]
    body = "\n".join("" if row == {} else json.dumps(row) for row in lines)   # a blank line is skipped
    (tmp_path / "rows.jsonl").write_text(body + "\n")
    with pytest.raises(DataError) as err:
        load_corpus(JsonlData(source="jsonl", paths=[str(tmp_path / "rows.jsonl")]))
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'rows.jsonl'}:4: row 2 has {what}")
    assert "column 'text' (data.column), not text" in message and "\n" not in message


def test_a_number_in_the_prompt_column_names_that_field(tmp_path):
    (tmp_path / "pairs.jsonl").write_text('{"q": "ask", "a": "answer"}\n{"q": 7, "a": "seven"}\n')
    with pytest.raises(DataError, match=r"pairs.jsonl:2: row 1 has a number \(7\) in column 'q' \(data.prompt\)"):
        load_corpus(JsonlData(source="jsonl", paths=[str(tmp_path / "pairs.jsonl")], column="a", prompt="q"))


def test_train_refuses_a_number_in_the_text_column_in_one_line(tmp_path):
    rows = [{"text": CLEAN[i:i + 2000]} for i in range(0, 40_000, 2000)] + [{"text": 404}]
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    run, folder = train_cli(tmp_path, {"source": "jsonl", "paths": ["rows.jsonl"]})
    assert run.returncode == 2 and "Traceback" not in run.stderr
    [line] = run.stderr.strip().splitlines()
    assert "rows.jsonl:21: row 20 has a number (404) in column 'text'" in line
    assert not folder.exists()
