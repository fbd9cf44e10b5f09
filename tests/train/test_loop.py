"""Real training of tiny models: honest numbers, run folders, budgets, failure statuses, and a
fine-tuning phase that continues from the pretrained weights."""

import json
import math
import subprocess
import sys
from collections import Counter
from contextlib import nullcontext

import polars as pl
import pytest
import torch
from safetensors.torch import load_model

from support import ROOT, tiny_spec, two_phase
from workbench.data.batches import Batches
from workbench.data.corpus import eval_documents, load_corpus
from workbench.data.prepared import prepare
from workbench.evaluate.heldout import heldout_metrics
from workbench.model import build_model
from workbench.record import Pruned, read_record, read_run_spec
from workbench.specfile import load_spec
from workbench.study.table import record_row, write_table
from workbench.train.loop import train
from workbench.train.step import masked_loss


def test_quickstart_model_learns_the_default_corpus(tmp_path):
    """2 layers, width 128, about 200k tokens of the standard library on CPU: val bits per byte
    ends far below the corpus's unigram byte entropy (what a model ignoring context gets)."""
    spec = load_spec(ROOT / "specs" / "quickstart.yaml")
    assert (spec.model.depth, spec.model.width) == (2, 128)
    record = train(spec, tmp_path / "run")
    text = "".join(eval_documents(load_corpus(spec.data), spec.train.eval_bytes)).encode()
    counts = Counter(text)
    unigram = -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values())
    assert record.status == "completed"
    assert record.eval_bytes == len(text)
    assert record.val_bpb < 0.8 * unigram, (record.val_bpb, unigram)
    assert record.curve[0].val_bpb > record.curve[-1].val_bpb
    assert record.tokens == 200_704 and record.steps == 196
    assert record.compute["6N+attn"] == pytest.approx(record.flops_per_token["6N+attn"] * record.tokens)
    assert record.val_ppl == pytest.approx(math.exp(record.val_loss))
    assert record.tokenizer.roundtrip_rate == 1.0 and record.tokenizer.unk_rate == 0.0
    assert 0 < record.mfu < 1 and record.tokens_per_s > 0 and record.peak_memory_bytes > 0
    suite = record.suite                       # the evaluation suite of the finished model
    assert suite.corpus == "pretrain" and suite.metrics.bpb == record.val_bpb
    assert suite.int8_bpb == pytest.approx(record.val_bpb, rel=0.02) and suite.int8_bpb != record.val_bpb
    assert 0.2 < suite.metrics.top1 < 1 and suite.metrics.ppl == pytest.approx(record.val_ppl)
    assert suite.completion.tasks == spec.train.completions and 0 <= suite.completion.bleu <= 1
    assert len(suite.samples) == spec.train.samples and all(s["text"] for s in suite.samples)
    for name in ("spec.yaml", "record.json", "metrics.jsonl", "model.safetensors", "tokenizer.json"):
        assert (tmp_path / "run" / name).is_file()
    assert read_record(tmp_path / "run") == record
    assert read_run_spec(tmp_path / "run") == spec
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "eval"] == [p.step for p in record.curve]

    sample = subprocess.run([sys.executable, "-m", "workbench", "sample", str(tmp_path / "run"),
                             "--prompt", "def ", "--tokens", "60"], capture_output=True, text=True)
    assert sample.returncode == 0, sample.stderr
    assert sample.stdout.startswith("def ") and len(sample.stdout) > 10


def test_bpb_uses_the_same_raw_bytes_for_every_tokenizer():
    byte = train(tiny_spec())
    bpe = train(tiny_spec(**{"tokenizer.kind": "bpe", "tokenizer.vocab_size": 1024}))
    assert byte.eval_bytes == bpe.eval_bytes
    assert bpe.eval_tokens < byte.eval_tokens
    assert byte.tokenizer.bytes_per_token == 1.0 and bpe.tokenizer.bytes_per_token > 1.5
    for r in (byte, bpe):
        assert r.val_bpb == pytest.approx(r.val_loss * r.eval_tokens / (math.log(2) * r.eval_bytes))


def test_nan_loss_ends_the_run_as_diverged_with_a_record(tmp_path):
    record = train(tiny_spec(**{"model.init_std": 1e30}), tmp_path / "run")
    assert record.status == "diverged"
    assert "nan" in record.reason or "inf" in record.reason
    assert read_record(tmp_path / "run").status == "diverged"


def test_pruning_callback_stops_the_run(tmp_path):
    def prune(point):
        if point.step >= 2:
            raise Pruned(f"pruned at step {point.step}")
    record = train(tiny_spec(**{"train.eval_every": 2}), on_eval=prune)
    assert (record.status, record.steps, record.reason) == ("pruned", 2, "pruned at step 2")
    assert record.suite is None and record.phases[0].metrics is None and record.val_bpb is None
    # A table of nothing but unfinished runs still exports (no empty structs for Parquet).
    write_table(pl.DataFrame([record_row(record.model_dump(mode="json"))]), tmp_path / "runs.parquet")
    assert pl.read_parquet(tmp_path / "runs.parquet")["status"].to_list() == ["pruned"]


@pytest.mark.parametrize("budget,steps", [({"tokens": 1000}, 4), ({"steps": 3}, 3), ({"flops": 5e8}, None)])
def test_budgets_convert_to_steps(budget, steps):
    spec = tiny_spec(**{"train.budget": budget})
    record = train(spec)
    if steps is None:   # flops: tokens = C / flops-per-token, rounded to whole batches
        steps = round(5e8 / record.flops_per_token["6N+attn"] / 256)
    assert record.steps == steps and record.tokens == steps * 256


def test_seconds_budget_stops_on_time(tmp_path):
    seen = []
    record = train(tiny_spec(**{"train.budget": {"seconds": 1.0}, "train.eval_every": 5}), tmp_path / "run",
                   on_eval=lambda point: seen.append(point.step))
    assert record.status == "completed" and 1.0 <= record.train_s < 2.0 and record.steps > 1
    # The closing evaluation is recorded but not judged; metrics.jsonl says which were (a
    # data-parallel caller judges exactly those).
    assert record.curve[-1].step == record.steps and seen == list(range(5, record.steps + 1, 5))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "eval" and r["judged"]] == seen


def test_gradient_accumulation_matches_the_full_batch():
    full = train(tiny_spec())
    accumulated = train(tiny_spec(**{"train.micro_batch_tokens": 64}))
    assert accumulated.train_loss == pytest.approx(full.train_loss, rel=1e-4)
    assert accumulated.val_loss == pytest.approx(full.val_loss, rel=1e-4)


def test_training_is_reproducible_from_the_seed():
    a, b = train(tiny_spec()), train(tiny_spec())
    c = train(tiny_spec(**{"train.seed": 1}))
    assert a.val_loss == b.val_loss != c.val_loss


def test_mup_at_its_base_width_is_standard_through_both_phases(two_phase_run):
    """The loop's schedule and the fine-tuning restart keep each group's learning-rate multiple:
    at its base width mup trains as standard, pretraining and fine-tuning alike."""
    _, standard, _ = two_phase_run
    mup = train(two_phase(**{"model.parametrization": "mup", "model.base_width": 32}))
    assert mup.val_loss == pytest.approx(standard.val_loss, rel=1e-5)
    assert mup.finetune_val_loss == pytest.approx(standard.finetune_val_loss, rel=1e-5)
    wider = train(tiny_spec(**{"model.parametrization": "mup", "model.base_width": 16}))
    assert wider.status == "completed" and math.isfinite(wider.val_loss)


def test_synthetic_run_records_the_true_entropy_and_respects_it():
    record = train(tiny_spec(**{"data": {"source": "synthetic", "documents": 200, "doc_bytes": 500},
                                "train.budget": {"steps": 30}, "train.lr": 1e-2}))
    assert record.entropy_bpb is not None and 0 < record.entropy_bpb < 4
    assert record.val_bpb > record.entropy_bpb            # no model beats the source's entropy


def test_a_failing_evaluation_suite_keeps_the_trained_run(tmp_path, monkeypatch):
    import workbench.evaluate.suite

    def out_of_memory(model):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    monkeypatch.setattr(workbench.evaluate.suite, "quantize_int8", out_of_memory)
    record = train(tiny_spec(), tmp_path / "run")
    assert record.status == "completed" and record.val_bpb is not None and record.suite is None
    assert record.suite_error == "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert read_record(tmp_path / "run") == record and (tmp_path / "run" / "model.safetensors").is_file()


# ---------------------------------------------------------------------------------- fine-tuning


def test_fine_tuning_starts_from_the_pretrained_weights(two_phase_run, tmp_path):
    spec, record, run = two_phase_run
    pre = spec.model_copy(update={"finetune": None})
    train(pre, tmp_path / "pre")
    model = build_model(pre)
    load_model(model, str(tmp_path / "pre" / "model.safetensors"))
    text = prepare(spec).texts["finetune"]
    # Its first evaluation is the pretrained model's on the fine-tuning corpus...
    before = heldout_metrics(model, text, torch.device("cpu"), nullcontext, 8)
    assert record.finetune_curve[0].step == 0
    assert record.finetune_curve[0].val_loss == pytest.approx(before.loss, rel=1e-6)
    assert record.phases[0].metrics["finetune"].bpb == pytest.approx(before.bpb, rel=1e-6)
    # ...and its first training loss is the pretrained model's loss on its first batch.
    t = spec.finetune.recipe(spec.train)
    x, y = next(Batches(text.train, t.micro_tokens // 32, 32, t.seed, torch.device("cpu"), text.mask))
    with torch.no_grad():
        first = masked_loss(model(x), y).item()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    step1 = next(r for r in rows if r["kind"] == "train" and r["phase"] == "finetune" and r["step"] == 1)
    assert step1["loss"] == pytest.approx(first, rel=1e-5)
    assert record.finetune_gain_bpb == pytest.approx(before.bpb - record.finetune_val_bpb)


def test_a_fine_tuned_record_scores_both_corpora_after_each_phase(two_phase_run):
    spec, record, _ = two_phase_run
    assert [p.name for p in record.phases] == ["pretrain", "finetune"]
    before, after = record.phases[0].metrics, record.phases[1].metrics
    assert record.finetune_val_bpb == after["finetune"].bpb < before["finetune"].bpb
    assert record.finetune_gain_bpb == pytest.approx(before["finetune"].bpb - after["finetune"].bpb)
    assert record.forgetting_bpb == pytest.approx(after["pretrain"].bpb - before["pretrain"].bpb)
    assert record.val_bpb == before["pretrain"].bpb      # pretraining's own result
    assert len(prepare(spec).texts["finetune"].eval_pairs) > 8
    assert record.suite.corpus == "finetune" and record.suite.completion.tasks == 8
    assert record.suite.samples and all(s["prompt"].endswith('"""') for s in record.suite.samples)
