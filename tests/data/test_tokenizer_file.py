"""Tokenizers one already has: `tokenizer: {kind: file, path: ...}` reads a Hugging Face
`tokenizers` JSON file, or a run folder's tokenizer.json, relative to the spec file; the record
keeps its hash and statistics; a file that cannot be used is one clear error."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from workbench.data.tokenizer import TextTokenizer, get_tokenizer
from workbench.plumbing.errors import DataError, SpecError
from workbench.specfile import load_spec
from workbench.train.loop import train

SAMPLE = "def greet(name):\n    return f'hello {name}, naïve café 😀'\n"


def training_text() -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return [(root / name).read_text() for name in ("argparse.py", "inspect.py", "typing.py")]


def hf_tokenizer(path: Path, eos: str = "<|endoftext|>", size: int = 700) -> Path:
    """A byte-level BPE trained and saved with the tokenizers library alone, as one would
    have it from elsewhere."""
    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=[eos, "<pad>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator(training_text(), trainer)
    hf.save(str(path))
    return path


def write_spec(folder: Path, tokenizer: dict, name: str = "from-file") -> Path:
    spec = {"name": name, "model": {"depth": 1, "width": 32, "heads": 2, "context": 32},
            "tokenizer": tokenizer, "data": {"source": "python-stdlib", "max_bytes": 200_000},
            "train": {"budget": {"steps": 4}, "batch_tokens": 128, "eval_bytes": 4096,
                      "completions": 0, "samples": 0}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_a_tokenizers_file_trains_a_run_and_is_recorded(tmp_path):
    (tmp_path / "tok").mkdir()
    file = hf_tokenizer(tmp_path / "tok" / "tokenizer.json")
    (tmp_path / "specs").mkdir()
    spec = load_spec(write_spec(tmp_path / "specs", {"kind": "file", "path": "../tok/tokenizer.json"}))
    hf = Tokenizer.from_file(str(file))
    assert spec.tokenizer.path == str(file) and spec.tokenizer.vocab_size == hf.get_vocab_size() == 700

    record = train(spec, tmp_path / "run")
    assert record.status == "completed" and record.val_bpb is not None
    t = record.tokenizer
    assert (t.kind, t.vocab_size, t.file, t.roundtrip_rate) == ("file", 700, str(file), 1.0)
    assert 1.5 < t.bytes_per_token < 6
    ours = get_tokenizer(spec.tokenizer, None)
    assert t.digest == ours.digest == hashlib.sha256(f"file\n{ours._hf.to_str()}".encode()).hexdigest()
    # The same ids as the library gives, end-of-text from the file.
    assert ours.encode(SAMPLE) == hf.encode(SAMPLE, add_special_tokens=False).ids
    assert ours.eos_id == hf.token_to_id("<|endoftext|>")
    # The run folder keeps its own copy; its spec builds the model without the original file.
    file.unlink()
    back = subprocess.run([sys.executable, "-m", "workbench", "sample", str(tmp_path / "run"),
                           "--prompt", "def ", "--tokens", "5"], capture_output=True, text=True, timeout=300)
    assert back.returncode == 0, back.stderr[-2000:]


def test_a_run_folders_tokenizer_is_read_as_it_was_trained(tmp_path):
    """Run folders save the workbench's own wrapper around the library's JSON; both are read."""
    first = write_spec(tmp_path, {"kind": "bpe", "vocab_size": 600}, name="first")
    record = train(load_spec(first), tmp_path / "first-run")
    again = load_spec(write_spec(tmp_path, {"kind": "file", "path": "first-run/tokenizer.json"}, name="again"))
    assert again.tokenizer.vocab_size == record.tokenizer.vocab_size == 600
    reused = get_tokenizer(again.tokenizer, None)
    trained = TextTokenizer.load(tmp_path / "first-run" / "tokenizer.json")
    assert reused.encode(SAMPLE) == trained.encode(SAMPLE) and reused.eos_id == trained.eos_id
    second = train(again, tmp_path / "second-run")
    assert second.tokenizer.kind == "file" and second.tokenizer.bytes_per_token == record.tokenizer.bytes_per_token


def test_another_end_of_text_name_is_used(tmp_path):
    file = hf_tokenizer(tmp_path / "s.json", eos="</s>", size=600)
    spec = load_spec(write_spec(tmp_path, {"kind": "file", "path": "s.json"}))
    tok = get_tokenizer(spec.tokenizer, None)
    assert tok.eos == "</s>" and tok.eos_id == Tokenizer.from_file(str(file)).token_to_id("</s>")
    assert "</s>" not in [tok.decode([i]) for i in tok.encode("a </s> in text")]   # text stays text


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("{not json", "not a tokenizers JSON file"),
    ('{"model": {"type": "Nonsense"}}', "not a tokenizers JSON file"),
    ("eos", "no end-of-text token to separate documents: expected a special token <|endoftext|> or </s>"),
])
def test_a_file_that_cannot_be_used_is_one_line_at_its_field(tmp_path, content, message):
    if content == "eos":
        hf_tokenizer(tmp_path / "tok.json", eos="[SEP]", size=600)
    elif content is not None:
        (tmp_path / "tok.json").write_text(content)
    path = write_spec(tmp_path, {"kind": "file", "path": "tok.json"})
    with pytest.raises(SpecError) as err:
        load_spec(path)
    [issue] = err.value.issues
    line = 1 + next(i for i, text in enumerate(path.read_text().splitlines()) if text.strip().startswith("path:"))
    assert issue.field == "tokenizer.path" and issue.line == line and message in issue.message
    assert str(tmp_path / "tok.json") in issue.message
    run = subprocess.run([sys.executable, "-m", "workbench", "validate", str(path)], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 1 and "Traceback" not in run.stderr and message in run.stderr


def test_file_fields_belong_to_the_file_kind(tmp_path):
    file = hf_tokenizer(tmp_path / "tok.json", size=600)
    cases = [({"kind": "file"}, "tokenizer.path", "needs a path"),
             ({"kind": "bpe", "vocab_size": 600, "path": str(file)}, "tokenizer.path", "is for kind file only"),
             ({"kind": "file", "path": str(file), "train_bytes": 1000}, "tokenizer.train_bytes", "not trained"),
             ({"kind": "file", "path": str(file), "vocab_size": 512}, "tokenizer.vocab_size", "has 600 tokens")]
    for tokenizer, field, message in cases:
        with pytest.raises(SpecError) as err:
            load_spec(write_spec(tmp_path, tokenizer))
        assert any(i.field == field and message in i.message for i in err.value.issues), err.value


def test_a_file_changed_since_the_spec_was_resolved_is_refused_at_training(tmp_path):
    file = hf_tokenizer(tmp_path / "tok.json", size=600)
    spec = load_spec(write_spec(tmp_path, {"kind": "file", "path": "tok.json"}))
    hf_tokenizer(file, size=650)
    with pytest.raises(DataError, match=r"tok.json has 650 tokens, but tokenizer.vocab_size is 600"):
        get_tokenizer(spec.tokenizer, None)
