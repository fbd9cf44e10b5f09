"""What a study can optimise: one table, one entry per objective, with its direction, how it is
read from a run record, the evaluation curve a pruner may watch, and whether the scaling fit can
fit it. The study schema, the workers, the pruner, the fit and the report all read this table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

from workbench.record import RunRecord


@dataclass(frozen=True)
class Objective:
    """One quantity a study can optimise."""

    doc: str
    direction: Literal["minimize", "maximize"]
    get: Callable[[RunRecord], float | None]
    """The value in a finished run's record (None when the run does not have it)."""
    curve: str | None = None
    """The evaluation-curve quantity (val_bpb or val_loss) a pruner watches; None: no pruning."""
    last_phase: bool = False
    """Measured after the last phase (the fine-tuned model, when there is one), so pruning
    follows the fine-tuning curve; otherwise measured after pretraining."""
    needs_finetune: bool = False
    """Only a spec with a finetune phase has it."""
    needs_completions: bool = False
    """Only a spec scoring held-out completions (train.completions > 0) has it."""
    fit_words: str | None = None
    """For losses the scaling fit can fit (`scaling.loss`): the loss in words, for axes."""
    short: str | None = None
    """A short name for table headings."""


def _suite(pick: Callable) -> Callable[[RunRecord], float | None]:
    return lambda r: pick(r.suite) if r.suite is not None else None


def _completion(pick: Callable) -> Callable[[RunRecord], float | None]:
    return _suite(lambda s: pick(s.completion) if s.completion is not None else None)


OBJECTIVES: dict[str, Objective] = {
    "val_bpb": Objective("held-out bits per byte after pretraining", "minimize", lambda r: r.val_bpb,
                         curve="val_bpb", fit_words="val bits per byte", short="bpb"),
    "val_loss": Objective("held-out nats per token after pretraining", "minimize", lambda r: r.val_loss,
                          curve="val_loss", fit_words="val loss (nats/token)", short="val loss"),
    "params": Objective("total parameters", "minimize", lambda r: r.params["total"]),
    "flops": Objective("training compute (6N+attn)", "minimize", lambda r: r.compute["6N+attn"]),
    "tokens_per_s": Objective("training throughput", "maximize", lambda r: r.tokens_per_s),
    "wall_time": Objective("wall-clock seconds of the run", "minimize", lambda r: r.wall_s),
    "top1": Objective("next-token top-1 accuracy of the finished model", "maximize",
                      _suite(lambda s: s.metrics.top1), last_phase=True),
    "completion_exact": Objective("exact match of held-out completions", "maximize",
                                  _completion(lambda c: c.exact_match), last_phase=True, needs_completions=True),
    "completion_bleu": Objective("BLEU-4 of held-out completions", "maximize",
                                 _completion(lambda c: c.bleu), last_phase=True, needs_completions=True),
    "int8_bpb": Objective("bits per byte with int8 weights", "minimize", _suite(lambda s: s.int8_bpb),
                          curve="val_bpb", last_phase=True),
    "finetune_val_bpb": Objective("fine-tuning corpus bits per byte after fine-tuning", "minimize",
                                  lambda r: r.finetune_val_bpb, curve="val_bpb", last_phase=True,
                                  needs_finetune=True, fit_words="fine-tuned bits per byte", short="fine-tuned bpb"),
    "finetune_val_loss": Objective("fine-tuning corpus nats per token after fine-tuning", "minimize",
                                   lambda r: r.finetune_val_loss, curve="val_loss", last_phase=True,
                                   needs_finetune=True, fit_words="fine-tuned loss (nats/token)",
                                   short="fine-tuned loss"),
    "finetune_gain_bpb": Objective("fine-tuning corpus bpb before minus after fine-tuning", "maximize",
                                   lambda r: r.finetune_gain_bpb, last_phase=True, needs_finetune=True),
    "forgetting_bpb": Objective("pretraining corpus bpb after minus before fine-tuning", "minimize",
                                lambda r: r.forgetting_bpb, last_phase=True, needs_finetune=True),
}
"""Every objective by name: a study's `objectives` accept exactly these."""

FITTABLE = {name: o for name, o in OBJECTIVES.items() if o.fit_words}
"""The losses the scaling fit can fit (a study's `scaling.loss`)."""
