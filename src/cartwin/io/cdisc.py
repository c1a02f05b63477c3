"""CDISC SDTM (DM, EX, LB, AE, RS; CM when protocol rules gave supportive or rescue drugs) and ADaM (ADSL, ADLB) datasets, as CSV and SAS XPORT v5.

Sources: a simulated run directory, or a real observation file (the clinical layer's long format)
with, optionally, the clinical layer's scored output directory. Grades, SLEDAI-2K and adverse
events come from the clinical layer's public API (``score_observations``, on observations read by
``cartwin.io.observations``): nothing is graded here.

Timing. ``--DTC`` are ISO 8601 dates counted from the study start date of the protocol
(``[study] start_date``, default 2000-01-01, a nominal date), which is the date of the study's
earliest protocol day; every subject shares that calendar. The reference start ``RFSTDTC`` is the
CAR-T infusion: study day ``--DY`` is day + 1 from the infusion on and the protocol day before it
(SDTM has no day 0: protocol day -1 is study day -1, day 0 is study day 1). ``VISIT`` is ``DAY n``
with n the protocol day relative to the infusion; ``VISITNUM`` orders them.

Baseline. One definition for LB and ADLB: the last result before the first study treatment (the
first lymphodepleting dose; a sample at a dose time is pre-dose) is ``LBLOBXFL`` = ``ABLFL``
(SDTMIG 3.4 section 4.5.9 / ADaMIG 1.3 section 3.3.4 convention).

Names follow SDTMIG 3.4 / ADaMIG 1.3 where a variable exists. ``STUDYID`` of a simulated run ends
in ``-SIM`` so that simulated data cannot pass for collected data; the provenance (model, protocol
hash, seed) is in the dataset labels of the XPT files and in ``define.json``. The conformance
rules checked on every export are in ``cdisc_rules.csv`` (:mod:`cartwin.io.cdisc_rules`).
"""

from __future__ import annotations

import csv
import json
import math
import tomllib
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path

import polars as pl
import pyreadstat

from cartwin import __version__
from cartwin.store.atomic import write_via
from cartwin.store.run_directory import RunDirectory, RunDirectoryError
from cartwin.store.scored import ScoredDirectory
from cartwin.clinical import score_observations
from cartwin.io.observations import read_observations
from cartwin.clinical.ruleset import settings
from cartwin.clinical.haematotox import CELLS_PER_UL_PER_10E9_L
from cartwin.io.cdisc_rules import RULES_FILE, check_conformance, rules
from cartwin.io.errors import CdiscExportError
from cartwin.therapy.supportive import concomitant_drugs
from cartwin.vocabulary import PATIENT_COVARIATES, test_codes

SDTM_DOMAINS = ("DM", "EX", "LB", "AE", "RS")
DEFAULT_START_DATE = date(2000, 1, 1)  # nominal: simulations have no calendar
DEFAULT_COUNTRY = "ZZZ"  # ISO 3166-1 user-assigned code: virtual subjects live in no country
AE_TERMS_FILE = Path(__file__).with_name("cdisc_ae_terms.csv")
ADAM_DATASETS = ("ADSL", "ADLB")

LABELS = {
    "STUDYID": "Study Identifier", "DOMAIN": "Domain Abbreviation", "USUBJID": "Unique Subject Identifier",
    "SUBJID": "Subject Identifier for the Study", "SITEID": "Study Site Identifier", "AGE": "Age",
    "AGEU": "Age Units", "SEX": "Sex", "ARMCD": "Planned Arm Code", "ARM": "Description of Planned Arm",
    "ACTARMCD": "Actual Arm Code", "ACTARM": "Description of Actual Arm", "RFSTDTC": "Subject Reference Start Date/Time",
    "RFXSTDTC": "Date/Time of First Study Treatment", "COUNTRY": "Country",
    "RFENDTC": "Subject Reference End Date/Time", "RFXENDTC": "Date/Time of Last Study Treatment",
    "RACE": "Race", "ETHNIC": "Ethnicity", "EXDOSFRQ": "Dosing Frequency per Interval",
    "EXSTDTC": "Start Date/Time of Treatment", "EXENDTC": "End Date/Time of Treatment",
    "LBORNRLO": "Reference Range Lower Limit in Orig Unit", "LBORNRHI": "Reference Range Upper Limit in Orig Unit",
    "LBSPEC": "Specimen Type", "LBDTC": "Date/Time of Specimen Collection",
    "AEBODSYS": "Body System or Organ Class", "AESER": "Serious Event", "AESLIFE": "Is Life Threatening",
    "AESDTH": "Results in Death", "AEREL": "Causality", "AEOUT": "Outcome of Adverse Event",
    "AESTDTC": "Start Date/Time of Adverse Event", "AEENDTC": "End Date/Time of Adverse Event",
    "AEENDY": "Study Day of End of Adverse Event", "RSDTC": "Date/Time of Assessment",
    "TRT01AN": "Actual Treatment for Period 01 (N)", "TRTSDT": "Date of First Exposure to Treatment",
    "TRTEDT": "Date of Last Exposure to Treatment", "TRTP": "Planned Treatment", "TRTA": "Actual Treatment",
    "ASEQ": "Analysis Sequence Number", "ADT": "Analysis Date", "ANRIND": "Analysis Reference Range Indicator",
    "BNRIND": "Baseline Reference Range Indicator", "BTOXGR": "Baseline Toxicity Grade",
    "EXSEQ": "Sequence Number", "EXTRT": "Name of Treatment", "EXCAT": "Category of Treatment", "EXDOSE": "Dose",
    "EXDOSU": "Dose Units", "EXDOSFRM": "Dose Form", "EXROUTE": "Route of Administration", "EXADJ": "Reason for Dose Adjustment",
    "EXSTDY": "Study Day of Start of Treatment", "EXENDY": "Study Day of End of Treatment",
    "EXDUR": "Duration of Treatment", "EXTPTREF": "Time Point Reference", "EXELTM": "Planned Elapsed Time from Time Point Ref",
    "CMSEQ": "Sequence Number", "CMTRT": "Reported Name of Drug, Med, or Therapy", "CMCAT": "Category for Medication",
    "CMSCAT": "Subcategory for Medication", "CMINDC": "Indication", "CMDOSE": "Dose per Administration",
    "CMDOSU": "Dose Units", "CMROUTE": "Route of Administration", "CMSTDY": "Study Day of Start of Medication",
    "CMENDY": "Study Day of End of Medication",
    "LBSEQ": "Sequence Number", "LBTESTCD": "Lab Test or Examination Short Name", "LBTEST": "Lab Test or Examination Name",
    "LBCAT": "Category for Lab Test", "LBORRES": "Result or Finding in Original Units", "LBORRESU": "Original Units",
    "LBSTRESC": "Character Result/Finding in Std Format", "LBSTRESN": "Numeric Result/Finding in Standard Units",
    "LBSTRESU": "Standard Units", "LBSTNRLO": "Normal Range Lower Limit-Std Units", "LBSTNRHI": "Normal Range Upper Limit-Std Units",
    "LBNRIND": "Reference Range Indicator", "LBTOXGR": "Standard Toxicity Grade", "LBLOBXFL": "Last Observation Before Exposure Flag",
    "LBDY": "Study Day of Specimen Collection", "VISITNUM": "Visit Number", "VISIT": "Visit Name",
    "LBTPTREF": "Time Point Reference", "LBELTM": "Planned Elapsed Time from Time Point Ref",
    "AESEQ": "Sequence Number", "AETERM": "Reported Term for the Adverse Event", "AEDECOD": "Dictionary-Derived Term",
    "AECAT": "Category for Adverse Event", "AETOXGR": "Standard Toxicity Grade", "AESTDY": "Study Day of Start of Adverse Event",
    "RSSEQ": "Sequence Number", "RSCAT": "Category for Assessment", "RSTESTCD": "Assessment Short Name",
    "RSTEST": "Assessment Name", "RSORRES": "Result or Finding in Original Units", "RSSTRESC": "Character Result/Finding in Std Format",
    "RSSTRESN": "Numeric Result/Finding in Standard Units", "RSDRVFL": "Derived Flag", "RSDY": "Study Day of Assessment",
    "TRT01P": "Planned Treatment for Period 01", "TRT01A": "Actual Treatment for Period 01", "TRT01PN": "Planned Treatment for Period 01 (N)",
    "SAFFL": "Safety Population Flag", "ITTFL": "Intent-To-Treat Population Flag",
    "DOSEKG": "CAR-T Dose per kg (cells/kg)", "DOSEA": "CAR-T Dose Administered (cells)", "SIMFL": "Simulated Subject Flag",
    "CRSMAX": "Maximum CRS Grade (ASTCT)", "ICANSMAX": "Maximum ICANS Grade (ASTCT)", "SLEDBL": "Baseline SLEDAI-2K",
    "PARAMCD": "Parameter Code", "PARAM": "Parameter", "PARAMN": "Parameter (N)", "AVAL": "Analysis Value",
    "AVALU": "Analysis Value Unit", "ADY": "Analysis Relative Day", "NRRLT": "Nominal Rel Time from Ref Dose (days)", "AVISIT": "Analysis Visit",
    "AVISITN": "Analysis Visit (N)", "ABLFL": "Baseline Record Flag", "BASE": "Baseline Value", "CHG": "Change from Baseline",
    "PCHG": "Percent Change from Baseline", "ANRLO": "Analysis Normal Range Lower Limit", "ANRHI": "Analysis Normal Range Upper Limit",
    "ATOXDSCL": "Analysis Toxicity Description Low", "ATOXDSCH": "Analysis Toxicity Description High",
    "ATOXGRL": "Analysis Toxicity Grade Low", "ATOXGRH": "Analysis Toxicity Grade High", "ATOXGR": "Analysis Toxicity Grade",
    "ONTRTFL": "On Treatment Record Flag", "SRCDOM": "Source Data", "SRCSEQ": "Source Sequence Number",
}

# Baseline body covariates of ADSL: vocabulary name -> (ADaM variable, label stem); the unit of
# the label is the vocabulary's.
ADSL_BASELINE = {"WT": ("WTBL", "Weight"), "HT": ("HTBL", "Height"), "BSA": ("BSABL", "Body Surface Area"),
                 "CRCL": ("CRCLBL", "Creatinine Clearance")}
LABELS.update({var: f"Baseline {stem} ({PATIENT_COVARIATES[name].unit.replace('^', '')})"
               for name, (var, stem) in ADSL_BASELINE.items()})


@dataclass(frozen=True)
class CdiscExport:
    out_dir: Path
    datasets: dict[str, pl.DataFrame]
    files: dict[str, list[Path]]
    findings: tuple = ()  # conformance findings (cartwin.io.cdisc_rules); empty when conformant
    n_without_observations: int = 0  # run patients left out: their observations were not stored


def study_day(day: pl.Expr) -> pl.Expr:
    """Protocol day (infusion = 0) -> SDTM study day with RFSTDTC = infusion (no day 0)."""
    return pl.when(day >= 0).then(day.floor() + 1).otherwise(day.floor()).cast(pl.Int64)


def _visit(day: pl.Expr) -> pl.Expr:
    return pl.concat_str(pl.lit("DAY "), day.round(3).cast(pl.String).str.replace(r"\.0$", ""))


def _elapsed(day: pl.Expr) -> pl.Expr:
    """ISO 8601 duration relative to the infusion (negative before it), e.g. P7D, -P3D, PT12H."""
    whole = day.abs().floor().cast(pl.Int64)
    hours = ((day.abs() - day.abs().floor()) * 24).round(3)
    hours_text = pl.concat_str(pl.lit("T"), hours.cast(pl.String).str.replace(r"\.0$", ""), pl.lit("H"))
    text = (pl.when((hours > 0) & (whole > 0))
            .then(pl.concat_str(pl.lit("P"), whole.cast(pl.String), pl.lit("D"), hours_text))
            .when(hours > 0).then(pl.concat_str(pl.lit("P"), hours_text))
            .otherwise(pl.concat_str(pl.lit("P"), whole.cast(pl.String), pl.lit("D"))))
    return pl.when(day < 0).then(pl.concat_str(pl.lit("-"), text)).otherwise(text)


def _format_number(values: pl.Expr) -> pl.Expr:
    """Original result as text with 6 significant figures (what a lab report would print)."""
    return values.map_elements(lambda v: f"{v:.6g}", return_dtype=pl.String)


def _exact_text(values: pl.Expr) -> pl.Expr:
    """Standard-format result as text that reads back to exactly the numeric result (--STRESC =
    --STRESN, CDISC CORE-000542), the shortest round-trip form of the double."""
    return values.map_elements(lambda v: repr(float(v)).removesuffix(".0"), return_dtype=pl.String)


def _lbtestcd(tests: list[str]) -> dict[str, str]:
    """cartwin code -> LBTESTCD: the CDISC code where one exists and is unambiguous, else ours
    (<= 8 characters, starting with a letter)."""
    codes = test_codes()
    cdisc = {t: (codes[t].cdisc_lbtestcd if t in codes and codes[t].cdisc_lbtestcd not in ("", "-") else t) for t in tests}
    taken: dict[str, str] = {}
    out = {}
    for t in tests:
        cand = cdisc[t] if list(cdisc.values()).count(cdisc[t]) == 1 else t
        cand = cand[:8]
        n = 1
        while cand in taken and taken[cand] != t:
            cand = f"{t[:7 - len(str(n))]}{n}"[:8]
            n += 1
        taken[cand] = t
        out[t] = cand
    return out


# LBSPEC (CDISC CT C78734) and LBCAT by test code; every other lab test is measured in blood.
SPECIMENS = {**{t: "SERUM" for t in ("C3", "C4", "DSDNA", "DSDNAFARR", "IGG", "VACCIGG", "ALT", "AST", "BILI",
                                      "ALP", "GGT", "CREAT", "CRP", "FERRITIN", "IL6")},
             "FIBRINO": "PLASMA", "UPROT": "URINE", "URBC": "URINE", "UWBC": "URINE"}


def _lb_specimen(test: str) -> str:
    return SPECIMENS.get(test, "BLOOD")


def _lb_category(test: str) -> str:
    specimen = _lb_specimen(test)
    if specimen == "URINE":
        return "URINALYSIS"
    if specimen == "BLOOD":
        return "CELL PHENOTYPING" if test_codes()[test].unit == "cells/uL" else "HEMATOLOGY"
    return "CHEMISTRY"


@cache
def ae_body_systems() -> dict[str, str]:
    """Adverse event term -> AEBODSYS (MedDRA system organ class), from cdisc_ae_terms.csv."""
    with AE_TERMS_FILE.open(newline="") as handle:
        return {row["term"]: row["aebodsys"] for row in csv.DictReader(handle)}


def _load(source: Path, scored: Path | None):
    """(observations frame, scored tables, patients or None, events or None, manifest or {},
    the run's protocol as a dict or {})."""
    source = Path(source)
    run = RunDirectory(source)
    is_run = source.is_dir() and run.table_path("patients").exists()
    try:
        obs = read_observations(source)
    except ValueError as exc:
        raise CdiscExportError(str(exc)) from None
    except Exception as exc:  # the clinical layer's ObservationError is not a ValueError
        if type(exc).__name__ == "ObservationError":
            raise CdiscExportError(str(exc)) from None
        raise
    if scored is not None:
        try:
            tables = ScoredDirectory(scored).read(("visits", "lab_grades", "adverse_events", "patients"))
        except RunDirectoryError as exc:
            raise CdiscExportError(str(exc)) from None
    else:
        from cartwin.clinical.pipeline import baseline_days
        # a run directory is scored with its protocol's [scoring] days, as its report is
        visit_day, lab_day = baseline_days(*(run.scoring_baselines() if is_run and run.is_run() else (None, None)))
        tables = score_observations(obs, baseline_last_day=visit_day, lab_baseline_last_day=lab_day)
    patients = events = None
    manifest: dict = {}
    protocol: dict = {}
    if is_run:
        try:
            patients, events = run.patients(), run.events()
            manifest = run.manifest() if run.is_complete() else {}
        except RunDirectoryError as exc:
            raise CdiscExportError(str(exc)) from None
        protocol = _protocol_of(run)
    return obs.frame, tables, patients, events, manifest, protocol


def _protocol_of(run: RunDirectory) -> dict:
    """The run's copy of its protocol file as a dict ({} when absent or unreadable: the export
    then falls back to the run's tables and the documented defaults)."""
    try:
        return tomllib.loads(run.protocol_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def _as_date(value, where: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise CdiscExportError(f"{where}: {value!r} is not an ISO 8601 date (YYYY-MM-DD)") from None


def _number(v: float) -> str:
    return f"{v:.3g}".replace("e+0", "e").replace("e+", "e")


def _arm_table(pts: pl.DataFrame, protocol: dict) -> pl.DataFrame:
    """One row per arm: arm id, ARMCD (unique, <= 20 characters), ARM (unique, with the dose)."""
    spec = {a.get("id"): a for a in protocol.get("arms", []) if isinstance(a, dict)}
    rows = []
    for arm, product, regimen, per_kg, cells in (
            pts.group_by("arm", maintain_order=True)
            .agg(pl.col("product").first(), pl.col("regimen").first(),
                 pl.col("dose_cells_per_kg").unique().alias("per_kg"), pl.col("dose_cells").unique().alias("cells"))
            .iter_rows()):
        dose = (spec.get(arm) or {}).get("dose") or {}
        if "cells_per_kg" in dose:
            dose_text = f"{_number(float(dose['cells_per_kg']))} cells/kg"
        elif "cells" in dose:
            dose_text = f"{_number(float(dose['cells']))} cells"
        elif len(per_kg) == 1:
            dose_text = f"{_number(per_kg[0])} cells/kg"
        else:
            dose_text = f"{_number(cells[0])} cells" if len(cells) == 1 else "dose by patient"
        rows.append({"arm": arm, "ARM": f"{product} {dose_text} after {regimen} lymphodepletion"})
    arms = pl.DataFrame(rows, schema={"arm": pl.String, "ARM": pl.String})
    return _unique_codes(arms)


def _unique_codes(arms: pl.DataFrame) -> pl.DataFrame:
    """ARMCD = the arm id in capitals, cut to 20 characters (SDTMIG 3.4 CG0153), made unique with
    a numeric suffix; ARM made unique by the arm id when two arms share a description."""
    codes, taken = [], set()
    for arm in arms["arm"]:
        code = arm.upper()[:20]
        n = 1
        while code in taken:
            n += 1
            code = f"{arm.upper()[:20 - len(str(n)) - 1]}_{n}"
        taken.add(code)
        codes.append(code)
    described = arms["ARM"].to_list()
    arm_text = [f"{d} ({a})" if described.count(d) > 1 else d for a, d in zip(arms["arm"], described)]
    return arms.with_columns(pl.Series("ARMCD", codes), pl.Series("ARM", arm_text),
                             pl.Series("TRTN", range(1, arms.height + 1), dtype=pl.Int64))


class _Calendar:
    """Protocol days -> ISO 8601 dates: ``start`` is the date of ``first_day`` (the study's earliest
    protocol day, whole)."""

    def __init__(self, start: date, first_day: float):
        self.start = start
        self.first_day = math.floor(first_day)
        self.origin = datetime(start.year, start.month, start.day)

    def dtc(self, day: pl.Expr) -> pl.Expr:
        """ISO 8601 date (whole days) or date and time to the minute."""
        ms = ((day - self.first_day) * 86_400_000).round(0).cast(pl.Int64)
        stamp = pl.lit(self.origin) + pl.duration(milliseconds=ms)
        whole = (day - day.floor()).abs() < 1e-9
        return (pl.when(day.is_null()).then(pl.lit(None, pl.String))
                .when(whole).then(stamp.dt.strftime("%Y-%m-%d"))
                .otherwise(stamp.dt.strftime("%Y-%m-%dT%H:%M"))).fill_null("")

    def date(self, day: pl.Expr) -> pl.Expr:
        """The calendar date (ADaM numeric date, SAS DATE9 in XPORT)."""
        return pl.lit(self.start) + pl.duration(days=(day.floor() - self.first_day).cast(pl.Int64))


def _episodes(series: pl.DataFrame) -> pl.DataFrame:
    """(subject, term, day, grade) -> per subject and term: onset (first day with grade >= 1), last
    (last day with grade >= 1) and end (the first graded day with grade 0 after the last day with
    grade >= 1; null while unresolved). One record spans every episode of a term."""
    return (series.filter(pl.col("grade").is_not_null())
            .group_by("subject", "term")
            .agg(pl.col("day").filter(pl.col("grade") >= 1).min().alias("_onset"),
                 pl.col("day").filter(pl.col("grade") >= 1).max().alias("_last"),
                 pl.struct("day", "grade").alias("_series"))
            .explode("_series").unnest("_series")
            .group_by("subject", "term", "_onset", "_last")
            .agg(pl.col("day").filter((pl.col("grade") == 0) & (pl.col("day") > pl.col("_last"))).min().alias("_end"))
            .select("subject", "term", "_onset", "_last", "_end"))


def _icaht_series(frame: pl.DataFrame) -> pl.DataFrame:
    """ANC against the ICAHT grade-1 thresholds (EHA/EBMT 2023, the clinical layer's settings) from
    the start of each ICAHT window on: 1 at or below the threshold, 0 above it. Onset falls inside
    the window (the grade needs it there); recovery is looked for on every later day."""
    config = settings("icaht")
    anc = frame.filter((pl.col("test") == "NEUT") & pl.col("value").is_not_null()).select(
        "subject", "day", (pl.col("value") * CELLS_PER_UL_PER_10E9_L).alias("anc"))
    parts = []
    for term, key, threshold in (("ICAHT early", "early", config["early"]["anc_threshold_per_ul"]),
                                 ("ICAHT late", "late", config["late"]["nadir_upper"][0])):
        parts.append(anc.filter(pl.col("day") >= config[key]["first_day"]).select(
            "subject", pl.lit(term).alias("term"), "day",
            (pl.col("anc") <= threshold).cast(pl.Int8).alias("grade")))
    return pl.concat(parts)


def _refuse_imported_model_run(source: Path) -> None:
    """The domains hold lupus read-outs under CDISC test codes (LB), CTCAE and ASTCT grades (AE)
    and SLEDAI responses (RS); a run of an imported SBML model has none of them. Said here, where
    the export is made, so that every caller (the command line, the web app) says it alike."""
    name = RunDirectory(source).imported_model()
    if name is not None:
        raise CdiscExportError(
            f"{source}: a run of an imported SBML model ({name}); SDTM export is not "
            "available for SBML runs (its domains hold lupus read-outs with CDISC test codes, which the "
            "model's quantities are not). Use `cartwin export nonmem` or read the tables (docs/run_directory.md).")


def build_domains(source: str | Path, scored: str | Path | None = None, study_id: str | None = None,
                  start_date: date | str | None = None,
                  country: str | None = None) -> tuple[dict[str, pl.DataFrame], dict]:
    _refuse_imported_model_run(Path(source))
    frame, tables, patients, events, manifest, protocol = _load(Path(source), Path(scored) if scored else None)
    simulated = patients is not None
    study = study_id or manifest.get("study_id") or Path(source).stem
    if simulated and not study.upper().endswith("-SIM"):
        study = f"{study}-SIM"
    study = study.upper()
    calendar_spec = protocol.get("study") or {}
    start = _as_date(start_date if start_date is not None else calendar_spec.get("start_date", DEFAULT_START_DATE),
                     "start date" if start_date is not None else "protocol [study] start_date")
    country = (country or calendar_spec.get("country") or DEFAULT_COUNTRY).upper()
    if len(country) != 3 or not country.isalpha():
        raise CdiscExportError(f"country {country!r}: give an ISO 3166-1 alpha-3 code such as DEU")

    def usubjid(col: str = "subject") -> pl.Expr:
        return pl.concat_str(pl.lit(study + "-"), pl.col(col))

    # --- who, which arm, which doses ------------------------------------------------------------
    n_without_observations = 0
    if simulated:
        pts = patients.filter(pl.col("status") == "ok")
        # a run keeps the observations of the first [store] observations_per_arm patients of each
        # arm; another patient would be a subject with exposure and no findings or adverse events
        # (none scored), which would read as a patient who had none
        stored = pts["subject"].is_in(frame["subject"].unique().implode())
        n_without_observations = pts.height - int(stored.sum())
        pts = pts.filter(stored)
        arms = _arm_table(pts, protocol)
        subjects = pts.join(arms, on="arm", how="left")
        # drugs that protocol rules gave (tocilizumab, steroids, G-CSF) are concomitant medication
        # (CM), not study treatment: they are neither EX records nor the first or last exposure
        cm_routes = concomitant_drugs()
        doses = events.filter((pl.col("EVID") == 1) & pl.col("ID").is_in(subjects["subject"].to_list())
                              & ~pl.col("DRUG").is_in(list(cm_routes)))
        dose_days = doses.group_by("ID").agg(pl.col("TIME").min().alias("_first_dose"),
                                             pl.col("TIME").max().alias("_last_dose")).rename({"ID": "subject"})
    else:
        subjects = frame.select("subject", *(["arm"] if "arm" in frame.columns else [])).unique(maintain_order=True)
        if "arm" not in subjects.columns:
            subjects = subjects.with_columns(pl.lit("").alias("arm"))
        subjects = subjects.with_columns(pl.col("arm").cast(pl.String).fill_null(""))
        arms = _unique_codes(subjects.select("arm").unique(maintain_order=True).with_columns(pl.col("arm").alias("ARM")))
        subjects = subjects.join(arms, on="arm", how="left")
        doses = None
        # no dosing record: the first treatment is taken as the clinical layer's grading reference
        # day (before lymphodepletion), so that LBLOBXFL/ABLFL flag the rows CTCAE grades against
        baseline_last_day = float(settings("ctcae_v5")["lab_baseline_last_day"])
        dose_days = subjects.select("subject", pl.lit(baseline_last_day).alias("_first_dose"),
                                    pl.lit(None, pl.Float64).alias("_last_dose"))
    kept = subjects["subject"].to_list()
    frame = frame.filter(pl.col("subject").is_in(kept))
    all_days = set(frame["day"].to_list()) | (set(doses["TIME"].to_list()) if doses is not None else set())
    calendar = _Calendar(start, min(all_days) if all_days else 0.0)
    visitnum = {d: i + 1 for i, d in enumerate(sorted(all_days))}
    span = frame.group_by("subject").agg(pl.col("day").max().alias("_last_record"))
    subjects = subjects.join(dose_days, on="subject", how="left").join(span, on="subject", how="left")

    # --- DM ---------------------------------------------------------------------------------
    def covariate(name: str, default: str) -> pl.Expr:
        return (pl.col(name).cast(pl.String).str.to_uppercase().fill_null(default) if name in subjects.columns
                else pl.lit(default))

    dm = subjects.select(
        pl.lit(study).alias("STUDYID"), pl.lit("DM").alias("DOMAIN"), usubjid().alias("USUBJID"),
        pl.col("subject").alias("SUBJID"),
        calendar.dtc(pl.lit(0.0)).alias("RFSTDTC"),
        calendar.dtc(pl.col("_last_record")).alias("RFENDTC"),
        (calendar.dtc(pl.col("_first_dose")) if simulated else pl.lit("")).alias("RFXSTDTC"),
        (calendar.dtc(pl.col("_last_dose")) if simulated else pl.lit("")).alias("RFXENDTC"),
        pl.lit("VIRTUAL" if simulated else "").alias("SITEID"),
        *([pl.col("AGE").floor().cast(pl.Int64).alias("AGE"), pl.lit("YEARS").alias("AGEU"), pl.col("sex").alias("SEX")]
          if simulated else []),
        covariate("race", "NOT REPORTED").alias("RACE"), covariate("ethnic", "NOT REPORTED").alias("ETHNIC"),
        "ARMCD", "ARM", pl.col("ARMCD").alias("ACTARMCD"), pl.col("ARM").alias("ACTARM"),
        pl.lit(country).alias("COUNTRY"))
    domains: dict[str, pl.DataFrame] = {"DM": dm}

    # --- EX (a run's doses) --------------------------------------------------------------------
    if simulated:
        product_names = set(pts["product"].unique().to_list())
        ex = doses.with_columns(pl.col("DRUG").is_in(list(product_names)).alias("_cart"),
                                pl.when(pl.col("RATE") > 0).then(pl.col("AMT") / pl.col("RATE")).otherwise(0.0).alias("_dur"))
        ex = ex.sort(["ID", "TIME"]).select(
            pl.lit(study).alias("STUDYID"), pl.lit("EX").alias("DOMAIN"), usubjid("ID").alias("USUBJID"),
            (pl.int_range(pl.len()).over("ID") + 1).alias("EXSEQ"),
            pl.col("DRUG").str.to_uppercase().alias("EXTRT"),
            pl.when(pl.col("_cart")).then(pl.lit("CAR-T CELL THERAPY"))
            .otherwise(pl.lit("LYMPHODEPLETING CHEMOTHERAPY")).alias("EXCAT"),
            pl.col("AMT").alias("EXDOSE"), pl.col("AMTU").alias("EXDOSU"),
            pl.when(pl.col("_cart")).then(pl.lit("SUSPENSION")).otherwise(pl.lit("SOLUTION")).alias("EXDOSFRM"),
            pl.lit("ONCE").alias("EXDOSFRQ"), pl.lit("INTRAVENOUS").alias("EXROUTE"),
            pl.when(pl.col("NOTE").str.contains("reduced|withheld")).then(pl.col("NOTE")).otherwise(pl.lit("")).alias("EXADJ"),
            pl.col("TIME").replace_strict(visitnum, return_dtype=pl.Int64).alias("VISITNUM"),
            _visit(pl.col("TIME")).alias("VISIT"),
            calendar.dtc(pl.col("TIME")).alias("EXSTDTC"), calendar.dtc(pl.col("TIME") + pl.col("_dur")).alias("EXENDTC"),
            study_day(pl.col("TIME")).alias("EXSTDY"), study_day(pl.col("TIME") + pl.col("_dur")).alias("EXENDY"),
            pl.when(pl.col("_dur") > 0).then(_elapsed(pl.col("_dur"))).otherwise(pl.lit("")).alias("EXDUR"),
            pl.lit("CAR-T INFUSION").alias("EXTPTREF"), _elapsed(pl.col("TIME")).alias("EXELTM"))
        domains["EX"] = ex
        cm = events.filter((pl.col("EVID") == 1) & pl.col("ID").is_in(kept) & pl.col("DRUG").is_in(list(cm_routes)))
        if cm.height:  # only runs whose rules gave supportive or rescue drugs have a CM domain
            cm = cm.with_columns(pl.when(pl.col("RATE") > 0).then(pl.col("AMT") / pl.col("RATE")).otherwise(0.0).alias("_dur"))
            domains["CM"] = cm.sort(["ID", "TIME"]).select(
                pl.lit(study).alias("STUDYID"), pl.lit("CM").alias("DOMAIN"), usubjid("ID").alias("USUBJID"),
                (pl.int_range(pl.len()).over("ID") + 1).alias("CMSEQ"),
                pl.col("DRUG").str.to_uppercase().alias("CMTRT"),
                pl.lit("PROTOCOL RULE").alias("CMCAT"), pl.col("RULE").str.to_uppercase().alias("CMSCAT"),
                pl.col("NOTE").str.slice(0, 200).alias("CMINDC"),
                pl.col("AMT").alias("CMDOSE"), pl.col("AMTU").alias("CMDOSU"),
                pl.col("DRUG").replace_strict(cm_routes, default="").alias("CMROUTE"),
                study_day(pl.col("TIME")).alias("CMSTDY"), study_day(pl.col("TIME") + pl.col("_dur")).alias("CMENDY"))

    # --- LB ---------------------------------------------------------------------------------------
    codes = test_codes()
    lab = frame.filter(pl.col("test").is_in([c for c, t in codes.items() if t.kind == "lab"]) & pl.col("value").is_not_null())
    tests = lab["test"].unique(maintain_order=True).to_list()
    testcd = _lbtestcd(tests)
    grades = (tables["lab_grades"].group_by(["subject", "day", "test"])
              .agg(pl.col("grade").max().alias("_grade")))
    # One baseline for LB and ADLB (SDTMIG 3.4 LBLOBXFL, ADaMIG 1.3 ABLFL): the last result before
    # the first study treatment, the first lymphodepleting dose; a sample at a dose time is pre-dose.
    first_dose = subjects.select("subject", "_first_dose")

    def last_on_or_before(limit: pl.Expr) -> pl.Expr:
        eligible = pl.col("day") <= limit
        return eligible & (pl.col("day") == pl.col("day").filter(eligible).max().over(["subject", "test"]))

    lab = (lab.join(grades, on=["subject", "day", "test"], how="left")
           .join(first_dose, on="subject", how="left")
           .sort(["subject", "test", "day"])
           .with_columns(last_on_or_before(pl.col("_first_dose")).alias("_blfl")))
    lower = pl.col("lower") if "lower" in lab.columns else pl.lit(None, pl.Float64)
    upper = pl.col("upper") if "upper" in lab.columns else pl.lit(None, pl.Float64)
    nrind = (pl.when(lower.is_not_null() & (pl.col("value") < lower)).then(pl.lit("LOW"))
             .when(upper.is_not_null() & (pl.col("value") > upper)).then(pl.lit("HIGH"))
             .when(lower.is_not_null() | upper.is_not_null()).then(pl.lit("NORMAL")).otherwise(pl.lit("")))
    lb = lab.select(
        pl.lit(study).alias("STUDYID"), pl.lit("LB").alias("DOMAIN"), usubjid().alias("USUBJID"),
        pl.col("test").replace_strict(testcd).alias("LBTESTCD"),
        pl.col("test").replace_strict({t: codes[t].name[:40] for t in tests}).alias("LBTEST"),
        pl.col("test").replace_strict({t: _lb_category(t) for t in tests}).alias("LBCAT"),
        _format_number(pl.col("value")).alias("LBORRES"), pl.col("unit").alias("LBORRESU"),
        _format_number(lower).fill_null("").alias("LBORNRLO"), _format_number(upper).fill_null("").alias("LBORNRHI"),
        _exact_text(pl.col("value")).alias("LBSTRESC"), pl.col("value").alias("LBSTRESN"),
        pl.col("unit").alias("LBSTRESU"), lower.alias("LBSTNRLO"), upper.alias("LBSTNRHI"),
        nrind.alias("LBNRIND"),
        pl.col("test").replace_strict({t: _lb_specimen(t) for t in tests}).alias("LBSPEC"),
        pl.col("_grade").cast(pl.String).fill_null("").alias("LBTOXGR"),
        pl.when(pl.col("_blfl")).then(pl.lit("Y")).otherwise(pl.lit("")).alias("LBLOBXFL"),
        pl.col("day").replace_strict(visitnum, return_dtype=pl.Int64).alias("VISITNUM"),
        _visit(pl.col("day")).alias("VISIT"),
        calendar.dtc(pl.col("day")).alias("LBDTC"), study_day(pl.col("day")).alias("LBDY"),
        pl.lit("CAR-T INFUSION").alias("LBTPTREF"), _elapsed(pl.col("day")).alias("LBELTM"),
        pl.col("day").alias("_day"), pl.col("test").alias("_test"), pl.col("subject").alias("_subject"),
        pl.col("_grade"), pl.col("_first_dose"),
    ).with_columns((pl.int_range(pl.len()).over("USUBJID") + 1).alias("LBSEQ"))
    lb_columns = [c for c in lb.columns if not c.startswith("_")]
    lb_columns.insert(3, lb_columns.pop(lb_columns.index("LBSEQ")))
    domains["LB"] = lb.select(lb_columns)

    # --- AE (graded events with grade >= 1, from the clinical layer) -------------------------------
    ae = (tables["adverse_events"].filter((pl.col("max_grade") >= 1) & pl.col("subject").is_in(kept))
          .drop([c for c in ("arm",) if c in tables["adverse_events"].columns]))
    series = [tables["lab_grades"].select("subject", "term", "day", pl.col("grade").cast(pl.Int8))]
    visits = tables["visits"]
    for column, term in (("crs_grade", "Cytokine release syndrome"),
                         ("icans_grade", "Immune effector cell-associated neurotoxicity syndrome")):
        if column in visits.columns:
            series.append(visits.select("subject", pl.lit(term).alias("term"), "day", pl.col(column).cast(pl.Int8).alias("grade")))
    if "NEUT" in frame["test"].unique().to_list():
        series.append(_icaht_series(frame))
    episodes = _episodes(pl.concat(series, how="vertical_relaxed"))
    soc = ae_body_systems()
    unknown = sorted(set(ae["term"]) - set(soc))
    if unknown:
        raise CdiscExportError(f"adverse event terms without a body system in {AE_TERMS_FILE.name}: {unknown}")
    ae = (ae.join(episodes, on=["subject", "term"], how="left")
          .join(subjects.select("subject", "_first_dose", "_last_record"), on="subject", how="left")
          .with_columns(pl.coalesce("onset_day", "_onset").alias("_start"))
          .sort(["subject", "_start", "term"], nulls_last=True))
    missing_start = ae.filter(pl.col("_start").is_null())
    if missing_start.height:
        raise CdiscExportError("adverse events without an onset day (AESTDY): "
                               + ", ".join(f"{s} {t}" for s, t in missing_start.select("subject", "term").iter_rows()))
    fatal, resolved = pl.col("max_grade") >= 5, pl.col("_end").is_not_null()
    if simulated:
        # every simulated event comes from the modelled therapy; one present before the first dose is the disease's
        related = pl.when(pl.col("_start") >= pl.col("_first_dose")).then(pl.lit("RELATED")).otherwise(pl.lit("NOT RELATED"))
    else:
        related = pl.lit("")
    domains["AE"] = ae.select(
        pl.lit(study).alias("STUDYID"), pl.lit("AE").alias("DOMAIN"), usubjid().alias("USUBJID"),
        (pl.int_range(pl.len()).over("subject") + 1).alias("AESEQ"),
        pl.col("term").str.slice(0, 200).alias("AETERM"), pl.col("term").str.slice(0, 200).alias("AEDECOD"),
        pl.col("standard").alias("AECAT"), pl.col("term").replace_strict(soc).alias("AEBODSYS"),
        # AESER by CTCAE v5 grade: 4 = life-threatening, 5 = death (ICH E2A seriousness criteria)
        pl.when(pl.col("max_grade") >= 4).then(pl.lit("Y")).otherwise(pl.lit("N")).alias("AESER"),
        pl.when(pl.col("max_grade") == 4).then(pl.lit("Y")).otherwise(pl.lit("N")).alias("AESLIFE"),
        pl.when(fatal).then(pl.lit("Y")).otherwise(pl.lit("N")).alias("AESDTH"),
        related.alias("AEREL"),
        # unresolved while still present at the subject's last record: not recovered; unresolved
        # when grading stopped earlier (a grading window ended, no daily grades): unknown
        pl.when(fatal).then(pl.lit("FATAL")).when(resolved).then(pl.lit("RECOVERED/RESOLVED"))
        .when(pl.col("_last").is_not_null() & (pl.col("_last") >= pl.col("_last_record")))
        .then(pl.lit("NOT RECOVERED/NOT RESOLVED")).otherwise(pl.lit("UNKNOWN")).alias("AEOUT"),
        pl.col("max_grade").cast(pl.String).alias("AETOXGR"),
        calendar.dtc(pl.col("_start")).alias("AESTDTC"), calendar.dtc(pl.col("_end")).alias("AEENDTC"),
        study_day(pl.col("_start")).alias("AESTDY"), study_day(pl.col("_end")).alias("AEENDY"))

    # --- RS: SLEDAI-2K and the responder indices, per visit ----------------------------------------
    visits = visits.filter(pl.col("subject").is_in(kept))
    instruments = [
        ("sledai2k", "SLEDAI2K", "SLEDAI-2K Total Score", "SLEDAI-2K"),
        ("sledai2k_min", "SLEDLOW", "SLEDAI-2K Total Lower Bound", "SLEDAI-2K"),
        ("sledai2k_max", "SLEDHIGH", "SLEDAI-2K Total Upper Bound", "SLEDAI-2K"),
        ("pga", "PGA", "Physician Global Assessment (0-3)", "PHYSICIAN GLOBAL ASSESSMENT"),
        ("sri4", "SRI4", "SRI-4 Responder", "SLE RESPONDER INDEX"),
        ("bicla", "BICLA", "BICLA Responder", "BICLA"),
        ("lldas", "LLDAS", "Lupus Low Disease Activity State", "LLDAS"),
        ("doris_remission", "DORIS", "DORIS Remission", "DORIS"),
    ]
    parts = []
    for column, cd, name, cat in instruments:
        if column not in visits.columns:
            continue
        v = visits.filter(pl.col(column).is_not_null())
        boolean = v.schema[column] == pl.Boolean
        result = (pl.when(pl.col(column)).then(pl.lit("Y")).otherwise(pl.lit("N")) if boolean
                  else _format_number(pl.col(column).cast(pl.Float64)))
        standard = result if boolean else _exact_text(pl.col(column).cast(pl.Float64))
        parts.append(v.select(
            pl.col("subject"), pl.col("day"), pl.lit(cat).alias("RSCAT"), pl.lit(cd).alias("RSTESTCD"),
            pl.lit(name).alias("RSTEST"), result.alias("RSORRES"), standard.alias("RSSTRESC"),
            (pl.lit(None, pl.Float64) if boolean else pl.col(column).cast(pl.Float64)).alias("RSSTRESN"),
            pl.lit("Y").alias("RSDRVFL")))
    rs = pl.concat(parts) if parts else pl.DataFrame(schema={"subject": pl.String, "day": pl.Float64})
    domains["RS"] = (rs.sort(["subject", "day", "RSTESTCD"]).select(
        pl.lit(study).alias("STUDYID"), pl.lit("RS").alias("DOMAIN"), usubjid().alias("USUBJID"),
        (pl.int_range(pl.len()).over("subject") + 1).alias("RSSEQ"),
        "RSCAT", "RSTESTCD", "RSTEST", "RSORRES", "RSSTRESC", "RSSTRESN", "RSDRVFL",
        pl.col("day").replace_strict(visitnum, default=None, return_dtype=pl.Int64).alias("VISITNUM"),
        _visit(pl.col("day")).alias("VISIT"), calendar.dtc(pl.col("day")).alias("RSDTC"),
        study_day(pl.col("day")).alias("RSDY")))

    # --- ADSL ---------------------------------------------------------------------------------------
    endpoints = tables["patients"]
    adsl = subjects.select(
        pl.lit(study).alias("STUDYID"), usubjid().alias("USUBJID"), pl.col("subject").alias("SUBJID"),
        pl.lit("VIRTUAL" if simulated else "").alias("SITEID"),
        *([pl.col("AGE").floor().cast(pl.Int64).alias("AGE"), pl.lit("YEARS").alias("AGEU"), pl.col("sex").alias("SEX")]
          if simulated else []),
        covariate("race", "NOT REPORTED").alias("RACE"), covariate("ethnic", "NOT REPORTED").alias("ETHNIC"),
        pl.lit(country).alias("COUNTRY"),
        "ARMCD", "ARM", pl.col("ARMCD").alias("ACTARMCD"), pl.col("ARM").alias("ACTARM"),
        pl.col("ARM").alias("TRT01P"), pl.col("TRTN").alias("TRT01PN"),
        pl.col("ARM").alias("TRT01A"), pl.col("TRTN").alias("TRT01AN"),
        (calendar.date(pl.col("_first_dose")) if simulated else pl.lit(None, pl.Date)).alias("TRTSDT"),
        (calendar.date(pl.col("_last_dose")) if simulated else pl.lit(None, pl.Date)).alias("TRTEDT"),
        pl.lit("Y").alias("SAFFL"), pl.lit("Y").alias("ITTFL"), pl.lit("Y" if simulated else "N").alias("SIMFL"))
    if simulated:
        adsl = adsl.join(pts.select(pl.col("subject").alias("SUBJID"),
                                    *[pl.col(name).alias(var) for name, (var, _) in ADSL_BASELINE.items()],
                                    pl.col("dose_cells_per_kg").alias("DOSEKG"),
                                    pl.col("dose_cells").alias("DOSEA")), on="SUBJID", how="left")
    ep_cols = {"crs_max": "CRSMAX", "icans_max": "ICANSMAX", "sledai2k_baseline": "SLEDBL"}
    present = {k: v for k, v in ep_cols.items() if k in endpoints.columns}
    adsl = adsl.join(endpoints.select(pl.col("subject").alias("SUBJID"),
                                      *[pl.col(k).cast(pl.Float64).alias(v) for k, v in present.items()]),
                     on="SUBJID", how="left")
    domains["ADSL"] = adsl

    # --- ADLB -----------------------------------------------------------------------------------------
    terms = tables["lab_grades"].select("subject", "day", "test", "term", "direction", "grade")
    low = terms.filter(pl.col("direction") == "low").group_by(["subject", "day", "test"]).agg(
        pl.col("term").first().alias("ATOXDSCL"), pl.col("grade").max().alias("ATOXGRL"))
    high = terms.filter(pl.col("direction") == "high").group_by(["subject", "day", "test"]).agg(
        pl.col("term").first().alias("ATOXDSCH"), pl.col("grade").max().alias("ATOXGRH"))
    paramn = {t: i + 1 for i, t in enumerate(tests)}
    # ATOXGR combines the two directions as admiral does: the low-direction grade is negative
    atoxgr = (pl.when(pl.col("ATOXGRH").fill_null(0) > 0).then(pl.col("ATOXGRH"))
              .when(pl.col("ATOXGRL").fill_null(0) > 0).then(-pl.col("ATOXGRL"))
              .when(pl.col("ATOXGRH").is_not_null() | pl.col("ATOXGRL").is_not_null()).then(pl.lit(0))
              .otherwise(None))
    adlb = (lb.join(low, left_on=["_subject", "_day", "_test"], right_on=["subject", "day", "test"], how="left")
            .join(high, left_on=["_subject", "_day", "_test"], right_on=["subject", "day", "test"], how="left")
            .join(adsl.select("USUBJID", "TRT01P", "TRT01A"), on="USUBJID", how="left")
            .with_columns(atoxgr.cast(pl.Int64).cast(pl.String).fill_null("").alias("ATOXGR")))
    base = adlb.filter(pl.col("LBLOBXFL") == "Y").select(
        "USUBJID", "_test", pl.col("LBSTRESN").alias("BASE"), pl.col("LBNRIND").alias("BNRIND"),
        pl.col("ATOXGR").alias("BTOXGR"))
    adlb = adlb.join(base, on=["USUBJID", "_test"], how="left").sort("USUBJID", "_test", "_day")
    domains["ADLB"] = adlb.select(
        "STUDYID", "USUBJID", (pl.int_range(pl.len()).over("USUBJID") + 1).alias("ASEQ"),
        pl.col("TRT01P").alias("TRTP"), pl.col("TRT01A").alias("TRTA"),
        pl.col("LBTESTCD").alias("PARAMCD"),
        pl.concat_str(pl.col("LBTEST"), pl.lit(" ("), pl.col("LBSTRESU"), pl.lit(")")).alias("PARAM"),
        pl.col("_test").replace_strict(paramn, return_dtype=pl.Int64).alias("PARAMN"),
        pl.col("LBSTRESN").alias("AVAL"), pl.col("LBSTRESU").alias("AVALU"),
        calendar.date(pl.col("_day")).alias("ADT"), pl.col("LBDY").alias("ADY"), pl.col("_day").alias("NRRLT"),
        pl.col("VISIT").alias("AVISIT"), pl.col("VISITNUM").alias("AVISITN"),
        pl.col("LBLOBXFL").alias("ABLFL"), "BASE",
        (pl.col("LBSTRESN") - pl.col("BASE")).alias("CHG"),
        pl.when(pl.col("BASE") != 0).then((pl.col("LBSTRESN") - pl.col("BASE")) / pl.col("BASE") * 100).otherwise(None).alias("PCHG"),
        pl.col("LBSTNRLO").alias("ANRLO"), pl.col("LBSTNRHI").alias("ANRHI"),
        pl.col("LBNRIND").alias("ANRIND"), pl.col("BNRIND").fill_null(""),
        pl.col("ATOXDSCL").fill_null(""), pl.col("ATOXDSCH").fill_null(""),
        pl.col("ATOXGRL").cast(pl.String).fill_null(""), pl.col("ATOXGRH").cast(pl.String).fill_null(""),
        "ATOXGR", pl.col("BTOXGR").fill_null(""),
        pl.when(pl.col("_day") > pl.col("_first_dose")).then(pl.lit("Y")).otherwise(pl.lit("")).alias("ONTRTFL"),
        pl.lit("LB").alias("SRCDOM"), pl.col("LBSEQ").alias("SRCSEQ"))

    provenance = {
        "cartwin_version": __version__, "simulated": simulated, "study_id": study,
        "source": str(Path(source).resolve()), "scored": str(scored) if scored else None,
        "model": manifest.get("model"), "protocol_sha256": (manifest.get("protocol") or {}).get("sha256"),
        "seed": manifest.get("seed"),
        "study_start_date": start.isoformat(), "country": country,
        "timing": (f"protocol day {calendar.first_day} (the study's earliest protocol day) is {start.isoformat()}; "
                   "all subjects share one calendar; RFSTDTC = CAR-T infusion (protocol day 0); --DY = protocol "
                   "day + 1 from the infusion on, the protocol day before it; VISIT = DAY n relative to the infusion"),
        "baseline": "LBLOBXFL = ABLFL: last result before the first study treatment (first lymphodepleting "
                    "dose; a sample at the dose time is pre-dose)",
        "lbtestcd": testcd,
        "subjects_without_observations": {
            "count": n_without_observations,
            "meaning": "patients of the run left out because it did not store their observations (it keeps "
                       "those of the first [store] observations_per_arm patients of each arm, docs/protocol.md)"},
    }
    return domains, provenance


def _check_xpt_names(name: str, frame: pl.DataFrame) -> None:
    long = [c for c in frame.columns if len(c) > 8]
    if long:
        raise CdiscExportError(f"{name}: variable names longer than 8 characters for XPORT v5: {long}")
    for c, dtype in frame.schema.items():
        if dtype == pl.String and frame[c].str.len_bytes().max() is not None and frame[c].str.len_bytes().max() > 200:
            raise CdiscExportError(f"{name}.{c}: character values longer than 200 bytes")


def export_cdisc(source: str | Path, out_dir: str | Path, scored: str | Path | None = None,
                 study_id: str | None = None, formats: tuple[str, ...] = ("csv", "xpt"),
                 start_date: date | str | None = None, country: str | None = None) -> CdiscExport:
    """Write SDTM-like DM, EX (runs only), LB, AE, RS and ADaM-like ADSL, ADLB into ``out_dir``
    as ``<name>.csv`` and ``<name>.xpt`` (SAS XPORT v5), plus ``define.json`` (variables, labels,
    provenance)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CdiscExportError(f"{out_dir} exists and is not a directory")
    if out_dir.exists() and any(p for p in out_dir.iterdir() if p.suffix not in (".csv", ".xpt", ".json")):
        raise CdiscExportError(f"{out_dir} holds other files; give a new or empty directory")
    unknown = sorted(set(formats) - {"csv", "xpt"})
    if unknown:
        raise CdiscExportError(f"unknown formats {unknown}; choose from csv, xpt")
    domains, provenance = build_domains(source, scored, study_id, start_date, country)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[Path]] = {}
    findings = check_conformance(domains)
    define = {"provenance": provenance, "datasets": {},
              "conformance": {"rules": len(rules()), "rules_file": RULES_FILE.name,
                              "findings": [str(f) for f in findings]}}
    for name, frame in domains.items():
        _check_xpt_names(name, frame)
        files[name] = []
        label = f"{name} {'SIMULATED ' if provenance['simulated'] else ''}cartwin {__version__}"[:40]
        if "csv" in formats:
            path = out_dir / f"{name.lower()}.csv"
            write_via(path, lambda p, f=frame: f.write_csv(p))
            files[name].append(path)
        if "xpt" in formats:
            path = out_dir / f"{name.lower()}.xpt"
            labels = [LABELS.get(c, c)[:40] for c in frame.columns]
            write_via(path, lambda p, f=frame, lab=labels: pyreadstat.write_xport(
                f, p, file_format_version=5, table_name=name, file_label=label, column_labels=lab))
            files[name].append(path)
        define["datasets"][name] = {
            "label": label, "records": frame.height,
            "variables": [{"name": c, "label": LABELS.get(c, c)[:40], "type": "Num" if frame.schema[c].is_numeric() else "Char"}
                          for c in frame.columns]}
    write_via(out_dir / "define.json", lambda p: Path(p).write_text(json.dumps(define, indent=2)))
    return CdiscExport(out_dir, domains, files, tuple(findings),
                       provenance["subjects_without_observations"]["count"])


def read_xpt(path: str | Path) -> tuple[pl.DataFrame, dict]:
    """Read an XPORT file back (polars frame, {'table_name', 'labels'})."""
    frame, meta = pyreadstat.read_xport(str(path), output_format="polars")
    return frame, {"table_name": meta.table_name, "labels": dict(zip(meta.column_names, meta.column_labels))}
