"""`workbench fit`, `workbench predict` and `workbench report`: scaling fits of a study or a table
of runs, the loss they predict for one run, and the HTML report of a study. A study is read from
its storage once, as one trials table that both the fit and the page use."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from workbench.cli.app import StorageOption, app, out, user_errors
from workbench.plumbing.errors import FitError, OutputError

SourceArgument = Annotated[Path, typer.Argument(help="A study file, or a CSV/Parquet table of runs.")]
FormOption = Annotated[str, typer.Option(help="auto (every form, both parameter conventions, chosen by "
                                              "held-out error), or a comma list of x, x-noE, nd, nd-noE, nd-tied, nd-dc.")]
BootstrapOption = Annotated[int, typer.Option(help="Bootstrap resamples.")]
LossOption = Annotated[Optional[str], typer.Option(help="val_bpb, val_loss, finetune_val_bpb or finetune_val_loss "
                                                        "(default: the study's scaling.loss, else val_bpb).")]
NOption = Annotated[str, typer.Option(help="total or nonembedding parameters.")]
COption = Annotated[str, typer.Option(help="6N or 6N+attn compute.")]
NoiseOption = Annotated[Optional[float], typer.Option(
    help="Run-to-run noise (SD of log loss) for the intervals (default: from repeated seeds, else estimated).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@app.command()
@user_errors
def fit(source: SourceArgument,
        x: Annotated[Optional[str], typer.Option(help="flops, params or tokens (default: the study's scaling.x).")] = None,
        form: FormOption = "auto",
        group_by: Annotated[Optional[str], typer.Option(help="Fit and compare groups of this field.")] = None,
        target_flops: Annotated[Optional[float], typer.Option(help="Compute to predict at (default 100x the largest run).")] = None,
        bootstrap: BootstrapOption = 1000,
        huber_delta: Annotated[float, typer.Option(help="Huber delta on log residuals.")] = 1e-3,
        loss: LossOption = None, n_convention: NOption = "total", c_convention: COption = "6N+attn",
        fixed_e: Annotated[Optional[float], typer.Option(help="Fix the irreducible loss E.")] = None,
        outliers: Annotated[Optional[float], typer.Option(help="Drop runs whose log residual is beyond K robust SDs.")] = None,
        noise: NoiseOption = None, storage: StorageOption = None, as_json: JsonOption = False,
        output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Where to write the fit's JSON "
                                                       "(default: runs/STUDY/fit.json, or runs/fits/TABLE.fit.json).")] = None) -> None:
    """Fit scaling laws with bootstrap intervals and backtests, choose the law by held-out error,
    and say what to train at the target compute (or why the data cannot say); writes the fit as
    JSON, never beside the user's own table unless asked to."""
    from workbench.plumbing.files import writable_folder
    from workbench.scaling.display import render
    from workbench.scaling.fit import fit_runs, save
    from workbench.scaling.runs import load_runs
    runs, prov = load_runs(source, loss=loss, n_convention=n_convention, c_convention=c_convention,
                           group_by=group_by, storage=storage)
    if output is not None:
        path = output
    elif prov.kind == "study":
        from workbench.study.storage import study_dir
        path = study_dir(prov.study) / "fit.json"
    else:
        path = Path("runs") / "fits" / f"{source.name}.fit.json"
    if path.is_dir():
        raise OutputError(f"--output {path} is a folder, not a file")
    writable_folder(path.parent, "output folder")             # before the fit, not after it
    result = fit_runs(runs, prov, x=x, form=form, target_flops=target_flops, bootstrap=bootstrap,
                      huber_delta=huber_delta, fixed_e=fixed_e, outliers=outliers, noise=noise)
    save(result, path)
    if as_json:
        print(result.to_json())
        return
    out.print(render(result))
    out.print(f"fit: {path}")


@app.command()
@user_errors
def predict(source: SourceArgument,
            params: Annotated[Optional[float], typer.Option(help="Parameters N (in the chosen fit's convention).")] = None,
            tokens: Annotated[Optional[float], typer.Option(help="Training tokens D.")] = None,
            flops: Annotated[Optional[float], typer.Option(help="Compute C; alone: at the compute-optimal N and D.")] = None,
            form: FormOption = "auto", bootstrap: BootstrapOption = 1000, loss: LossOption = None,
            n_convention: NOption = "total", c_convention: COption = "6N+attn", noise: NoiseOption = None,
            storage: StorageOption = None, as_json: JsonOption = False) -> None:
    """The loss one run should reach at --params and --tokens (or --flops), with its 95%
    interval, from the supported fit with the lowest held-out error; exits 1 with the reason
    when the data cannot support a prediction."""
    from workbench.scaling.fit import fit_runs
    from workbench.scaling.predict import check_question, predict as predict_loss
    from workbench.scaling.runs import load_runs
    check_question(params, tokens, flops)
    runs, prov = load_runs(source, loss=loss, n_convention=n_convention, c_convention=c_convention,
                           storage=storage)
    result = fit_runs(runs, prov, form=form, bootstrap=bootstrap, noise=noise)
    answer = predict_loss(result, params=params, tokens=tokens, flops=flops)
    if as_json:
        print(answer.model_dump_json())
    else:
        out.print(answer.text(), soft_wrap=True)
    if not answer.ok:
        raise typer.Exit(1)


@app.command()
@user_errors
def report(study_file: Path, output: Annotated[Optional[Path], typer.Option("-o", "--output", help="HTML file (default reports/NAME.html).")] = None,
           storage: StorageOption = None,
           samples: Annotated[bool, typer.Option(help="Generate text samples from the best models.")] = True,
           bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the fit intervals.")] = 1000) -> None:
    """Write one self-contained HTML report of a study (finished, running or crashed)."""
    from workbench.report.page import write
    from workbench.scaling.fit import fit_runs
    from workbench.scaling.runs import study_runs
    from workbench.study.table import load_trials
    study, ostudy, table = load_trials(study_file, storage)
    try:
        fit, fit_error = fit_runs(*study_runs(study, table), bootstrap=bootstrap), None
    except FitError as e:
        fit, fit_error = None, str(e)
    path = write(study, ostudy, table, output or Path("reports") / f"{study.name}.html",
                 fit=fit, fit_error=fit_error, samples=samples)
    out.print(f"report: {path}")
