"""`workbench study ...`: run, join, inspect and export studies."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from workbench.cli.app import GpusOption, StorageOption, err, out, study_app, user_errors


@study_app.command("run")
@user_errors
def study_run(study_file: Path,
              workers: Annotated[str, typer.Option(help="Worker processes, or auto: one per GPU (x --trials-per-gpu), 1 on CPU.")] = "1",
              trials_per_gpu: Annotated[int, typer.Option(help="Trials packed on each GPU.")] = 1,
              gpus_per_trial: GpusOption = None,
              storage: StorageOption = None) -> None:
    """Run (or resume) a study with N worker processes until its budget is spent."""
    from workbench.study.devices import gpu_count, plan_workers
    from workbench.study.file import load_study
    from workbench.study.storage import default_storage
    from workbench.study.supervisor import supervise
    study = load_study(study_file)
    try:
        plan_workers(workers, gpu_count(), trials_per_gpu, gpus_per_trial=gpus_per_trial or study.base.train.devices)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    url = storage or default_storage(study)
    last = [None]

    def progress(s: dict) -> None:
        line = _progress_line(s)
        if line != last[0]:
            err.print(f"[{datetime.now():%H:%M:%S}] {line}", soft_wrap=True)    # one line per update
            last[0] = line

    try:
        result = supervise(study, url, workers, on_progress=progress, trials_per_gpu=trials_per_gpu,
                           gpus_per_trial=gpus_per_trial)
    except KeyboardInterrupt:
        err.print(f"interrupted; finished trials are kept in {url}: run the same command to resume")
        raise typer.Exit(130) from None
    _print_summary(result)
    out.print(f"storage: {url}")
    if result["worker_failures"]:
        err.print(f"[red]error[/red] {len(result['worker_failures'])} worker process(es) died; the first: "
                  f"{result['worker_failures'][0]}", soft_wrap=True)
        raise typer.Exit(1)


def _progress_line(s: dict) -> str:
    states = ", ".join(f"{n} {k}" for k, n in sorted(s["states"].items()))
    best = s["best"][0] if s["best"] else None
    tail = f" | best searched {s['objectives'][0]} {best['values'][0]:.4f} (trial {best['number']})" if best else ""
    return f"{s['counted']}/{s['planned']} trials: {states}{tail}{_ladder_text(s['ladder'], ' | ')}"


def _ladder_text(ladder: dict, lead: str) -> str:
    if not ladder["planned"]:
        return ""
    failed = f", {ladder['failed']} failed" if ladder["failed"] else ""
    return f"{lead}ladder {ladder['done']}/{ladder['planned']} points done{failed}"


def _trials_table(title: str, s: dict, trials: list[dict]) -> Table:
    table = Table(title=title)
    table.add_column("trial")
    for name in s["objectives"]:
        table.add_column(name)
    table.add_column("fields")
    for t in trials:
        values = t["values"] or [None] * len(s["objectives"])
        table.add_row(str(t["number"]), *(t["status"] if v is None else f"{v:.4g}" for v in values),
                      ", ".join(f"{k}={v}" for k, v in t["fields"].items()))
    return table


def _print_summary(s: dict) -> None:
    out.print(f"study {s['study']}: " + ", ".join(f"{n} {k}" for k, n in sorted(s["states"].items())))
    if s["best"]:
        out.print(_trials_table("best searched trials", s, s["best"]))
    if s["baselines"]:
        out.print(_trials_table("baselines", s, s["baselines"]))
    if s["ladder"]["planned"]:
        out.print(_ladder_text(s["ladder"], ""))
    for v in s.get("validation", []):
        out.print(validation_text(v), soft_wrap=True)
    if s.get("compute"):
        from workbench.record import spent_text
        out.print("compute: " + spent_text(s["compute"]), soft_wrap=True)
    for f in s["failures"]:
        out.print(f"trial {f['number']} ({f['role']}) {f['status']}: {f['reason']}", soft_wrap=True)


def validation_text(v: dict) -> str:
    """One line on a validation run: predicted against observed, or why there is none yet."""
    if v["predicted"] is None:
        return f"validation (trial {v['number']}) {v['status']}: {v['reason']}"
    head = (f"validation at C = {v['budget']:.3g} (trial {v['number']}, N = {v['params']:.3g}{v['convention']}, D = {v['tokens']:.3g}): "
            f"predicted {v['loss']} {v['predicted']:.4f} [{v['lo']:.4f}, {v['hi']:.4f}] (95%, one run)")
    if v["observed"] is None:
        return f"{head}; {v['status']}" + (f": {v['reason']}" if v["reason"] else "")
    where = "inside" if v["inside"] else "OUTSIDE"
    return f"{head}, observed {v['observed']:.4f} ({v['error']:+.1%}): {where} the interval"


@study_app.command("worker")
@user_errors
def study_worker(study_file: Path, storage: StorageOption = None,
                 index: Annotated[int, typer.Option(help="Worker number (offsets the sampler seed).")] = 0,
                 threads: Annotated[Optional[int], typer.Option(help="Torch CPU threads.")] = None,
                 gpus_per_trial: GpusOption = None) -> None:
    """Join an existing study and run trials until its budget is spent (and peers' trials end)."""
    import torch

    from workbench.scaling.validation import plan
    from workbench.study.devices import gpu_count, plan_workers
    from workbench.study.file import load_study
    from workbench.study.storage import default_storage
    from workbench.study.worker import work
    if threads:
        torch.set_num_threads(threads)
    study = load_study(study_file)
    try:
        plan_workers(1, gpu_count(), gpus_per_trial=gpus_per_trial or study.base.train.devices)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    n = work(study, storage or default_storage(study), index, devices=gpus_per_trial, validation=plan)
    out.print(f"worker {index}: ran {n} trial(s)")


@study_app.command("status")
@user_errors
def study_status(study_file: Path, storage: StorageOption = None,
                 as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Counts by state, the best searched trials, baselines, the ladder's progress, failures with reasons."""
    from workbench.study.file import load_study
    from workbench.study.storage import default_storage, load_existing
    from workbench.study.supervisor import summary
    study = load_study(study_file)
    result = summary(load_existing(study, storage or default_storage(study)))
    if as_json:
        print(json.dumps(result, default=str))
    else:
        _print_summary(result)


@study_app.command("export")
@user_errors
def study_export(study_file: Path, output: Annotated[Path, typer.Option("-o", "--output", help="Parquet (or .csv) file.")],
                 storage: StorageOption = None) -> None:
    """One row per trial: spec fields, N, D, C, metrics, status, timings, eval curve."""
    from workbench.study.file import load_study
    from workbench.study.storage import default_storage, load_existing
    from workbench.study.table import trials_table, write_table
    study = load_study(study_file)
    df = trials_table(load_existing(study, storage or default_storage(study)))
    write_table(df, output)
    out.print(f"wrote {len(df)} trials x {len(df.columns)} columns to {output}")
