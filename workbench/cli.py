"""The `workbench` command line. Each command is a thin shell over a library function; errors a
user can cause print one line per problem (file:line: field: message) and exit 2."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from workbench.specfile import SpecError, load_spec, parse_override

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Declarative architecture search and scaling laws for language models.")
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

SetOption = Annotated[Optional[list[str]], typer.Option(
    "--set", help="Override a field, e.g. --set model.depth=4 (repeatable).")]


def user_errors(fn):
    """Turn the errors a user can cause into clear lines and exit code 2, never a traceback."""
    from workbench.data import DataError
    from workbench.fit import FitError
    from workbench.parallel import LaunchError
    from workbench.study import StorageError

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SpecError as e:
            for issue in e.issues:
                err.print(f"[red]error[/red] {issue}", markup=True, soft_wrap=True)
        except (DataError, FileNotFoundError, StorageError, FitError, LaunchError) as e:
            err.print(f"[red]error[/red] {e}", soft_wrap=True)
        raise typer.Exit(2)
    return wrapper


def _spec(path: Path, sets: list[str] | None):
    return load_spec(path, dict(parse_override(s) for s in sets or []))


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="Spec or study files to check.")]) -> None:
    """Check spec and study files; report every problem in every file at once."""
    from workbench.accounting import count_params
    from workbench.search import ladder_points, load_study
    from workbench.specfile import read_yaml
    bad = 0
    for path in files:
        try:
            if "base" in read_yaml(path)[0]:
                study = load_study(path)
                out.print(f"ok  {path}  (study {study.name}: {study.spec.trials} searched trials, "
                          f"{len(study.spec.enqueue)} baselines, {len(ladder_points(study))} ladder points)")
                continue
            spec = load_spec(path)
        except SpecError as e:
            bad += 1
            for issue in e.issues:
                err.print(f"[red]error[/red] {issue}", soft_wrap=True)
            continue
        out.print(f"ok  {path}  ({spec.name}, {count_params(spec).total:,} parameters)")
    if bad:
        err.print(f"{bad} of {len(files)} file(s) invalid")
        raise typer.Exit(1)


@app.command()
def schema() -> None:
    """Print the JSON Schema of spec files (for YAML editors)."""
    from workbench.spec import Spec
    print(json.dumps(Spec.model_json_schema(), indent=2))


@app.command()
@user_errors
def describe(spec_file: Path, set_: SetOption = None,
             as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Parameter counts, FLOPs per token, training compute and a memory estimate."""
    from workbench.accounting import describe as describe_spec
    info = describe_spec(_spec(spec_file, set_))
    if as_json:
        print(json.dumps(info, indent=2))
        return
    table = Table(title=f"{info['name']}", show_header=False, box=None)
    for key, value in info["params"].items():
        table.add_row(f"params.{key}", f"{value:,}")
    for key, value in info["flops_per_token"].items():
        table.add_row(f"flops/token [{key}]", f"{value:,.0f}")
    table.add_row("training tokens (D)", f"{info['tokens']:,}" if info["tokens"] else "set by seconds")
    for key, value in (info["compute"] or {}).items():
        table.add_row(f"training compute [{key}]", f"{value:.3e} FLOPs")
    if info["finetune"]:
        ft = info["finetune"]
        table.add_row("fine-tuning tokens", f"{ft['tokens']:,}" if ft["tokens"] else "set by seconds")
        for key, value in (ft["compute"] or {}).items():
            table.add_row(f"fine-tuning compute [{key}]", f"{value:.3e} FLOPs")
    for key, value in info["memory_bytes"].items():
        table.add_row(f"memory.{key} (estimate)", f"{value / 2**20:,.1f} MiB")
    out.print(table)


@app.command()
@user_errors
def train(spec_file: Path, set_: SetOption = None,
          out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run folder.")] = None,
          quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False) -> None:
    """Train a spec briefly and write its run folder."""
    from workbench.train import train as train_spec
    spec = _spec(spec_file, set_)
    run_dir = out_dir or Path("runs") / f"{spec.name}-{datetime.now():%Y%m%d-%H%M%S}"
    record = train_spec(spec, run_dir, progress=not quiet and sys.stderr.isatty())
    table = Table(show_header=False, box=None)
    rows = [("status", record.status + (f" ({record.reason})" if record.reason else "")),
            ("params (total / non-embedding)", f"{record.params['total']:,} / {record.params['nonembedding']:,}"),
            ("tokens (D)", f"{record.tokens:,}"), ("compute (6N+attn)", f"{record.compute['6N+attn']:.3e} FLOPs")]
    if record.val_bpb is not None:
        rows += [("val bits per byte", f"{record.val_bpb:.4f}"), ("val loss / perplexity",
                 f"{record.val_loss:.4f} / {record.val_ppl:.2f}")]
    if record.entropy_bpb is not None:
        rows.append(("corpus entropy (bpb)", f"{record.entropy_bpb:.4f}"))
    if record.finetune_val_bpb is not None:
        rows += [("fine-tuned bpb (its corpus)", f"{record.finetune_val_bpb:.4f}"),
                 ("fine-tuning gain / forgetting", f"{record.finetune_gain_bpb:+.4f} / {record.forgetting_bpb:+.4f} bpb")]
    if record.suite is not None:
        s = record.suite
        rows += [(f"top-1 / int8 bpb ({s.corpus})", f"{s.metrics.top1:.1%} / {s.int8_bpb:.4f}")]
        if s.completion:
            rows.append((f"completions ({s.completion.tasks})",
                         f"exact {s.completion.exact_match:.1%}, BLEU {s.completion.bleu:.3f}"))
    rows += [("tokens/s", f"{record.tokens_per_s:,.0f}" if record.tokens_per_s else "-"),
             ("MFU", f"{record.mfu:.1%}" if record.mfu else "-"),
             ("wall time", f"{record.wall_s:.1f} s"), ("run folder", str(run_dir))]
    for row in rows:
        table.add_row(*row)
    out.print(table)
    if record.status == "diverged":
        raise typer.Exit(3)


@app.command()
@user_errors
def sample(run_dir: Path, prompt: Annotated[str, typer.Option(help="Text to continue.")] = "",
           tokens: Annotated[int, typer.Option(help="Tokens to generate.")] = 200,
           temperature: float = 0.8, top_k: int = 50, seed: int = 0) -> None:
    """Generate text from a trained run."""
    from workbench.sample import generate, load_run
    model, tok = load_run(run_dir)
    print(prompt + generate(model, tok, prompt, tokens, temperature, top_k, seed))


@app.command()
@user_errors
def bench(spec_file: Path, set_: SetOption = None,
          steps: Annotated[int, typer.Option(help="Timed steps.")] = 20,
          as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """Measure training tokens/s, step time, MFU and peak memory on this device."""
    from workbench.bench import bench as bench_spec
    result = bench_spec(_spec(spec_file, set_), steps=steps)
    if as_json:
        print(json.dumps(result))
        return
    table = Table(title=f"bench {result['name']} on {result['device']}", show_header=False, box=None)
    table.add_row("tokens/s", f"{result['tokens_per_s']:,.0f}")
    table.add_row("step time", f"{result['step_time_s'] * 1e3:.1f} ms")
    table.add_row("MFU", f"{result['mfu']:.1%} of {result['peak_flops'] / 1e9:,.0f} GFLOP/s measured")
    table.add_row("peak memory", f"{result['peak_memory_bytes'] / 2**20:,.0f} MiB ({result['peak_memory_kind']})")
    for phase, seconds in result["phase_seconds_per_step"].items():
        table.add_row(f"  {phase}", f"{seconds * 1e3:.2f} ms/step")
    table.add_row("outside fwd/bwd/optimizer", f"{result['outside_model_fraction']:.1%}")
    out.print(table)


study_app = typer.Typer(no_args_is_help=True, help="Run and inspect Optuna studies over specs.")
app.add_typer(study_app, name="study")
GpusOption = Annotated[Optional[int], typer.Option(
    min=1, help="Devices per trial: each trial runs as an Accelerate data-parallel job on this many "
                "GPUs (CPU processes without GPUs). Default: the base spec's train.devices.")]
StorageOption = Annotated[Optional[str], typer.Option(
    help="Optuna storage: a journal file path (default: runs/NAME/study.journal) or "
         "postgresql+psycopg://user@host/db.")]


@study_app.command("run")
@user_errors
def study_run(study_file: Path,
              workers: Annotated[str, typer.Option(help="Worker processes, or auto: one per GPU (x --trials-per-gpu), 1 on CPU.")] = "1",
              trials_per_gpu: Annotated[int, typer.Option(help="Trials packed on each GPU.")] = 1,
              gpus_per_trial: GpusOption = None,
              storage: StorageOption = None) -> None:
    """Run (or resume) a study with N worker processes until its budget is spent."""
    from workbench.devices import gpu_count, plan_workers
    from workbench.search import load_study
    from workbench.study import default_storage, supervise
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
            err.print(f"[{datetime.now():%H:%M:%S}] {line}")
            last[0] = line

    try:
        result = supervise(study, url, workers, on_progress=progress, trials_per_gpu=trials_per_gpu,
                           gpus_per_trial=gpus_per_trial)
    except KeyboardInterrupt:
        err.print(f"interrupted; finished trials are kept in {url}: run the same command to resume")
        raise typer.Exit(130) from None
    _print_summary(result)
    out.print(f"storage: {url}")


def _progress_line(s: dict) -> str:
    states = ", ".join(f"{n} {k}" for k, n in sorted(s["states"].items()))
    best = s["best"][0] if s["best"] else None
    tail = f" | best {s['objectives'][0]} {best['values'][0]:.4f} (trial {best['number']})" if best else ""
    return f"{s['counted']}/{s['planned']} trials: {states}{tail}"


def _print_summary(s: dict) -> None:
    table = Table(title=f"study {s['study']}: " + ", ".join(f"{n} {k}" for k, n in sorted(s["states"].items())))
    table.add_column("trial")
    for name in s["objectives"]:
        table.add_column(name)
    table.add_column("fields")
    for t in s["best"]:
        table.add_row(str(t["number"]), *(f"{v:.4g}" for v in t["values"]),
                      ", ".join(f"{k}={v}" for k, v in t["fields"].items()))
    out.print(table)
    for f in s["failures"]:
        out.print(f"trial {f['number']} {f['status']}: {f['reason']}", soft_wrap=True)


@study_app.command("worker")
@user_errors
def study_worker(study_file: Path, storage: StorageOption = None,
                 index: Annotated[int, typer.Option(help="Worker number (offsets the sampler seed).")] = 0,
                 threads: Annotated[Optional[int], typer.Option(help="Torch CPU threads.")] = None,
                 gpus_per_trial: GpusOption = None) -> None:
    """Join an existing study and run trials until its budget is spent (and peers' trials end)."""
    import torch

    from workbench.devices import gpu_count, plan_workers
    from workbench.search import load_study
    from workbench.study import default_storage, work
    if threads:
        torch.set_num_threads(threads)
    study = load_study(study_file)
    try:
        plan_workers(1, gpu_count(), gpus_per_trial=gpus_per_trial or study.base.train.devices)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    n = work(study, storage or default_storage(study), index, devices=gpus_per_trial)
    out.print(f"worker {index}: ran {n} trial(s)")


@study_app.command("status")
@user_errors
def study_status(study_file: Path, storage: StorageOption = None,
                 as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Counts by state, best trials, failures with reasons."""
    from workbench.search import load_study
    from workbench.study import default_storage, load_existing, summary
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
    from workbench.results import trials_table, write_table
    from workbench.search import load_study
    from workbench.study import default_storage, load_existing
    study = load_study(study_file)
    df = trials_table(load_existing(study, storage or default_storage(study)))
    write_table(df, output)
    out.print(f"wrote {len(df)} trials x {len(df.columns)} columns to {output}")


@app.command()
@user_errors
def fit(source: Annotated[Path, typer.Argument(help="A study file, or a CSV/Parquet table of runs.")],
        x: Annotated[Optional[str], typer.Option(help="flops, params or tokens (default: the study's scaling.x).")] = None,
        form: Annotated[str, typer.Option(help="auto, or a comma list of x, x-noE, nd, nd-tied.")] = "auto",
        group_by: Annotated[Optional[str], typer.Option(help="Fit and compare groups of this field.")] = None,
        target_flops: Annotated[Optional[float], typer.Option(help="Compute to predict at (default 100x the largest run).")] = None,
        bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 1000,
        huber_delta: Annotated[float, typer.Option(help="Huber delta on log residuals.")] = 1e-3,
        loss: Annotated[Optional[str], typer.Option(help="val_bpb, val_loss, finetune_val_bpb or finetune_val_loss "
                                                    "(default: the study's scaling.loss, else val_bpb).")] = None,
        n_convention: Annotated[str, typer.Option(help="total or nonembedding parameters.")] = "total",
        c_convention: Annotated[str, typer.Option(help="6N or 6N+attn compute.")] = "6N+attn",
        fixed_e: Annotated[Optional[float], typer.Option(help="Fix the irreducible loss E.")] = None,
        outliers: Annotated[Optional[float], typer.Option(help="Drop runs whose log residual is beyond K robust SDs.")] = None,
        storage: StorageOption = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the fit as JSON.")] = False) -> None:
    """Fit scaling laws with bootstrap intervals and backtests; writes the fit as JSON."""
    from workbench.fit import fit_path, fit_source, save
    from workbench.fit_display import render
    result = fit_source(source, x=x, form=form, group_by=group_by, target_flops=target_flops,
                        bootstrap=bootstrap, huber_delta=huber_delta, loss=loss, n_convention=n_convention,
                        c_convention=c_convention, fixed_e=fixed_e, outliers=outliers, storage=storage)
    path = save(result, fit_path(source))
    if as_json:
        print(json.dumps(result))
        return
    out.print(render(result))
    out.print(f"fit: {path}")


@app.command()
@user_errors
def report(study_file: Path, output: Annotated[Optional[Path], typer.Option("-o", "--output", help="HTML file (default reports/NAME.html).")] = None,
           storage: StorageOption = None,
           samples: Annotated[bool, typer.Option(help="Generate text samples from the best models.")] = True,
           bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the fit intervals.")] = 1000) -> None:
    """Write one self-contained HTML report of a study (finished, running or crashed)."""
    from workbench import report as report_mod
    from workbench.search import load_study
    from workbench.study import default_storage, load_existing
    study = load_study(study_file)
    url = storage or default_storage(study)
    ostudy = load_existing(study, url)
    fit, fit_error = _try_fit(study_file, url, bootstrap)
    path = report_mod.write(study, ostudy, output or Path("reports") / f"{study.name}.html",
                            fit=fit, fit_error=fit_error, samples=samples)
    out.print(f"report: {path}")


def _try_fit(source: Path, storage: str | None, bootstrap: int) -> tuple[dict | None, str | None]:
    """The scaling fit for the report, or the reason there is none."""
    from workbench.fit import FitError, fit_source
    try:
        return fit_source(source, storage=storage, bootstrap=bootstrap), None
    except FitError as e:
        return None, str(e)


def main() -> None:
    app()
