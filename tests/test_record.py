"""The run record and its run folder: what later stages read back is exactly what was written."""

import json

import pytest
from pydantic import ValidationError

from workbench.record import (METRICS_FILE, RECORD_FILE, SPEC_FILE, TOKENIZER_FILE, WEIGHTS_FILE, RunRecord,
                              append_metrics, read_record, read_run_spec, write_record, write_spec)


def test_the_run_folder_holds_spec_record_metrics_tokenizer_and_weights(two_phase_run):
    spec, record, run = two_phase_run
    files = [SPEC_FILE, RECORD_FILE, METRICS_FILE, WEIGHTS_FILE, TOKENIZER_FILE]
    assert sorted(p.name for p in run.iterdir()) == sorted(files)
    assert read_record(run) == record and read_run_spec(run) == spec
    rows = [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines()]
    evals = [r for r in rows if r["kind"] == "eval"]
    assert [(r["phase"], r["step"]) for r in evals] == [(p.phase, p.step) for p in record.curve + record.finetune_curve]


def test_a_record_round_trips_through_json(two_phase_run, tmp_path):
    _, record, _ = two_phase_run
    write_record(tmp_path, record)
    back = read_record(tmp_path)
    assert back == record and back.model_dump() == record.model_dump()
    assert [p.name for p in back.phases] == ["pretrain", "finetune"] and back.suite.completion.tasks == 8
    assert [p.name for p in tmp_path.iterdir()] == [RECORD_FILE]               # no temporary left


def test_a_record_refuses_fields_it_does_not_know(two_phase_run):
    _, record, _ = two_phase_run
    data = record.model_dump(mode="json")
    with pytest.raises(ValidationError, match="colour"):
        RunRecord.model_validate({**data, "colour": "red"})
    with pytest.raises(ValidationError, match="status"):
        RunRecord.model_validate({**data, "status": "exploded"})


def test_a_written_spec_reads_back_equal(two_phase_run, tmp_path):
    spec, _, _ = two_phase_run
    write_spec(tmp_path, spec)
    assert read_run_spec(tmp_path) == spec and read_run_spec(tmp_path).digest() == spec.digest()


def test_metrics_are_appended_one_json_line_per_row(tmp_path):
    rows = [{"kind": "train", "step": 1, "loss": 5.5}, {"kind": "eval", "step": 1, "val_bpb": 3.25}]
    for row in rows:
        append_metrics(tmp_path, row)
    assert [json.loads(line) for line in (tmp_path / METRICS_FILE).read_text().splitlines()] == rows
