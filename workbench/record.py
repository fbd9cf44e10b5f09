"""The run record: everything later stages (studies, fits, reports) need about one trained spec,
and the run folder that holds it next to the spec, metrics, tokenizer and weights."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict

from workbench.spec import Spec

Status = Literal["completed", "diverged", "pruned", "failed"]


class _Plain(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenizerStats(_Plain):
    kind: str
    vocab_size: int
    """Trained vocabulary size (the model's table is padded to a multiple of vocab_multiple)."""
    bytes_per_token: float
    roundtrip_rate: float
    """Fraction of evaluation documents that decode back to exactly the original text."""
    unk_rate: float


class EvalPoint(_Plain):
    step: int
    tokens: int
    elapsed_s: float
    lr: float
    train_loss: float
    val_loss: float
    val_bpb: float


class RunRecord(_Plain):
    name: str
    spec_digest: str
    status: Status
    reason: str | None = None
    started_at: str
    device: str
    precision: str
    params: dict[str, int]
    """N under each convention: total, embedding, nonembedding, matmul (see accounting.py)."""
    flops_per_token: dict[str, float]
    tokens: int
    """D: training tokens actually consumed."""
    steps: int
    compute: dict[str, float]
    """C = flops_per_token x D under each convention."""
    train_loss: float | None
    val_loss: float | None
    val_ppl: float | None
    val_bpb: float | None
    best_val_bpb: float | None
    eval_bytes: int
    """UTF-8 bytes of the held-out evaluation text (the bpb denominator)."""
    eval_tokens: int
    entropy_bpb: float | None = None
    """The corpus's true entropy rate in bits per byte, when the source is synthetic."""
    tokens_per_s: float | None
    mfu: float | None
    """Model FLOPs (6N+attn convention) per second over the measured matmul peak."""
    peak_flops: float
    peak_memory_bytes: int
    peak_memory_kind: str
    wall_s: float
    setup_s: float
    train_s: float
    eval_s: float
    compile_s: float | None = None
    tokenizer: TokenizerStats
    curve: list[EvalPoint]


SPEC_FILE, RECORD_FILE, METRICS_FILE = "spec.yaml", "record.json", "metrics.jsonl"
WEIGHTS_FILE, TOKENIZER_FILE = "model.safetensors", "tokenizer.json"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_spec(run_dir: Path, spec: Spec) -> None:
    write_atomic(run_dir / SPEC_FILE, yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))


def write_record(run_dir: Path, record: RunRecord) -> None:
    write_atomic(run_dir / RECORD_FILE, record.model_dump_json(indent=2))


def read_record(run_dir: Path) -> RunRecord:
    return RunRecord.model_validate_json((run_dir / RECORD_FILE).read_text())


def read_run_spec(run_dir: Path) -> Spec:
    return Spec.model_validate(yaml.safe_load((run_dir / SPEC_FILE).read_text()))


def append_metrics(run_dir: Path, row: dict) -> None:
    with open(run_dir / METRICS_FILE, "a") as f:
        f.write(json.dumps(row) + "\n")
