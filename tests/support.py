"""Shared test material: the repository's example files, tiny specs and study files that train in
seconds, importable from every test module (pytest puts this folder on the path)."""

import functools
import tempfile
import uuid
from pathlib import Path

import yaml

from workbench.plumbing import dotted
from workbench.data.tokenizer import KINDS
from workbench.spec import Spec, TokenizerSpec

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
STUDIES = sorted((ROOT / "studies").glob("*.yaml"))

BASE = {"name": "base", "model": {"depth": 1, "width": 32, "heads": 2, "context": 32},
        "data": {"source": "python-stdlib", "max_bytes": 200_000},
        "train": {"budget": {"steps": 3}, "batch_tokens": 128, "eval_bytes": 2048}}
"""The base spec of test studies: one block of width 32, three steps."""

FINETUNE = {"data": {"source": "python-docstrings", "max_bytes": 200_000}, "budget": {"steps": 6},
            "batch_tokens": 256, "eval_bytes": 4096, "lr": 1e-3}
"""A fine-tuning phase on the docstring pairs, six steps."""


def write_study(tmp_path: Path, **fields) -> Path:
    """A study file over BASE (random sampler, no pruner, fast heartbeats) with `fields` on top."""
    study = {"name": f"s{uuid.uuid4().hex[:8]}", "base": BASE, "sampler": {"kind": "random", "seed": 0},
             "pruner": {"kind": "none"}, "heartbeat": {"interval": 0.5, "grace": 30}, **fields}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def tiny_spec(**over) -> Spec:
    """A spec that trains in about a second, with dotted overrides."""
    spec = {"name": "tiny", "model": {"depth": 1, "width": 32, "heads": 2, "context": 32},
            "data": {"source": "python-stdlib", "max_bytes": 300_000},
            "train": {"budget": {"steps": 6}, "batch_tokens": 256, "eval_bytes": 4096}}
    return Spec.model_validate(dotted.apply(spec, over))


def two_phase(**over) -> Spec:
    """tiny_spec pretrained 20 steps, then fine-tuned (FINETUNE)."""
    spec = tiny_spec(**{"train.budget": {"steps": 20}, "train.completions": 8, **over})
    return Spec.model_validate({**spec.model_dump(), "finetune": FINETUNE})


VARIED = [
    "héllo  wörld, naïve café",
    "tabs\t\tand\nnewlines\n\n\nend",
    "CRLF line\r\nnext\r\n",
    "emoji 😀🎉 family 👩‍👩‍👧 flag 🇫🇷",
    "日本語のテキストと한국어 and Ελληνικά",
    "   leading and trailing   ",
    "x" * 500,
    " " * 300 + "y",
    "\x00\x01\x7f control and \u200b zero width",
    "a literal <|endoftext|> inside a document",
    "<unk> [UNK] <0x41> ▁ Ġ ##suffix",
    "a",
    "",
]
"""Texts that tokenizers get wrong when they get anything wrong."""


def tokenizer_spec(kind: str, size: int = 1024, **fields) -> TokenizerSpec:
    """A tokenizer section of `kind`; `size` is its vocabulary where the kind lets one be chosen.
    The file kind reads a byte-level BPE tokenizer of that size, saved here as a tokenizers file."""
    if KINDS[kind].build is None:
        return TokenizerSpec(kind=kind, path=str(tokenizer_file(size)), **fields)
    return TokenizerSpec(kind=kind, vocab_size=None if KINDS[kind].fixed_size else size, **fields)


@functools.lru_cache(maxsize=None)
def tokenizer_file(size: int) -> Path:
    """A Hugging Face tokenizers JSON file of a byte-level BPE with `size` tokens, trained once per
    process on a slice of the standard library's own source."""
    import sysconfig
    text = (Path(sysconfig.get_paths()["stdlib"]) / "argparse.py").read_text()
    path = Path(tempfile.mkdtemp(prefix="tokenizer-file-")) / f"bpe-{size}.json"
    KINDS["bpe"].build([text[i:i + 4000] for i in range(0, len(text), 4000)], size).save(str(path))
    return path


def write_docs(folder: Path, n: int, start: int = 0) -> None:
    """n small text files doc000.txt ... in `folder` (33 bytes each)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        (folder / f"doc{i:03d}.txt").write_text(f"document {i}\n" * 3)


def files_corpus(*paths: Path | str, **fields):
    """The corpus of a `files` source over `paths`."""
    from workbench.data.corpus import load_corpus
    from workbench.data.sources import FilesData
    return load_corpus(FilesData(source="files", paths=[str(p) for p in paths], **fields))


def model_spec(**model) -> Spec:
    """A spec of two blocks of width 64 (4 heads, context 24) with `model` fields on top; for
    building models, not for training them."""
    base = {"depth": 2, "width": 64, "heads": 4, "context": 24}
    return Spec.model_validate({"name": "t", "model": {**base, **model},
                                "train": {"budget": {"steps": 1}, "batch_tokens": 24}})
