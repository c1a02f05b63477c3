"""Data for a fit: observations in the observation format, and what each subject received.

Observations are read by the same reader as scoring (:func:`cartwin.io.observations.read_observations`),
so the fit accepts exactly the files and run directories that scoring accepts, in canonical units.
What each subject received (product, lymphodepletion, CAR-T dose) and who they are (covariates)
comes from a subject table in the layout of a run's patient table (docs/fitting.md); a run
directory carries its own, read through the store. Doses are rebuilt with the engine's dose rules (BSA, renal adjustment),
so a fit sees the same schedule the simulation would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from cartwin.fit.errors import FitError
from cartwin.model.declaration import Model
from cartwin.store import layout
from cartwin.therapy.arm import ArmTherapy, UnknownTherapy, preset_therapy
from cartwin.therapy.dosing import Dose
from cartwin.vocabulary import DESCRIPTOR_FLAGS, PATIENT_COVARIATES, with_derived

# Sex is given as 'sex' (F/M) or SEXF; the descriptors default to absent; BSA and CRCL are
# derived when absent. Every other covariate of the vocabulary is required.
_GIVEN = tuple(c.name for c in PATIENT_COVARIATES.values()
               if c.name != "SEXF" and not c.derived and c.kind != "descriptor")
REQUIRED_SUBJECT_COLUMNS = ("subject", "product", "regimen") + _GIVEN
"""Columns a subject table must have (run patients.parquet names, in the vocabulary's canonical units)."""


@dataclass(frozen=True)
class FitData:
    """Observations of the fitted tests, aligned with the subjects that received known therapy."""

    subjects: tuple[str, ...]
    therapies: tuple[ArmTherapy, ...]
    covariates: np.ndarray  # (N, C) in the model's covariate order
    obs_subject: np.ndarray  # (M,) index into subjects
    obs_day: np.ndarray  # (M,)
    obs_test: np.ndarray  # (M,) index into tests
    obs_value: np.ndarray  # (M,) > 0, canonical unit
    tests: tuple[str, ...]
    units: tuple[str, ...]
    n_below_lloq: dict[str, int]
    source: str

    @property
    def days(self) -> np.ndarray:
        """Every sampling day of any subject, sorted: the solver's output grid."""
        return np.unique(self.obs_day)

    @property
    def n_subjects(self) -> int:
        return len(self.subjects)

    body: np.ndarray | None = None  # (N, 3): BSA m^2, weight kg, CrCl mL/min, for the dose rules
    obs_censored: np.ndarray | None = None
    """(M,) bool: below the LLOQ and kept as censored (M3); ``obs_value`` then holds the LLOQ."""
    censoring: str = "m1"

    def doses(self, i: int) -> list[Dose]:
        bsa, weight, crcl = self.body[i]
        return self.therapies[i].doses(bsa, weight, crcl)

    def observations_frame(self) -> pl.DataFrame:
        return pl.DataFrame({
            "subject": [self.subjects[i] for i in self.obs_subject],
            "day": self.obs_day, "test": [self.tests[t] for t in self.obs_test],
            "value": self.obs_value, "unit": [self.units[t] for t in self.obs_test]})


def _read_table(path: Path) -> pl.DataFrame:
    if not path.exists():
        raise FitError(f"{path}: no such file")
    try:
        return pl.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pl.read_csv(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise FitError(f"{path}: cannot be read as CSV or Parquet ({exc})") from None


def _is_nonmem(path: Path) -> bool:
    """A NONMEM-format dataset (``cartwin export nonmem``, or a user's): a CSV with ID, EVID, DV."""
    if not path.is_file() or path.suffix.lower() != ".csv":
        return False
    header = {c.strip().upper() for c in path.open().readline().split(",")}
    return {"ID", "EVID", "DV"} <= header


def _therapy(row: dict, protocol, where: str) -> ArmTherapy:
    """The subject's therapy: from the protocol's arm when a protocol is given, else presets."""
    per_kg = row.get("dose_cells_per_kg")
    flat = row.get("dose_cells")
    if protocol is not None:
        from cartwin.therapy.arm import resolve_arm
        arms = {a.id: a for a in protocol.arms}
        if row.get("arm") not in arms:
            raise FitError(f"{where}: arm {row.get('arm')!r} is not an arm of the protocol "
                           f"({sorted(arms)}); the subject table's 'arm' column must name one")
        return resolve_arm(protocol, arms[row["arm"]])
    has_per_kg = per_kg is not None and np.isfinite(per_kg)
    if not has_per_kg and (flat is None or not np.isfinite(flat)):
        raise FitError(f"{where}: no CAR-T dose; give 'dose_cells_per_kg' or 'dose_cells'")
    try:
        return preset_therapy(row["product"], row["regimen"], per_kg if has_per_kg else None,
                              None if has_per_kg else flat, arm=row.get("arm") or "")
    except UnknownTherapy as exc:
        raise FitError(f"{where}: {exc}; give the protocol that defines it (--protocol)") from None


def subject_covariates(subjects: pl.DataFrame, model: Model, source: str) -> tuple[np.ndarray, np.ndarray]:
    """The model's covariate matrix from a subject table, and (BSA, weight, CrCl) for the dose
    rules; BSA and CrCl derived (Mosteller, Cockcroft-Gault) when the table lacks them."""
    missing = [c for c in REQUIRED_SUBJECT_COLUMNS if c not in subjects.columns]
    if missing:
        raise FitError(f"{source}: subject table lacks columns {missing} (layout of a run's "
                       f"{layout.PATIENTS}; see docs/fitting.md)")
    if "SEXF" in subjects.columns:
        female = subjects["SEXF"].cast(pl.Float64).to_numpy() > 0.5
    elif "sex" in subjects.columns:
        sexes = subjects["sex"].cast(pl.String).str.to_uppercase()
        bad = sorted(set(sexes.to_list()) - {"F", "M"})
        if bad:
            raise FitError(f"{source}: column 'sex' holds {bad}; expected F or M")
        female = (sexes == "F").to_numpy()
    else:
        raise FitError(f"{source}: subject table needs 'sex' (F/M) or 'SEXF' (1/0)")
    cols: dict[str, np.ndarray] = {"SEXF": female.astype(float)}
    for name in _GIVEN:
        values = subjects[name].cast(pl.Float64, strict=False).to_numpy()
        bad_rows = np.flatnonzero(~np.isfinite(values) | (values < 0))
        if bad_rows.size:
            raise FitError(f"{source}: column {name!r} is missing, negative or not a number in data "
                           f"rows {(bad_rows + 1).tolist()[:10]}")
        cols[name] = values
    for flag in DESCRIPTOR_FLAGS.values():
        # descriptors only drive the disease read-outs; absent means "not active at baseline"
        cols[flag] = (subjects[flag].cast(pl.Float64).fill_null(0.0).to_numpy() if flag in subjects.columns
                      else np.zeros(subjects.height))
    for name in ("BSA", "CRCL"):
        if name in subjects.columns:
            cols[name] = subjects[name].cast(pl.Float64).to_numpy()
    cols = with_derived(cols, keep_given=True)
    lacking = [c for c in model.covariate_names if c not in cols]
    if lacking:
        raise FitError(f"model {model.name} needs covariates {lacking} that the subject table lacks")
    return (np.column_stack([cols[c] for c in model.covariate_names]),
            np.column_stack([cols["BSA"], cols["WT"], cols["CRCL"]]))


def _with_run_censoring(frame: pl.DataFrame, run) -> pl.DataFrame:
    """A run's observations with the observation model's ``lloq`` and ``blq`` joined on (the
    scoring reader reports values below the LLOQ as 0; the fit needs the limit)."""
    from cartwin.store import layout
    lazy = run.observations()
    if layout.OBSERVATION_BLQ not in lazy.collect_schema().names():
        return frame
    flags = lazy.select(pl.col("subject").cast(pl.String), pl.col("day").cast(pl.Float64),
                        pl.col("test").cast(pl.String), pl.col(layout.OBSERVATION_LLOQ).alias("lloq"),
                        pl.col(layout.OBSERVATION_BLQ).alias("blq")).collect()
    return frame.with_columns(pl.col("test").cast(pl.String)).join(
        flags, on=["subject", "day", "test"], how="left")


def load_fit_data(observations: str | Path | pl.DataFrame, model: Model, *,
                  subjects: str | Path | pl.DataFrame | None = None, tests: list[str] | None = None,
                  lloq: dict[str, float] | None = None, protocol=None, censoring: str = "m1") -> FitData:
    """Observations (file, run directory or a frame in the observation format) and a subject table
    (file or frame; taken from the run directory when ``observations`` is one).

    Below quantification: values at or below a test's LLOQ (``lloq``), values <= 0, and rows
    flagged BLQ (a run with the observation model on; a NONMEM dataset's BLQ or CENS column; a
    frame's ``blq`` column, with its ``lloq``). ``censoring="m1"`` leaves them out (Beal's M1);
    ``"m3"`` keeps those with a known LLOQ as censored observations, P(y < LLOQ) (Beal's M3), and
    leaves out only those without one. The counts are reported."""
    if censoring not in ("m1", "m3"):
        raise FitError(f"censoring {censoring!r}: use 'm1' (leave values below the LLOQ out) or 'm3' "
                       "(keep them as censored)")
    from cartwin.clinical import ObservationError
    from cartwin.io.observations import read_observations
    from cartwin.store.run_directory import RunDirectoryError, open_run

    source = "<frame>" if isinstance(observations, pl.DataFrame) else str(observations)
    subject_source = None
    if isinstance(observations, pl.DataFrame):
        frame = observations
        missing = [c for c in ("subject", "day", "test", "value", "unit") if c not in frame.columns]
        if missing:
            raise FitError(f"{source}: observations lack columns {missing}")
    elif _is_nonmem(Path(observations)):
        from cartwin.io import InterchangeError
        from cartwin.io.nonmem import read_nonmem
        try:
            frame = read_nonmem(observations).observations
        except InterchangeError as exc:
            raise FitError(str(exc)) from None
    else:
        try:
            frame = read_observations(observations).frame
            if Path(observations).is_dir():
                run = open_run(observations, complete=False, tables=("patients",))
                frame = _with_run_censoring(frame, run)
                if subjects is None:
                    subjects, subject_source = run.patients(), run.source("patients")
        except (ObservationError, RunDirectoryError) as exc:
            raise FitError(str(exc)) from None
    if subjects is None:
        raise FitError(f"{source}: no subject table; give one (--subjects) with each subject's product, "
                       "regimen, CAR-T dose and covariates (docs/fitting.md)")
    if subject_source is None:
        subject_source = "<frame>" if isinstance(subjects, pl.DataFrame) else str(subjects)
    table = subjects if isinstance(subjects, pl.DataFrame) else _read_table(Path(subjects))
    if "status" in table.columns:
        table = table.filter(pl.col("status") == "ok")
    table = table.with_columns(pl.col("subject").cast(pl.String))
    dupes = table["subject"].filter(table["subject"].is_duplicated()).unique().to_list()
    if dupes:
        raise FitError(f"{subject_source}: subjects listed twice: {sorted(dupes)[:10]}")

    observables = {o.test: o.unit for o in model.observables}
    present = sorted(set(frame["test"].unique().to_list()) & set(observables))
    chosen = list(tests) if tests else present
    unknown = [t for t in chosen if t not in observables]
    if unknown:
        raise FitError(f"tests {unknown} are not observables of model {model.name} "
                       f"({sorted(observables)})")
    absent = [t for t in chosen if t not in present]
    if absent:
        raise FitError(f"{source}: no observations of tests {absent}")
    if not chosen:
        raise FitError(f"{source}: no test of the data is an observable of model {model.name}")
    lloq = dict(lloq or {})
    bad_lloq = [t for t in lloq if t not in chosen]
    if bad_lloq:
        raise FitError(f"LLOQ given for {bad_lloq}, which are not fitted tests ({chosen})")

    flagged = [pl.col(c).cast(t) for c, t in (("lloq", pl.Float64), ("blq", pl.Boolean)) if c in frame.columns]
    obs = (frame.filter(pl.col("test").is_in(chosen) & pl.col("value").is_not_null())
           .select(pl.col("subject").cast(pl.String), pl.col("day").cast(pl.Float64), "test",
                   pl.col("value").cast(pl.Float64), "unit", *flagged))
    if "lloq" not in obs.columns:
        obs = obs.with_columns(pl.lit(None, pl.Float64).alias("lloq"))
    if "blq" not in obs.columns:
        obs = obs.with_columns(pl.lit(False).alias("blq"))
    wrong_unit = obs.filter(pl.col("unit") != pl.col("test").replace_strict(observables, default=None))
    if wrong_unit.height:
        r = wrong_unit.row(0, named=True)
        raise FitError(f"{source}: {r['test']} in {r['unit']!r}; the model predicts {observables[r['test']]}")
    without_therapy = sorted(set(obs["subject"].unique().to_list()) - set(table["subject"].to_list()))
    if without_therapy:
        raise FitError(f"{source}: subjects {without_therapy[:10]} have observations but no row in the "
                       f"subject table {subject_source}")
    given = pl.col("test").replace_strict(lloq, default=None, return_dtype=pl.Float64)
    obs = obs.with_columns(pl.coalesce(pl.col("lloq"), given).alias("lloq"))
    is_below = pl.col("blq").fill_null(False) | (pl.col("value") <= pl.col("lloq").fill_null(0.0))
    censor = is_below & (pl.col("lloq") > 0) if censoring == "m3" else pl.lit(False)
    obs = obs.with_columns(is_below.alias("_below"), censor.fill_null(False).alias("_censored"))
    dropped = obs.filter(pl.col("_below") & ~pl.col("_censored"))
    n_below = {t: int(dropped.filter(pl.col("test") == t).height) for t in chosen}
    obs = (obs.filter(~pl.col("_below") | pl.col("_censored"))
           .with_columns(pl.when(pl.col("_censored")).then(pl.col("lloq")).otherwise(pl.col("value")).alias("value"))
           .sort("subject", "day", "test"))

    table = table.filter(pl.col("subject").is_in(obs["subject"].unique().to_list())).sort("subject")
    if table.height == 0:
        raise FitError(f"{source}: no quantifiable observation left to fit")
    covariates, body = subject_covariates(table, model, subject_source)
    rows = table.to_dicts()
    therapies = tuple(_therapy(r, protocol, f"{subject_source}: subject {r['subject']}") for r in rows)
    subject_ids = tuple(table["subject"].to_list())
    index = {s: i for i, s in enumerate(subject_ids)}
    test_index = {t: i for i, t in enumerate(chosen)}
    data = FitData(
        subjects=subject_ids, therapies=therapies, covariates=covariates,
        obs_subject=np.array([index[s] for s in obs["subject"]], dtype=np.int64),
        obs_day=obs["day"].to_numpy().astype(float),
        obs_test=np.array([test_index[t] for t in obs["test"]], dtype=np.int64),
        obs_value=obs["value"].to_numpy().astype(float),
        tests=tuple(chosen), units=tuple(observables[t] for t in chosen),
        n_below_lloq=n_below, source=source, body=body,
        obs_censored=obs["_censored"].to_numpy().astype(bool) if censoring == "m3" else None,
        censoring=censoring)
    return data
