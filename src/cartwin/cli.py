"""The front door: ``cartwin run | validate | show | score | report | export | fit | sensitivity |
validate-model | design | serve``.

Exit codes: 0 success, 2 bad input (protocol, data, output directory), 1 any other failure.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cartwin import __version__
from cartwin.protocol.schema import MAX_PATIENTS_PER_ARM
from cartwin.store import layout

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="cartwin: virtual trials of CD19 CAR-T cell therapy in autoimmune disease.")
# markup off: file names, arm ids and messages are printed as written ("trial[v2].toml" lost its
# "[v2]" as a style tag); the few coloured words ask for markup and escape what they interpolate
err = Console(stderr=True, soft_wrap=True, markup=False)
out = Console(soft_wrap=True, markup=False)

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1


class BadInput(Exception):
    pass


def _bad_input_types() -> tuple[type[BaseException], ...]:
    from cartwin.protocol import ProtocolError
    from cartwin.store.run_directory import RunDirectoryError
    from cartwin.fit.errors import FitError
    from cartwin.io.errors import InterchangeError
    from cartwin.validation.suite import SuiteError
    from cartwin.design.spec import DesignSpecError
    from cartwin.design.output import DesignOutputError
    types: list[type[BaseException]] = [ProtocolError, RunDirectoryError, BadInput, InterchangeError,
                                        FitError, SuiteError, DesignSpecError, DesignOutputError]
    try:
        from cartwin.clinical import ObservationError  # noqa: PLC0415
        types.append(ObservationError)
    except ImportError:
        pass
    return tuple(types)


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")):
    if version:
        out.print(f"cartwin {__version__}")
        raise typer.Exit(0)


@app.command()
def validate(protocol: Path = typer.Argument(..., help="Protocol file (TOML).")):
    """Check a protocol file without running it: everything `run` checks before it writes (an
    SBML model is imported and its code parsed)."""
    from cartwin.protocol import load_protocol
    from cartwin.plan import check_loadable, make_plan
    loaded = load_protocol(protocol)
    plan = make_plan(loaded.protocol, workers=1)
    from cartwin.run import scoring_notes
    ctx = check_loadable(loaded.protocol)
    p = loaded.protocol
    out.print(f"[green]ok[/green] {escape(str(protocol))}: study {escape(p.study_id)}, {len(p.arms)} arm(s), "
              f"{sum(plan.n_per_arm.values())} patients"
              + (f" in each of {plan.replicates} replicate trials" if plan.replicates else "")
              + f", seed {p.seed}, follow-up {p.follow_up_days:g} days", markup=True)
    for note in scoring_notes(p.outputs, ctx.model):
        err.print(f"[yellow]note[/yellow]: {escape(note)}", highlight=False, markup=True)


@app.command()
def run(
    protocol: Path = typer.Argument(..., help="Protocol file (TOML)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Run directory to create (must be new or empty)."),
    n: Optional[int] = typer.Option(None, "--n", min=1, max=MAX_PATIENTS_PER_ARM, help="Override the number of patients per arm."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="Override the protocol's seed."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Worker processes on this machine (default: all cores); with --cluster local, the local Dask cluster's size."),
    chunk_size: Optional[int] = typer.Option(None, "--chunk-size", min=1, help="Patients per chunk (default: automatic)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out."),
    report: bool = typer.Option(False, "--report", help="Also write the HTML report (workers score each chunk as it is stored)."),
    cluster: Optional[str] = typer.Option(
        None, "--cluster", help="Compute chunks on Dask: 'local' starts a local cluster of --workers "
        "processes; tcp://HOST:8786 uses that scheduler, whose workers must see --out at the same "
        "path (docs/cluster.md). Needs cartwin[cluster]."),
):
    """Simulate a protocol and store the results in a run directory."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from cartwin.protocol import load_protocol
    from cartwin.run import run_protocol

    if cluster is not None:
        _check_cluster_options(cluster, workers)
    _output_dir(out_dir)
    loaded = load_protocol(protocol)
    show_bar = err.is_terminal
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err, disable=not show_bar, transient=True) as bar:
        task = bar.add_task("simulating chunks", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        summary = run_protocol(loaded, out_dir, n_per_arm=n, seed=seed, workers=workers,
                               chunk_size=chunk_size, resume=resume, progress=progress, cluster=cluster,
                               score=report)
    msg = (f"[green]done[/green] {summary.n_total} patients "
           f"({summary.chunks_computed} chunks computed, {summary.chunks_reused} reused) in "
           f"{summary.seconds:.1f} s -> {escape(str(summary.out))}")
    out.print(msg, markup=True)
    for note in summary.notes:
        err.print(f"[yellow]note[/yellow]: {escape(note)}", highlight=False, markup=True)
    if summary.n_failed:
        err.print(f"[yellow]{summary.n_failed} patient(s) failed[/yellow]; see {layout.PATIENTS} "
                  f"(status, failure_reason) and {layout.MANIFEST}", markup=True)
        for subject, reason in summary.failed[:10]:
            err.print(f"  {subject}: {reason}")
    if report:
        err.print("writing the report ...", highlight=False)
        _report(out_dir)


# --- output paths: nothing written where the user did not ask for it -------------------------
def _refuse_dangling(path: Path, option: str = "--out") -> None:
    if path.is_symlink() and not path.exists():
        raise BadInput(f"{path}: {option} is a symbolic link to nothing; "
                       "choose another path or remove the link")


def _output_dir(path: Path, option: str = "--out") -> None:
    """An output directory must be new, or an existing directory (the command then checks it
    holds nothing but its own earlier output)."""
    _refuse_dangling(path, option)
    if path.exists() and not path.is_dir():
        raise BadInput(f"{path}: {option} exists and is not a directory; choose a new or empty directory")


def _output_file(path: Path, own_marker: Path, option: str = "--out") -> None:
    """An output file must be new, or this command's own earlier output (recognised by
    ``own_marker`` beside it): a user's file of the same name is never replaced."""
    _refuse_dangling(path, option)
    if path.is_dir():
        raise BadInput(f"{path}: {option} is a directory; give a file name such as dataset.csv")
    if path.exists() and not own_marker.exists():
        raise BadInput(f"{path}: {option} names an existing file that cartwin did not write "
                       f"(no {own_marker.name} beside it); choose a new file name or remove it")


def _own_cdisc_dir(path: Path) -> None:
    """A CDISC export goes into a new or empty directory, or replaces an earlier export (which
    carries define.json with its provenance); a directory of the user's own CSV files is refused."""
    _output_dir(path)
    if not path.is_dir() or not any(path.iterdir()):
        return
    import json  # noqa: PLC0415
    try:
        define = json.loads((path / "define.json").read_text())
    except (OSError, ValueError):
        define = None
    if not isinstance(define, dict) or "provenance" not in define:
        raise BadInput(f"{path}: --out holds files that are not an earlier cartwin export (no "
                       "define.json); give a new or empty directory")


def _refuse_sbml_run(path: Path, command: str) -> None:
    """Scores and the report grade lupus read-outs (SLEDAI, CTCAE, ASTCT...) that an imported SBML
    model does not give: say so instead of failing on its read-outs' names."""
    from cartwin.store.run_directory import RunDirectory  # noqa: PLC0415
    name = RunDirectory(path).imported_model()
    if name is not None:
        raise BadInput(f"{path}: a run of an imported SBML model ({name}); "
                       f"`cartwin {command}` is not available for SBML runs (it grades lupus read-outs that "
                       "the model does not give). Use `cartwin show`, `cartwin export nonmem` or read the "
                       "tables (docs/run_directory.md).")


def _check_cluster_options(cluster: str, workers: Optional[int]) -> None:
    import importlib.util  # noqa: PLC0415
    if importlib.util.find_spec("distributed") is None:
        raise BadInput("--cluster needs dask.distributed, which is not installed: pip install 'cartwin[cluster]'")
    if cluster != "local" and ":" not in cluster:
        raise BadInput(f"--cluster {cluster!r}: expected 'local' or a scheduler address such as "
                       "tcp://HOST:8786")
    if cluster != "local" and workers is not None:
        # the remote cluster's size is set where it was started (dask worker, jobqueue, Kubernetes)
        raise BadInput("--workers sets the size of a local cluster; with --cluster ADDRESS the "
                       "scheduler's workers are used: drop --workers, or use --cluster local")


def _report(run_dir: Path) -> None:
    try:
        from cartwin.report import write_report  # noqa: PLC0415
    except ImportError:
        raise BadInput("the report module is not available in this installation") from None
    path = write_report(run_dir)
    out.print(f"report -> {path}")


@app.command()
def report(run_dir: Path = typer.Argument(..., help="A completed run directory.")):
    """Write the HTML report of a run: DIR/report/report.html, figures beside it."""
    from cartwin.report import ReportError
    _refuse_sbml_run(run_dir, "report")
    try:
        _report(run_dir)
    except ReportError as exc:
        raise BadInput(str(exc)) from None


@app.command()
def show(run_dir: Path = typer.Argument(..., help="A run directory.")):
    """Summarise a run directory: arms, patients, failures and median key read-outs."""
    from cartwin.store.run_directory import RunDirectory, RunDirectoryError
    from cartwin.store.summary import arm_summary, run_header

    if not run_dir.exists():
        raise RunDirectoryError(f"{run_dir}: no such directory; give the --out directory of a `cartwin run`")
    if not run_dir.is_dir():
        raise RunDirectoryError(f"{run_dir}: not a directory; give the --out directory of a `cartwin run`")
    rd = RunDirectory(run_dir)
    rd.manifest()  # a directory that is not a completed run is named for what it is, with advice to fit
    header = run_header(rd)
    out.print(header)
    rows = arm_summary(rd)
    # arms in the protocol's order (the manifest keeps it), not alphabetical
    order = {arm: i for i, arm in enumerate(rd.manifest().get("n_per_arm", {}))}
    rows = sorted(rows, key=lambda r: order.get(r["arm"], len(order)))
    for table in _arm_tables(rows, out.width):
        out.print(table)


def _arm_tables(rows: list[dict], width: int) -> list[Table]:
    """The per-arm summary as tables of read-outs (rows) by arms (columns), as many arms to a table
    as fit the terminal's width: names and values stay whole and in the protocol's order, where one
    wide table would fold every cell to a letter per line (nine arms on an 80-column terminal)."""
    keys = list(rows[0].keys())[1:]
    label_width = max(len(key) for key in keys) + 3  # content, padding and the border on its left
    groups: list[list[dict]] = [[]]
    used = label_width + 1
    for row in rows:
        needed = max(len(str(row["arm"])), *(len(str(row[key])) for key in keys)) + 3
        if groups[-1] and used + needed > width:
            groups.append([])
            used = label_width + 1
        groups[-1].append(row)
        used += needed
    tables = []
    for k, group in enumerate(groups):
        part = f" ({k + 1} of {len(groups)})" if len(groups) > 1 else ""
        table = Table(title=f"Per arm: medians over ok patients [5-95%]{part}")
        table.add_column("", overflow="fold")
        for row in group:
            table.add_column(str(row["arm"]), overflow="fold")
        for key in keys:
            table.add_row(key, *[str(row[key]) for row in group])
        tables.append(table)
    return tables


@app.command()
def score(
    data: Path = typer.Argument(..., help="Observations (CSV or Parquet) or a run directory."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Directory for the scores and grades (must be new or empty)."),
    baseline_day: Optional[float] = typer.Option(
        None, "--baseline-day", help="Last study day counted as baseline for SLEDAI, SRI-4, the composites, "
        "serology and endpoints (default 0: the infusion day)."),
    lab_baseline_day: Optional[float] = typer.Option(
        None, "--lab-baseline-day", help="Last study day of the CTCAE grading reference (default -5: before "
        "lymphodepletion)."),
):
    """Score and grade observations with the trial's standards (SLEDAI, CTCAE, ASTCT, ...)."""
    from cartwin.scoring import check_baseline_day, run_score_command
    for option, day in (("--baseline-day", baseline_day), ("--lab-baseline-day", lab_baseline_day)):
        try:
            check_baseline_day(option, day)
        except ValueError as exc:
            raise typer.BadParameter(str(exc).split(": ", 1)[1], param_hint=f"'{option}'") from None
    _output_dir(out_dir)
    _refuse_sbml_run(data, "score")
    out.print(run_score_command(data, out_dir, baseline_day, lab_baseline_day), highlight=False)


# --- export: interchange formats (src/cartwin/io; docs/interchange.md) -------------------------
export_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                         help="Write interchange formats: SBML model, NONMEM dataset, CDISC-like domains.")
app.add_typer(export_app, name="export")


@export_app.command("sbml")
def export_sbml_command(
    product: str = typer.Option("autologous_cd19", "--product", help="CAR-T product preset."),
    regimen: str = typer.Option("erlangen", "--regimen", help="Lymphodepletion regimen preset."),
    out_file: Path = typer.Option(..., "--out", "-o", help="SBML file to write (.xml)."),
    cells_per_kg: float = typer.Option(1e6, "--cells-per-kg", help="CAR-T dose, cells/kg."),
    covariate: list[str] = typer.Option([], "--covariate", "-c",
                                        help="Patient covariate NAME=VALUE (e.g. WT=70); typical patient otherwise."),
):
    """Write the default model for one patient, product and regimen as SBML Level 3 Version 2."""
    from cartwin.io.sbml import write_sbml
    _refuse_dangling(out_file)
    covariates = {}
    for item in covariate:
        name, sep, value = item.partition("=")
        try:
            covariates[name.strip()] = float(value)
        except ValueError:
            raise BadInput(f"--covariate {item!r}: expected NAME=NUMBER, e.g. WT=70") from None
    write_sbml(out_file, None, product, regimen, covariates, cells_per_kg)
    out.print(f"SBML -> {out_file}")


@export_app.command("nonmem")
def export_nonmem_command(
    run_dir: Path = typer.Argument(..., help="A completed run directory."),
    out_file: Path = typer.Option(..., "--out", "-o", help="Dataset CSV to write; the dictionary goes beside it."),
    tests: Optional[str] = typer.Option(None, "--tests", help="Comma-separated test codes (default: all)."),
):
    """Write a run as a NONMEM-format dataset (ID TIME DV AMT RATE EVID MDV CMT DVID + covariates)."""
    from cartwin.io.nonmem import export_nonmem
    _output_file(out_file, out_file.with_name(out_file.stem + ".dictionary.json"))
    chosen = [t.strip() for t in tests.split(",") if t.strip()] if tests is not None else None
    if chosen == []:  # "--tests ," or "--tests ''" exported every test, as if the option were absent
        raise BadInput(f"--tests {tests!r} names no test code; give codes such as CART,BCELL, or leave "
                       "--tests out for every test")
    result = export_nonmem(run_dir, out_file, chosen)
    out.print(f"NONMEM dataset -> {result.data} ({result.n_subjects} subjects, {result.n_rows} rows); "
              f"dictionary -> {result.dictionary_json}")
    if result.excluded_subjects:
        out.print(f"left out: {len(result.excluded_subjects)} patients whose simulation failed (listed in the dictionary)")
    if result.n_without_observations:
        out.print(f"left out: {result.n_without_observations} patients whose observations the run did not store "
                  "([store] observations_per_arm in the protocol keeps more)")


@export_app.command("sdtm")
def export_sdtm_command(
    source: Path = typer.Argument(..., help="A run directory, or an observation file (CSV/Parquet)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Directory to write (new or empty)."),
    scored: Optional[Path] = typer.Option(None, "--scored", help="Output directory of `cartwin score` to reuse."),
    study_id: Optional[str] = typer.Option(None, "--study-id", help="STUDYID (default: the run's study id + -SIM)."),
    start_date: Optional[str] = typer.Option(
        None, "--start-date", help="Study start date YYYY-MM-DD for --DTC dates (default: the protocol's "
        "[study] start_date, else 2000-01-01)."),
    country: Optional[str] = typer.Option(
        None, "--country", help="DM COUNTRY, ISO 3166-1 alpha-3 (default: the protocol's [study] country, else ZZZ)."),
):
    """Write SDTM DM, EX, LB, AE, RS and ADaM ADSL, ADLB as CSV and SAS XPORT v5, checked against
    the conformance rules of cartwin.io.cdisc_rules."""
    from cartwin.io.cdisc import export_cdisc
    _own_cdisc_dir(out_dir)
    result = export_cdisc(source, out_dir, scored, study_id, start_date=start_date, country=country)
    counts = ", ".join(f"{k} {v.height}" for k, v in result.datasets.items())
    out.print(f"CDISC SDTM/ADaM datasets -> {result.out_dir} ({counts}); conformance rules "
              f"(cartwin.io.cdisc_rules): {len(result.findings)} findings")
    for finding in result.findings:
        out.print(f"  {finding}")
    if result.n_without_observations:
        out.print(f"left out: {result.n_without_observations} patients whose observations the run did not store "
                  "([store] observations_per_arm in the protocol keeps more)")


# --- fit and sensitivity (src/cartwin/fit; docs/fitting.md) ----------------------------------
def _name_values(items: list[str], option: str) -> dict[str, float]:
    values = {}
    for item in items:
        for part in item.split(","):
            name, sep, value = part.partition("=")
            try:
                values[name.strip()] = float(value)
            except ValueError:
                raise BadInput(f"{option} {part!r}: expected NAME=NUMBER, e.g. CART=0.01") from None
            if not sep or not name.strip():
                raise BadInput(f"{option} {part!r}: expected NAME=NUMBER, e.g. CART=0.01")
    return values


def _names(text: Optional[str]) -> Optional[list[str]]:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


@app.command("fit")
def fit_command(
    data: Path = typer.Argument(..., help="Observation file (CSV/Parquet: subject, day, test, value, unit), a NONMEM-format CSV (ID, EVID, DV, DAY) or a run directory."),
    estimate: str = typer.Option(..., "--estimate", "-e", help="Comma-separated parameters to estimate, e.g. RHO,K_E,MTT_PRE."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Output directory (new or empty)."),
    subjects: Optional[Path] = typer.Option(None, "--subjects", help=f"Subject table ({layout.PATIENTS} layout; docs/fitting.md); not needed for a run directory."),
    tests: Optional[str] = typer.Option(None, "--tests", help="Comma-separated tests to fit (default: every test the model predicts)."),
    lloq: list[str] = typer.Option([], "--lloq", help="TEST=VALUE: values at or below are below quantification (repeatable)."),
    censoring: str = typer.Option("m1", "--censoring", help="Values below the LLOQ (--lloq, or flagged BLQ in the data): m1 leaves them out; m3 keeps them as censored, likelihood P(y < LLOQ)."),
    initial: list[str] = typer.Option([], "--initial", help="PARAM=VALUE starting typical value (repeatable)."),
    protocol: Optional[Path] = typer.Option(None, "--protocol", help="Protocol defining the subjects' arms (user products or regimens)."),
    vpc: int = typer.Option(200, "--vpc", min=0, help="Replicates of the visual predictive check (0: none)."),
    seed: int = typer.Option(1, "--seed", min=0, help="Seed of the visual predictive check."),
):
    """Population fit (nonlinear mixed effects, FOCE) of chosen model parameters to data."""
    from cartwin.fit.api import fit
    _output_dir(out_dir)
    loaded = None
    if protocol is not None:
        from cartwin.protocol import load_protocol
        loaded = load_protocol(protocol).protocol
    names = _names(estimate) or []

    def progress(step: dict) -> None:
        err.print(f"iteration {step['iteration']}: OFV {step['ofv']:.3f}, max change {step['max_change']:.2e}, "
                  f"{step['seconds']:.1f} s", highlight=False)

    result = fit(data, names, subjects=subjects, out=out_dir, tests=_names(tests),
                 lloq=_name_values(lloq, "--lloq"), protocol=loaded,
                 initial=_name_values(initial, "--initial"), vpc_replicates=vpc,
                 seed=seed, progress=progress, censoring=censoring)
    lo, hi = result.typical_interval()
    table = Table(title=f"Population estimates ({'converged' if result.converged else 'NOT converged'}, "
                        f"OFV {result.ofv:.2f})")
    for col in ("parameter", "typical", "95% interval", "omega"):
        table.add_column(col)
    for k, name in enumerate(result.estimate):
        table.add_row(name, f"{result.typical[k]:.4g}", f"{lo[k]:.4g} - {hi[k]:.4g}", f"{result.omega[k]:.3f}")
    out.print(table)
    out.print(f"estimates, plots and report -> {out_dir}")


@app.command("sensitivity")
def sensitivity_command(
    protocol: Path = typer.Argument(..., help="Protocol file (TOML): the arm and patient to analyse."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Output directory (new or empty)."),
    outputs: Optional[str] = typer.Option(None, "--outputs", help="Comma-separated endpoints (default: all; see docs/fitting.md)."),
    parameters: Optional[str] = typer.Option(None, "--parameters", "-p", help="Comma-separated parameters (default: every parameter with IIV)."),
    range_: list[str] = typer.Option([], "--range", help="PARAM=LOW:HIGH range instead of the IIV-based one (repeatable)."),
    arm: Optional[str] = typer.Option(None, "--arm", help="Arm id (default: the first arm)."),
    patient: int = typer.Option(0, "--patient", min=0, help="Which virtual patient of the arm (index)."),
    n: int = typer.Option(64, "--n", min=2, help="Sobol base sample size (a power of 2); model runs = n x (parameters + 2)."),
    seed: int = typer.Option(1, "--seed", min=0, help="Seed of the Sobol sequence scramble and bootstrap."),
):
    """Sobol indices of clinical endpoints over parameter ranges (SALib)."""
    from cartwin.fit.sensitivity import sensitivity
    from cartwin.protocol import load_protocol
    _output_dir(out_dir)
    ranges = {}
    for item in range_:
        name, sep, span = item.partition("=")
        low, colon, high = span.partition(":")
        try:
            ranges[name.strip()] = (float(low), float(high))
        except ValueError:
            raise BadInput(f"--range {item!r}: expected PARAM=LOW:HIGH, e.g. RHO=0.8:2.0") from None
    loaded = load_protocol(protocol).protocol
    result = sensitivity(loaded, outputs=_names(outputs), parameters=_names(parameters),
                         ranges=ranges, arm=arm, patient=patient, n=n, seed=seed, out=out_dir)
    table = Table(title=f"First-order (S1) and total (ST) Sobol indices, {result.n_runs} model runs")
    table.add_column("parameter")
    for o in result.outputs:
        table.add_column(f"{o} S1")
        table.add_column(f"{o} ST")
    for k, name in enumerate(result.parameters):
        table.add_row(name, *[f"{result.indices[o][kind][k]:.2f}" for o in result.outputs
                              for kind in ("S1", "ST")])
    out.print(table)
    out.print(f"indices, samples and plot -> {out_dir}")


@app.command("validate-model")
def validate_model_command(
    n: int = typer.Option(200, "--n", min=2, help="Virtual patients per arm of each scenario."),
    seed: int = typer.Option(20260201, "--seed", min=0, help="Seed of every scenario (the same patients in each)."),
    out_dir: Path = typer.Option(Path("runs/validation"), "--out", "-o", help="Where validation.md and validation_results.csv go (the shipped docs/validation.md is written with --out docs)."),
    only: Optional[str] = typer.Option(None, "--only", help="Comma-separated target ids (default: all); implies --no-sensitivity unless --sensitivity is given."),
    sensitivity: Optional[bool] = typer.Option(None, "--sensitivity/--no-sensitivity", help="Also compute the elasticity table (default: yes, unless --only)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes for each simulation."),
):
    """Score the default model against the published targets (src/cartwin/validation) and write validation.md."""
    from cartwin.validation.command import validate_model
    _output_dir(out_dir)  # a folder (it may hold other files: the report replaces only its own)
    ids = _names(only)
    outcome = validate_model(n=n, seed=seed, out=out_dir, only=ids, workers=workers,
                             sensitivity=(not ids) if sensitivity is None else sensitivity,
                             progress=lambda msg: err.print(msg, highlight=False, markup=False))
    out.print(outcome.summary())
    out.print(f"report -> {outcome.markdown}; table -> {outcome.table}")


@app.command("design")
def design_command(
    spec: Path = typer.Argument(..., help="Design spec (TOML): the space, the goal, the search (docs/design.md)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Output directory (new, empty, or an earlier design's); not needed with --check."),
    n: Optional[int] = typer.Option(None, "--n", min=2, help="Override the virtual patients per design point."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Worker processes (default: the spec's, else 1)."),
    check: bool = typer.Option(False, "--check", help="Only validate the spec."),
):
    """The least lymphodepletion and the CAR-T dose that meet a goal over endpoints, on common virtual patients."""
    from cartwin.design import load_spec, run_design, write_design
    loaded = load_spec(spec)
    if check:
        out.print(f"[green]ok[/green] {escape(str(spec))}: design {escape(loaded.spec.design_id)}", markup=True)
        return
    if out_dir is None:
        raise BadInput("cartwin design: give --out DIR, a new or empty directory for the results "
                       "(or --check to validate the spec only)")
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "design.json").exists():
        raise BadInput(f"{out_dir}: exists and is not empty; give a new directory")
    result = run_design(loaded, workers=workers, patients=n,
                        progress=lambda msg: err.print(msg, highlight=False, markup=False))
    html = write_design(result, out_dir)
    table = Table(title=f"{loaded.spec.design_id}: recommended design per product")
    for column in ("product", "CAR-T dose", "intensity", "cumulative Flu / Cy (mg/m^2)", "requirements at the design"):
        table.add_column(column)
    for r in result.recommendations:
        if r.intensity is None:
            table.add_row(r.product, "-", "-", r.regimen, "")
            continue
        reqs = "; ".join(f"{q['endpoint']} {100 * q['estimate']:.1f}% ({100 * q['lower']:.1f}-{100 * q['upper']:.1f})"
                         for q in r.requirements)
        table.add_row(r.product, r.dose.label, f"{r.intensity:.3g}",
                      f"{r.fludarabine_mg_m2:.4g} / {r.cyclophosphamide_mg_m2:.4g}", reqs)
    out.print(table)
    grid = len(result.levels) * (n or loaded.spec.patients) * len(result.searches)
    searched = sum(sum(s.search.patients.values()) for s in result.searches)
    # the total also holds the grid comparison, the sensitivity runs and the trials' evaluations
    out.print(f"patients simulated: {result.evaluator.simulated} in all; the search needed {searched}, "
              f"where a full grid of the space takes {grid}; {result.seconds:.0f} s")
    out.print(f"report -> {html}")


@app.command("serve")
def serve_command(
    protocol: Optional[Path] = typer.Argument(None, help="Protocol file to open in the editor (default: the bundled example, examples/nct05988216.toml)."),
    runs: Path = typer.Option(Path("cartwin-runs"), "--runs", help="The app's run folder: every run, score and export it makes lives here, and no request reaches outside it."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind. The default serves this machine only; another address exposes the app, which has no login, to that network."),
    port: int = typer.Option(8765, "--port", min=1, max=65535, help="Port to listen on."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes for each run or design search."),
    max_running: int = typer.Option(1, "--max-running", min=1, help="Runs computed at once; the others wait in the queue."),
    max_upload_mb: float = typer.Option(5.0, "--max-upload-mb", min=0.01, help="Largest upload accepted (MiB)."),
):
    """A local web app: design a protocol, run it, read the results, score patients' data (docs/serve.md)."""
    import importlib.util  # noqa: PLC0415
    if importlib.util.find_spec("starlette") is None or importlib.util.find_spec("uvicorn") is None:
        raise BadInput("cartwin serve needs the serve extra, which is not installed: pip install 'cartwin[serve]'")
    if protocol is not None and not protocol.is_file():
        raise BadInput(f"{protocol}: file not found")
    if protocol is not None:
        try:
            protocol.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise BadInput(f"{protocol}: not UTF-8 text; give a protocol file (TOML) to open in the editor") from None
    if runs.exists() and not runs.is_dir():
        raise BadInput(f"--runs {runs}: exists and is not a folder; give the app's run folder (made if missing)")
    _refuse_a_taken_port(host, port)
    from cartwin.serve import serve
    shown = f"[{host}]" if ":" in host else host
    out.print(f"cartwin serve: http://{shown}:{port}/ (runs in {runs.resolve()}); Ctrl-C stops it")
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[yellow]warning[/yellow]: bound to {escape(host)}: anyone who can reach this address can run "
                  "and read trials", markup=True)
    serve(runs, host=host, port=port, workers=workers, max_running=max_running, protocol=protocol,
          max_upload_mb=max_upload_mb)


def _refuse_a_taken_port(host: str, port: int) -> None:
    """Before the address is announced: announced and then refused, it sent the reader to whatever
    already listens there, often another `cartwin serve` over another run folder."""
    import socket  # noqa: PLC0415
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise BadInput(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            raise BadInput(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror}); another program, "
                           "perhaps another `cartwin serve`, may hold it: choose another --port") from None


def _usage_error_types() -> tuple[type[BaseException], ...]:
    """Click's usage errors: typer >= 0.29 vendors click as ``typer._click``; older typers use click."""
    import importlib
    found = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(module).ClickException)
        except ImportError:
            continue
    return tuple(found)


INTERRUPTED = 130  # 128 + SIGINT, as shells report an interrupted command


def _interrupted() -> None:
    """Exit 130; an interrupted run is told the command that resumes it (its own, with --resume)."""
    import shlex  # noqa: PLC0415
    argv = sys.argv[1:]
    if argv[:1] == ["run"]:
        again = ["cartwin", *argv, *([] if "--resume" in argv else ["--resume"])]
        err.print(f"interrupted; resume with `{shlex.join(again)}`", highlight=False, markup=False, soft_wrap=True)
    else:
        err.print("interrupted", highlight=False, markup=False)
    sys.exit(INTERRUPTED)


def _errnos(*names: str) -> frozenset[int]:
    import errno  # noqa: PLC0415
    return frozenset(getattr(errno, name) for name in names if hasattr(errno, name))


# a path the user named that this user may not read or write: bad input (exit 2), not a failure
_NOT_ALLOWED = _errnos("EACCES", "EPERM", "EROFS")


def _not_allowed_message(exc: OSError) -> str:
    """The path as the user named it (an atomic write's temporary ``.NAME.cartwin-XXXX.tmp`` is
    shown as NAME) and what would fix it; for the compiled-code cache, which the user did not
    name, the setting that moves it."""
    path = Path(str(exc.filename))
    target = layout.temporary_target(path.name)
    if target is not None:
        path = path.parent / target
    from cartwin.model.codegen import cache_base  # noqa: PLC0415
    if path.resolve().is_relative_to(cache_base().resolve()):
        return (f"{path}: {exc.strerror or 'not permitted'}; this is cartwin's cache of compiled code: set "
                "CARTWIN_CACHE_DIR to a folder you may write")
    return (f"{path}: {exc.strerror or 'not permitted'}; check its permissions (and its folder's), or choose "
            "another path")


def _keep_freed_memory() -> None:
    """Polars' allocator reads its settings when Polars loads, which every command but the help
    does after this point: a batch command and the worker processes it forks or spawns keep freed
    pages for the next chunk instead of returning them and faulting them in again
    (:func:`cartwin.processes.keep_freed_memory`). Not for ``serve``, a long-lived process that
    should give memory back between requests; a user's own setting wins."""
    from cartwin.processes import keep_freed_memory

    if sys.argv[1:2] != ["serve"]:
        keep_freed_memory()


def main() -> None:
    _keep_freed_memory()
    bad = _bad_input_types()
    usage = _usage_error_types()
    try:
        returned = app(standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _interrupted()
    except bad as exc:
        err.print(f"error: {exc}", highlight=False, markup=False)
        sys.exit(EXIT_BAD_INPUT)
    except usage as exc:  # unknown option, missing --out, out-of-range value
        exc.show()
        sys.exit(EXIT_BAD_INPUT)
    except OSError as exc:
        if exc.errno not in _NOT_ALLOWED or exc.filename is None:  # a path the user can change, or a failure
            err.print(f"failed: {type(exc).__name__}: {exc}", highlight=False, markup=False)
            sys.exit(EXIT_FAILURE)
        err.print(f"error: {_not_allowed_message(exc)}", highlight=False, markup=False)
        sys.exit(EXIT_BAD_INPUT)
    except Exception as exc:
        err.print(f"failed: {type(exc).__name__}: {exc}", highlight=False, markup=False)
        sys.exit(EXIT_FAILURE)
    # outside standalone mode, click returns an interrupted command's exit code instead of raising
    if returned == INTERRUPTED:
        _interrupted()
    if isinstance(returned, int) and not isinstance(returned, bool) and returned != 0:
        sys.exit(returned)


if __name__ == "__main__":
    main()
