"""The held-out split of one's own corpus: by document, by tail, by named files; a single text
file trains; a side too small is one clear error before any training; the record says which
split was used; a default split leaves spec digests and corpus keys as they were."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from support import tiny_spec
from workbench.data.corpus import load_corpus
from workbench.data.sources import FilesData, JsonlData, StdlibData
from workbench.plumbing.errors import DataError, SpecError
from workbench.record import read_record
from workbench.spec import Spec
from workbench.specfile import load_spec
from workbench.train.loop import train

MODEL = {"depth": 1, "width": 32, "heads": 2, "context": 32}
TRAIN = {"budget": {"steps": 4}, "batch_tokens": 128, "eval_bytes": 4096, "completions": 0, "samples": 0}


def prose(n_bytes: int, seed: int = 0) -> str:
    """Real text to train on: standard-library source, from a different file per seed."""
    root = Path(sysconfig.get_paths()["stdlib"])
    names = ["argparse.py", "inspect.py", "typing.py", "pathlib.py", "dataclasses.py"]
    text = (root / names[seed % len(names)]).read_text()
    return (text * (n_bytes // len(text) + 1))[:n_bytes]


def write_spec(folder: Path, data: dict, name: str = "own", **over) -> Path:
    spec = {"name": name, "model": MODEL, "data": data, "train": {**TRAIN, **over}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def files(*paths: Path, **kw) -> FilesData:
    return FilesData(source="files", paths=[str(p) for p in paths], **kw)


# ------------------------------------------------------------------------- one file trains


def test_one_text_file_trains_with_its_tail_held_out(tmp_path):
    """The most common case: one 200 KB .txt file. It used to leave the held-out side empty and
    die at the first evaluation."""
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "input.txt").write_text(prose(200_000))
    spec = write_spec(tmp_path, {"source": "files", "paths": ["corpus/input.txt"]})
    run = cli("train", str(spec), "--out", str(tmp_path / "run"), "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "held out (split by tail)" in run.stdout and "one document" in run.stdout
    record = read_record(tmp_path / "run")
    assert record.status == "completed" and 0 < record.val_bpb < 16
    c = record.corpus
    assert (c.split, c.train_pieces, c.val_pieces) == ("tail", 1, 1)
    assert c.train_bytes + c.val_bytes == 200_000
    assert abs(c.val_bytes - 10_000) < 200            # 5%, moved to a line start
    assert "one document" in c.chosen


def test_a_latin1_file_alone_trains_and_its_replacements_are_counted(tmp_path):
    text = "Café crème, naïve façade; Ørsted à la mode. " * 2000
    (tmp_path / "old.txt").write_bytes(text.encode("latin-1"))
    spec = write_spec(tmp_path, {"source": "files", "paths": ["old.txt"]})
    run = cli("train", str(spec), "--out", str(tmp_path / "run"), "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    record = read_record(tmp_path / "run")
    bad = sum(1 for ch in text if ord(ch) > 127)       # each lone latin-1 byte is one U+FFFD
    assert record.corpus.replaced_chars == bad and record.corpus.split == "tail"
    assert f"{bad:,} sequences read as U+FFFD" in run.stdout


# ------------------------------------------------------------------------------ by tail


def test_tail_of_each_document_holds_out_its_last_fraction_from_a_line_start(tmp_path):
    texts = [prose(30_000, seed) for seed in range(3)]
    for i, t in enumerate(texts):
        (tmp_path / f"d{i}.txt").write_text(t)
    c = load_corpus(files(tmp_path, val_fraction=0.1, split={"by": "tail"}))
    assert len(c.train) == len(c.val) == 3
    for head, tail, whole in zip(c.train, c.val, texts):
        assert head + tail == whole
        assert head.endswith("\n") and 0.09 < len(tail) / len(whole) < 0.11
    assert (c.stats.split, c.stats.chosen) == ("tail", "spec")


def test_tail_of_the_corpus_holds_out_its_last_documents(tmp_path):
    texts = [prose(10_000, seed) for seed in range(5)]
    for i, t in enumerate(texts):
        (tmp_path / f"d{i}.txt").write_text(t)
    c = load_corpus(files(tmp_path, val_fraction=0.3, split={"by": "tail", "of": "corpus"}))
    # 30% of 50,000 bytes: the last document, and the last half of the one before, at a line start
    assert list(c.train[:3]) == texts[:3] and list(c.val)[-1] == texts[4]
    assert c.train[3] + c.val[0] == texts[3] and c.train[3].endswith("\n")
    assert 14_900 < c.stats.val_bytes < 15_100 and c.stats.split == "tail of corpus"


def test_tail_never_cuts_inside_a_character(tmp_path):
    (tmp_path / "emoji.txt").write_text("😀" * 1000)        # no newline: cut at a character
    c = load_corpus(files(tmp_path / "emoji.txt"))
    assert c.train[0] + c.val[0] == "😀" * 1000 and set(c.val[0]) == {"😀"}


def test_a_corpus_of_one_document_defaults_to_tail_for_every_source(tmp_path):
    (tmp_path / "one.jsonl").write_text(json.dumps({"text": prose(5_000)}) + "\n")
    c = load_corpus(JsonlData(source="jsonl", paths=[str(tmp_path / "one.jsonl")]))
    assert c.stats.split == "tail" and c.train[0] + c.val[0] == prose(5_000)


# ------------------------------------------------------------------------------ val_paths


def test_val_paths_hold_out_named_files_relative_to_the_spec_and_keep_them_out_of_training(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.txt").write_text(prose(40_000, 1))
    (data / "valid.txt").write_text(prose(8_000, 2))
    (data / "notes.txt").write_text(prose(5_000, 3))
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    path = write_spec(spec_dir, {"source": "files", "paths": ["../data"],
                                 "split": {"val_paths": ["../data/valid.txt"]}})
    spec = load_spec(path)
    assert spec.data.split.val_paths == [str(data / "valid.txt")]
    c = load_corpus(spec.data)
    assert list(c.val) == [prose(8_000, 2)] and sorted(c.train) == sorted([prose(40_000, 1), prose(5_000, 3)])
    record = train(spec, tmp_path / "run")
    assert record.status == "completed" and record.corpus.split == "val_paths"
    assert record.corpus.val_bytes == 8_000 and record.corpus.val_fraction is None


def test_val_paths_need_a_source_that_reads_files():
    with pytest.raises(DataError, match=r"data.split.val_paths: the python-stdlib source reads no files"):
        load_corpus(StdlibData(split={"val_paths": ["x.txt"]}))


def test_val_paths_errors_name_the_field(tmp_path):
    (tmp_path / "a.txt").write_text("some text\n")
    with pytest.raises(DataError, match=r"data.split.val_paths\[0\]: .*missing.txt: no such file"):
        load_corpus(files(tmp_path / "a.txt", split={"val_paths": [str(tmp_path / "missing.txt")]}))


# ------------------------------------------------------------------------- clear errors


def test_by_document_with_one_document_says_what_to_do(tmp_path):
    (tmp_path / "one.txt").write_text(prose(5_000))
    with pytest.raises(DataError) as err:
        load_corpus(files(tmp_path / "one.txt", split={"by": "document"}))
    message = str(err.value)
    assert "needs two or more documents" in message and "by: tail" in message and "\n" not in message


def test_an_empty_held_out_side_is_one_error_naming_sizes_and_fix(tmp_path):
    (tmp_path / "a.txt").write_text(prose(5_000))
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError) as err:
        load_corpus(files(tmp_path / "a.txt", split={"val_paths": [str(tmp_path / "empty.txt")]}))
    assert "empty" in str(err.value)
    (tmp_path / "x.txt").write_text("a")                 # one byte cannot be cut in two
    with pytest.raises(DataError, match=r"nothing is held out .*by tail.*raise data.val_fraction"):
        load_corpus(files(tmp_path / "x.txt", split={"by": "tail"}))


def test_a_held_out_side_too_small_to_evaluate_fails_before_any_training(tmp_path):
    """4 KB of text with 1% held out: 40 bytes, fewer tokens than one window of 64. One line,
    exit 2, the sizes and the fix, and no run folder: nothing was trained."""
    (tmp_path / "small.txt").write_text(prose(4_000))
    spec = write_spec(tmp_path, {"source": "files", "paths": ["small.txt"], "val_fraction": 0.01})
    run = cli("train", str(spec), "--set", "model.context=64", "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    [line] = run.stderr.strip().splitlines()
    assert "data.split: the held-out side gives" in line and "fewer than one evaluation window" in line
    assert re.search(r"split by tail: 3,9\d\d bytes to train on, \d\d held out", line)
    assert "raise data.val_fraction" in line
    assert not (tmp_path / "run").exists()


def test_a_fine_tuning_corpus_too_small_fails_before_pretraining(tmp_path):
    (tmp_path / "ft.txt").write_text(prose(2_000))
    spec = tiny_spec().model_dump()
    spec["finetune"] = {"data": {"source": "files", "paths": [str(tmp_path / "ft.txt")], "val_fraction": 0.01},
                        "budget": {"steps": 2}}
    with pytest.raises(DataError, match=r"^finetune.data.split: the held-out side"):
        train(Spec.model_validate(spec), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_by_and_val_paths_together_are_a_spec_error_at_their_line(tmp_path):
    path = write_spec(tmp_path, {"source": "files", "paths": ["a.txt"],
                                 "split": {"by": "tail", "val_paths": ["b.txt"]}})
    with pytest.raises(SpecError) as err:
        load_spec(path)
    [issue] = err.value.issues
    assert issue.field == "data.split" and "not both" in issue.message and issue.line is not None


# ------------------------------------------------------------------- digests and defaults


def test_a_default_split_leaves_the_spec_digest_and_the_corpus_key_as_they_were(tmp_path):
    plain = tiny_spec()
    explicit = tiny_spec(**{"data.split": {}})
    assert plain.digest() == explicit.digest()
    assert tiny_spec(**{"data.split": {"by": "tail"}}).digest() != plain.digest()
    for i in range(4):
        (tmp_path / f"d{i}.txt").write_text(prose(3_000, i))
    default = load_corpus(files(tmp_path))
    assert default.stats.split == "document" and "4 documents" in default.stats.chosen
    by_document = load_corpus(files(tmp_path, split={"by": "document"}))
    assert list(by_document.val) == list(default.val)   # the same documents held out...
    assert by_document.fingerprint == default.fingerprint    # ...so the same caches serve both
    by_tail = load_corpus(files(tmp_path, split={"by": "tail"}))
    assert by_tail.fingerprint != default.fingerprint
