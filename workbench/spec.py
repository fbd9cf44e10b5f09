"""The spec: one architecture + tokenizer + data + training recipe, as plain validated data.

Every field carries a docstring; they feed `workbench schema` and the errors users see. Variant
choices (positional scheme, norm, MLP, tokenizer, data source) are names checked against the
tables beside their implementations, which also hold each variant's own shape rules. Rules that
span several fields are gathered by `Spec.problems()`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal, Union

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from workbench.data import tokenizer
from workbench.data.sources import SOURCES
from workbench.data.split import Split
from workbench.model.layers import MLPS, NORMS
from workbench.model.parametrization import PARAMETRIZATIONS
from workbench.model.positional import SCHEMES
from workbench.plumbing.schema import FILE_SAFE, Choice, Section


def _described(table: dict, what: str) -> str:
    """A choice field's description: each name in the table with the first line of its doc."""
    def first(entry) -> str:
        doc = getattr(entry, "doc", None) if not isinstance(entry, type) else entry.__doc__
        return " ".join((doc or "").split("\n\n")[0].split()).rstrip(".")
    return f"{what}: " + "; ".join(f"{name}: {first(entry)}" for name, entry in table.items()) + "."


# ----------------------------------------------------------------------------------- model


class PositionalSpec(Section):
    """How token positions reach attention."""

    kind: Annotated[str, Choice(SCHEMES)] = Field("rope", description=_described(SCHEMES, "Positional scheme"))
    theta: float = Field(10000.0, gt=0)
    """RoPE base; larger bases rotate more slowly. Used by rope only."""
    max_positions: int | None = Field(None, ge=1)
    """Rows of the learned position table; defaults to model.context. Used by learned only."""


class MLPSpec(Section):
    """The feed-forward block of each layer."""

    kind: Annotated[str, Choice(MLPS)] = Field("gelu", description=_described(MLPS, "MLP"))
    ratio: float = Field(4.0, gt=0)
    """Hidden width as a multiple of model.width (rounded to the nearest integer)."""


class ModelSpec(Section):
    """A decoder-only causal transformer."""

    depth: int = Field(ge=1)
    """Number of transformer blocks."""
    width: int = Field(ge=1)
    """Residual stream width (d_model)."""
    heads: int = Field(ge=1)
    """Query heads per attention layer; width must be divisible by it."""
    kv_heads: int | None = Field(None, ge=1)
    """Key/value heads: equal to heads is multi-head, fewer is grouped-query, 1 is multi-query.
    Must divide heads. Defaults to heads."""
    mlp: MLPSpec = MLPSpec()
    """Feed-forward block."""
    norm: Annotated[str, Choice(NORMS)] = Field("layernorm", description=_described(NORMS, "Normalisation layer"))
    norm_placement: Literal["pre", "post"] = "pre"
    """pre: normalise each sublayer's input (GPT-2 and later); post: normalise after the residual
    add (original Transformer)."""
    positional: PositionalSpec = PositionalSpec()
    """Positional scheme."""
    context: int = Field(ge=2)
    """Sequence length in tokens seen in training and evaluation."""
    tie_embeddings: bool = True
    """Share the input embedding matrix with the output projection."""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout probability on attention weights and residual branches (0 disables it)."""
    bias: bool = False
    """Add biases to linear layers and LayerNorm."""
    init_std: float = Field(0.02, gt=0)
    """Standard deviation of the normal initialisation; residual output projections are further
    scaled by 1/sqrt(2 x depth)."""
    parametrization: Annotated[str, Choice(PARAMETRIZATIONS)] = Field(
        "standard", description=_described(PARAMETRIZATIONS, "How initialisation, learning rates and "
                                           "the attention and output scales follow the width"))
    base_width: int | None = Field(None, ge=1)
    """The width at which mup is standard, where its learning rate was tuned: at other widths the
    hidden matrices' learning rate and the logits are scaled by base_width / width, and their
    initialisation by its square root. Required by mup, unused by standard."""
    vocab_multiple: int = Field(1, ge=1)
    """Round the embedding table up to a multiple of this (64 speeds up the output matmul on
    GPUs; the extra rows are never targets)."""

    @property
    def n_kv_heads(self) -> int:
        return self.kv_heads or self.heads

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def mlp_hidden(self) -> int:
        return max(1, round(self.mlp.ratio * self.width))


# ------------------------------------------------------------------------------- tokenizer


class TokenizerSpec(Section):
    """How text becomes token ids. Every kind is lossless or records what it loses."""

    kind: Annotated[str, Choice(tokenizer.KINDS)] = Field(
        "byte", description=_described(tokenizer.KINDS, "Tokenizer") + " All but byte are trained on "
        "the spec's training split.")
    vocab_size: int | None = Field(None, ge=2)
    """Vocabulary size including special tokens. Required for bpe, wordpiece and unigram
    (at least 512); char defaults to 512; byte is fixed at 257 (256 bytes + end of text)."""
    train_bytes: int | None = Field(None, ge=1)
    """Train the tokenizer on at most this many bytes of the training split, sampled evenly
    through it (default: all of it up to 64 MiB; a sample of 64 MiB of a larger split)."""
    path: str | None = None
    """kind file only: the tokenizer file (a Hugging Face tokenizers JSON file, or a run folder's
    tokenizer.json), relative to the spec file. Its vocabulary sets vocab_size."""

    @model_validator(mode="before")
    @classmethod
    def _file_vocabulary(cls, data):
        # A file's vocabulary is read once, here, and kept in the spec: a run folder's spec then
        # builds its model without the file.
        if isinstance(data, dict) and data.get("kind") == "file" and data.get("vocab_size") is None:
            size = tokenizer.file_vocabulary(data.get("path"))
            if size is not None:
                data = {**data, "vocab_size": size}
        return data

    @property
    def size(self) -> int:
        """Vocabulary size the model is built for."""
        return tokenizer.vocabulary(self)


# ------------------------------------------------------------------------------------ data


_DEFAULT_SPLIT = Split().model_dump(mode="json")
DataSpec = Annotated[Union[tuple(SOURCES.values())], Field(discriminator="source")]
"""The spec's corpus: one of the sources in data.sources.SOURCES, chosen by its `source` name."""


# ----------------------------------------------------------------------------------- train


FlopsConvention = Literal["6N", "6N+attn"]


class BudgetSpec(Section):
    """How long to train: exactly one of tokens, flops, steps or seconds."""

    tokens: int | None = Field(None, ge=1)
    """Training tokens (D)."""
    flops: float | None = Field(None, gt=0)
    """Training compute (C) in FLOPs, converted to tokens under flops_convention."""
    steps: int | None = Field(None, ge=1)
    """Optimizer steps."""
    seconds: float | None = Field(None, gt=0)
    """Wall-clock seconds of training; the schedule then follows elapsed time."""
    flops_convention: FlopsConvention = "6N+attn"
    """How FLOPs per token are counted for a flops budget: 6N (Kaplan: 6 x non-embedding
    parameters) or 6N+attn (6 x matmul parameters + 12 x depth x width x context, as in PaLM)."""

    @model_validator(mode="after")
    def _exactly_one(self) -> BudgetSpec:
        given = [k for k in ("tokens", "flops", "steps", "seconds") if getattr(self, k) is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "budget", "give exactly one of tokens, flops, steps or seconds (got {given})",
                {"given": ", ".join(given) or "none"},
            )
        return self


class ScheduleSpec(Section):
    """Learning-rate schedule."""

    kind: Literal["cosine", "wsd", "constant"] = "cosine"
    """cosine: warmup then cosine decay to min_lr_ratio; wsd (warmup-stable-decay): warmup, a
    constant rate, then a decay over the last `decay` fraction; constant: warmup then flat."""
    warmup: float = Field(0.05, ge=0.0, lt=1.0)
    """Fraction of training steps spent warming up linearly from zero."""
    decay: float = Field(0.2, gt=0.0, le=1.0)
    """wsd only: fraction of training steps spent in the final decay (of each branch's own
    steps, with branches)."""
    shape: Literal["linear", "1-sqrt"] = "linear"
    """wsd only: the decay's shape, from lr down to min_lr_ratio x lr: linear, or 1-sqrt (falls
    as 1 - sqrt of the decay's progress: quickly at first, then slowly)."""
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0)
    """Final learning rate as a fraction of lr (cosine and wsd)."""
    branches: list[Annotated[float, Field(gt=0.0, le=1.0)]] | None = Field(None, min_length=1)
    """wsd only: token counts, as increasing fractions of the budget ending at 1.0, each of which
    is a finished run of its own. One run trains at the constant rate; where a branch's decay
    would begin it saves its state, decays a copy over that branch's last `decay` fraction, scores
    it and records it as its own run, then goes on from the saved state. A branch is the separate
    run of its token count with the same warmup tokens, for the cost of its decay alone."""

    @model_validator(mode="after")
    def _branches(self) -> ScheduleSpec:
        b = self.branches
        if b is None:
            return self
        if self.kind != "wsd":
            raise PydanticCustomError("branches", "branches need kind: wsd (a constant rate they can branch from)")
        if any(y <= x for x, y in zip(b, b[1:])) or b[-1] != 1.0:
            raise PydanticCustomError("branches", "branches must increase and end at 1.0 (the whole budget), "
                                      "e.g. [0.25, 0.5, 1.0]; got {b}", {"b": b})
        if self.warmup >= (1 - self.decay) * b[0]:
            raise PydanticCustomError(
                "branches", f"the first branch decays from {(1 - self.decay) * b[0]:.3g} of the budget, inside the "
                f"warmup ({self.warmup:.3g}): shorten the warmup or drop the first branch")
        return self


class TrainSpec(Section):
    """The training recipe."""

    budget: BudgetSpec
    """How long to train."""
    batch_tokens: int = Field(16384, ge=2)
    """Tokens per optimizer step; a multiple of model.context."""
    micro_batch_tokens: int | None = Field(None, ge=2)
    """Tokens per forward/backward pass (gradient accumulation); divides batch_tokens.
    Defaults to batch_tokens."""
    lr: float = Field(3e-3, gt=0)
    """Peak learning rate (AdamW)."""
    weight_decay: float = Field(0.1, ge=0)
    """Decoupled weight decay on matrices (norm gains and biases are not decayed)."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas."""
    schedule: ScheduleSpec = ScheduleSpec()
    """Learning-rate schedule."""
    grad_clip: float | None = Field(1.0, gt=0)
    """Clip the global gradient norm to this (null disables clipping)."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Compute precision: auto is fp32 on CPU and bf16 autocast on GPU."""
    seed: int = 0
    """Seed of initialisation and batch order."""
    eval_every: int | None = Field(None, ge=1)
    """Evaluate every this many steps (default: about 5 evaluations per run, plus the final one)."""
    eval_bytes: int = Field(65536, ge=1)
    """Size of the held-out evaluation text in UTF-8 bytes; the same text for every tokenizer."""
    compile: bool = False
    """Compile the model with torch.compile (compile time is reported separately)."""
    completions: int = Field(32, ge=0)
    """Held-out line completions scored by exact match and BLEU after training (0 skips them)."""
    samples: int = Field(2, ge=0)
    """Generated samples saved in the run record for people to read."""
    devices: int = Field(1, ge=1)
    """Data-parallel processes (GPUs) for this run: each takes an equal share of every
    micro-batch, so the optimisation is the one device's (with dropout, each rank draws its own
    masks: the same in distribution). More than 1 runs the trial as an Accelerate job in its own
    processes (gloo on CPU, NCCL on GPUs)."""

    @property
    def micro_tokens(self) -> int:
        return self.micro_batch_tokens or self.batch_tokens


class FinetuneSpec(Section):
    """A second phase that continues from the pretrained weights on another corpus, with a fresh
    optimizer and its own budget, learning rate and schedule; batch size, weight decay and
    evaluation size follow `train` when left out."""

    data: DataSpec
    """The fine-tuning corpus; its held-out split scores the gain. JSONL or Parquet with
    `prompt` set trains on responses only."""
    budget: BudgetSpec
    """How long to fine-tune."""
    lr: float = Field(3e-4, gt=0)
    """Peak learning rate of the fine-tuning phase."""
    schedule: ScheduleSpec = ScheduleSpec()
    """Its learning-rate schedule."""
    batch_tokens: int | None = Field(None, ge=2)
    """Tokens per optimizer step (default: train.batch_tokens)."""
    micro_batch_tokens: int | None = Field(None, ge=2)
    """Tokens per forward/backward pass (default: train's, or batch_tokens when that is set here)."""
    weight_decay: float | None = Field(None, ge=0)
    """Weight decay (default: train.weight_decay)."""
    eval_every: int | None = Field(None, ge=1)
    """Evaluate every this many steps (default: about 5 evaluations)."""
    eval_bytes: int | None = Field(None, ge=1)
    """Held-out fine-tuning text in UTF-8 bytes (default: train.eval_bytes)."""

    def recipe(self, train: TrainSpec) -> TrainSpec:
        """The training recipe of this phase: train's, with this section's fields."""
        update = {"budget": self.budget, "lr": self.lr, "schedule": self.schedule, "eval_every": self.eval_every}
        if self.batch_tokens is not None:
            update |= {"batch_tokens": self.batch_tokens, "micro_batch_tokens": self.micro_batch_tokens}
        elif self.micro_batch_tokens is not None:
            update["micro_batch_tokens"] = self.micro_batch_tokens
        for name in ("weight_decay", "eval_bytes"):
            if getattr(self, name) is not None:
                update[name] = getattr(self, name)
        return train.model_copy(update=update)


def _batch_problems(where: tuple[str, ...], t: TrainSpec, context: int) -> list[tuple[tuple[str, ...], str]]:
    out = []
    if t.batch_tokens % context:
        out.append((where + ("batch_tokens",), f"{t.batch_tokens} is not a multiple of model.context {context}"))
        return out
    micro = t.micro_batch_tokens
    if micro is not None and (micro % context or t.batch_tokens % micro):
        out.append((where + ("micro_batch_tokens",), f"{micro} must be a multiple of "
                    f"model.context {context} and divide batch_tokens {t.batch_tokens}"))
        return out
    rows = t.micro_tokens // context
    if t.devices > 1 and rows % t.devices:
        phase = "" if where == ("train",) else " in the fine-tuning phase"
        out.append((("train", "devices"), f"{t.devices} devices cannot share a micro-batch of {rows} "
                    f"sequences equally{phase}: make micro_batch_tokens / context a multiple of devices"))
    return out


# ------------------------------------------------------------------------------------ spec


class Spec(Section):
    """One architecture, tokenizer, corpus and training recipe."""

    name: str = Field(min_length=1, max_length=100, pattern=FILE_SAFE)
    """Name of the spec, used for run folders and reports: letters, digits, '.', '-', '_'."""
    description: str = ""
    """Free text for people."""
    extends: str | None = None
    """A base spec file (relative to this one) whose fields this file overrides."""
    model: ModelSpec
    """The architecture."""
    tokenizer: TokenizerSpec = TokenizerSpec()
    """The tokenizer."""
    data: DataSpec = SOURCES["python-stdlib"]()
    """The corpus; its held-out split is used for every evaluation."""
    train: TrainSpec
    """The training recipe."""
    finetune: FinetuneSpec | None = None
    """An optional fine-tuning phase after pretraining."""

    @model_validator(mode="after")
    def _possible(self) -> Spec:
        problems = self.problems()
        if problems:
            raise PydanticCustomError(
                "impossible", "; ".join(f"{'.'.join(p)}: {m}" for p, m in problems),
                {"problems": problems},
            )
        return self

    def problems(self) -> list[tuple[tuple[str, ...], str]]:
        """Shape rules spanning several fields, as (field path, message) pairs."""
        m, t, tok = self.model, self.train, self.tokenizer
        out: list[tuple[tuple[str, ...], str]] = []
        if m.width % m.heads:
            out.append((("model", "heads"), f"width {m.width} is not divisible by heads {m.heads}"))
        if m.kv_heads is not None and (m.kv_heads > m.heads or m.heads % m.kv_heads):
            out.append((("model", "kv_heads"), f"kv_heads {m.kv_heads} must divide heads {m.heads}"))
        out += SCHEMES[m.positional.kind].problems(m)
        out += PARAMETRIZATIONS[m.parametrization].problems(m)
        out += tokenizer.problems(tok)
        out += _batch_problems(("train",), t, m.context)
        if t.schedule.branches:
            if t.budget.seconds is not None:
                out.append((("train", "schedule", "branches"), "branches need a budget in tokens, flops or steps "
                            "(a seconds budget does not say where each branch ends)"))
            if t.devices > 1:
                out.append((("train", "schedule", "branches"), "branches train on one device: data-parallel "
                            "branched runs are not supported (set train.devices: 1)"))
            if self.finetune is not None:
                out.append((("train", "schedule", "branches"), "branches are pretraining runs of their own: "
                            "a spec with a fine-tuning phase cannot branch"))
            if t.precision == "fp16":
                out.append((("train", "precision"), "fp16 cannot branch: its loss scale is not kept with a fork, "
                            "so a branch would not be its separate run (use bf16 or fp32)"))
        if self.finetune is not None and self.finetune.schedule.branches:
            out.append((("finetune", "schedule", "branches"), "only pretraining can branch"))
        if self.finetune is not None and (self.finetune.batch_tokens or self.finetune.micro_batch_tokens):
            out += _batch_problems(("finetune",), self.finetune.recipe(t), m.context)   # else train's, checked
        return out

    def digest(self) -> str:
        """Short content hash of the resolved spec (names and descriptions excluded)."""
        # Fields that do not change what is trained stay out, and so do fields added since digests
        # were first taken while they hold their defaults: a spec keeps its digest across versions.
        data = self.model_dump(mode="json", exclude={"name": True, "description": True, "extends": True,
                                                   "train": {"devices", "completions", "samples"}})
        if data["finetune"] is None:
            del data["finetune"]
        if data["data"].get("prompt", 0) is None:
            del data["data"]["prompt"]
        for section in (data["data"], data.get("finetune", {}).get("data", {})):
            if section.get("split") == _DEFAULT_SPLIT:
                del section["split"]
        if data["model"]["parametrization"] == "standard":       # base_width is unused then
            del data["model"]["parametrization"], data["model"]["base_width"]
        for schedule in (data["train"]["schedule"], data.get("finetune", {}).get("schedule", {})):
            if schedule.get("branches", 0) is None:
                del schedule["branches"]
            if schedule.get("shape") == "linear":
                del schedule["shape"]
        if data["tokenizer"].get("path", 0) is None:
            del data["tokenizer"]["path"]
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]
