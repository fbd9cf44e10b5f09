"""The run record: everything later stages (studies, fits, reports) need about one trained spec,
and the run folder that holds it next to the spec, metrics, tokenizer and weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict

from workbench.data.corpus import CorpusStats
from workbench.data.streams import TokenizerStats
from workbench.plumbing.files import write_atomic
from workbench.spec import Spec

Status = Literal["completed", "diverged", "pruned", "failed"]


class Pruned(Exception):
    """Raised by a run's on_eval callback to stop it early; the run is recorded as pruned."""


class _Plain(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EvalPoint(_Plain):
    step: int
    tokens: int
    elapsed_s: float
    lr: float
    train_loss: float
    val_loss: float
    val_bpb: float
    phase: Literal["pretrain", "finetune"] = "pretrain"
    """Which phase; its own corpus is the one scored."""


class Metrics(_Plain):
    """One model scored on the held-out text of one corpus."""

    loss: float
    """Mean nats per predicted token."""
    ppl: float
    bpb: float
    """Total nats / (ln 2 x UTF-8 bytes of the scored text)."""
    top1: float
    """Next-token top-1 accuracy."""
    tokens: int
    bytes: int


class PhaseRecord(_Plain):
    """One training phase and the model it left, scored on every corpus of the run."""

    name: Literal["pretrain", "finetune"]
    tokens: int
    steps: int
    train_s: float
    lr: float
    """Peak learning rate."""
    metrics: dict[str, Metrics] | None = None
    """At the end of the phase, by corpus ("pretrain", "finetune"); None when it did not finish
    (pruned, diverged)."""


class Completion(_Plain):
    """Held-out completions: the first half of a line (after its preceding text) in, the rest
    of the line out by greedy decoding; prompt and response for prompt/response corpora."""

    tasks: int
    exact_match: float
    bleu: float
    """Corpus BLEU-4 over all tasks (0..1)."""
    examples: list[dict[str, str]]
    """A few tasks with prompt, reference and output, for people."""


class EvalSuite(_Plain):
    """The finished model judged beyond its loss, on the corpus it was last trained on."""

    corpus: str
    metrics: Metrics
    int8_bpb: float
    """bpb with every weight matrix rounded to int8 (per-row absmax), beside metrics.bpb."""
    int8_loss: float
    int8_weight_error: float
    """Largest relative Frobenius error of a quantized matrix."""
    completion: Completion | None
    samples: list[dict[str, str]]
    """Sampled continuations (prompt, text) saved for people to read."""


class BranchRecord(_Plain):
    """Where a run of a branched warmup-stable-decay schedule stands among its run's branches,
    and what it costs: its own decay, plus (on the last branch only) the constant-rate part
    every branch shares, so the charges of a run's branches add up to what it trained."""

    index: int
    """Its place among the run's branches (0 first; the last is the run's own end)."""
    count: int
    """How many branches the run has."""
    fraction: float
    """Its token count as a fraction of the run's budget."""
    fork_tokens: int
    """Tokens of the constant-rate run it decayed from (shared with the run)."""
    decay_tokens: int
    """Tokens of its own decay (tokens = fork_tokens + decay_tokens)."""
    shared_tokens: int
    """Tokens of the run's whole constant-rate part (every branch forks from within it)."""
    charged_compute: dict[str, float]
    """Compute charged to this run by convention: its decay, plus the shared part on the last branch."""


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
    unique_tokens: int | None = None
    """Tokens in the pretraining stream the batches are drawn from: the unique training tokens."""
    epochs: float | None = None
    """tokens / unique_tokens: how many times the run went over its training data. Beyond about
    4, repeated tokens are worth less than fresh ones and fits should discount them."""
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
    """The measured dense matmul FLOP/s of the device in the run's compute dtype."""
    peak_dtype: str | None = None
    """The dtype that peak was measured in: the run's compute dtype (bfloat16 under bf16 autocast)."""
    peak_memory_bytes: int
    peak_memory_kind: str
    wall_s: float
    setup_s: float
    train_s: float
    eval_s: float
    compile_s: float | None = None
    tokenizer: TokenizerStats
    curve: list[EvalPoint]
    """Pretraining evaluations on the pretraining corpus."""
    devices: int = 1
    """Data-parallel processes that trained it."""
    phases: list[PhaseRecord] = []
    finetune_curve: list[EvalPoint] = []
    """Fine-tuning evaluations on the fine-tuning corpus (step and tokens count from its start)."""
    finetune_val_loss: float | None = None
    finetune_val_bpb: float | None = None
    finetune_gain_bpb: float | None = None
    """Fine-tuning corpus bpb before fine-tuning minus after: what fine-tuning bought."""
    forgetting_bpb: float | None = None
    """Pretraining corpus bpb after fine-tuning minus before: what it cost."""
    suite: EvalSuite | None = None
    suite_error: str | None = None
    """Why a completed run has no evaluation suite (the run itself is kept)."""
    corpus: CorpusStats | None = None
    """The pretraining corpus: how its held-out text was chosen, the size of each side, and the
    invalid UTF-8 sequences its files had (read as U+FFFD)."""
    finetune_corpus: CorpusStats | None = None
    branch: BranchRecord | None = None
    """For one branch of a branched schedule: which, and what it was charged (its `compute` is
    that of its own token count, as for a separate run: what fits use)."""
    """The same for the fine-tuning corpus."""


SPEC_FILE, RECORD_FILE, METRICS_FILE = "spec.yaml", "record.json", "metrics.jsonl"
WEIGHTS_FILE, TOKENIZER_FILE = "model.safetensors", "tokenizer.json"


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


def records_compute(records: list[dict], convention: str = "6N+attn") -> dict[str, Any]:
    """The training compute run records (as JSON data) have spent (FLOPs under `convention`),
    with each branched run charged its shared constant-rate part once and each branch's decay on
    its own, against what its points would have cost as separate runs."""
    spent = shared = decays = separate = 0.0
    runs = points = 0
    for record in records:
        if convention not in (record.get("compute") or {}):
            continue
        branch = record.get("branch")
        if branch is None:
            spent += record["compute"][convention]
            continue
        spent += branch["charged_compute"][convention]
        last = branch["index"] == branch["count"] - 1
        runs += last
        if record["status"] != "completed":      # stopped early: what it trained, no point measured
            if last:
                shared += branch["charged_compute"][convention]
            else:
                decays += branch["charged_compute"][convention]
            continue
        per_token = record["flops_per_token"][convention]
        decays += per_token * branch["decay_tokens"]
        separate += record["compute"][convention]
        points += 1
        if last:
            shared += per_token * branch["shared_tokens"]
    out: dict[str, Any] = {"convention": convention, "flops": spent}
    if runs or points:
        out["branched"] = {"runs": runs, "points": points, "shared_flops": shared, "decay_flops": decays,
                           "separate_flops": separate, "saving": separate / (shared + decays) if shared + decays else None}
    return out


def spent_text(c: dict, whose: str = "trials that trained") -> str:
    """records_compute in words: the FLOPs spent, and what branched runs saved."""
    line = f"{c['flops']:.3g} FLOPs ({c['convention']}, {whose})"
    b = c.get("branched")
    if b:
        line += (f"; {b['runs']} branched run(s) gave {b['points']} points for {b['shared_flops']:.3g} FLOPs of shared "
                 f"constant-rate training (charged once) and {b['decay_flops']:.3g} in decays, against "
                 f"{b['separate_flops']:.3g} as separate runs" + (f": {b['saving']:.2f}x less" if b["saving"] else ""))
    return line
