"""CDISC-like SDTM (DM, EX, LB, AE, RS; CM when protocol rules gave supportive or rescue drugs) and ADaM (ADSL, ADLB) domains, as CSV and SAS XPORT v5.

Sources: a simulated run directory, or a real observation file (the clinical layer's long format)
with, optionally, the clinical layer's scored output directory. Grades, SLEDAI-2K and adverse
events come from the clinical layer's public API (``score_observations``, on observations read by
``cartwin.io.observations``): nothing is graded here.

Timing. Simulations have no calendar, so ``--DTC`` variables are empty. The reference start
``RFSTDTC`` is the CAR-T infusion: study day ``--DY`` is day + 1 from the infusion on and the
protocol day before it (SDTM has no day 0: protocol day -1 is study day -1, day 0 is study day 1).
``VISIT`` is ``DAY n`` with n the protocol day relative to the infusion; ``VISITNUM`` orders them.

Names follow SDTMIG 3.4 / ADaMIG 1.3 where a variable exists. ``STUDYID`` of a simulated run ends
in ``-SIM`` so that simulated data cannot pass for collected data; the provenance (model, protocol
hash, seed) is in the dataset labels of the XPT files and in ``define.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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
from cartwin.io.errors import CdiscExportError
from cartwin.therapy.supportive import concomitant_drugs
from cartwin.vocabulary import PATIENT_COVARIATES, test_codes

SDTM_DOMAINS = ("DM", "EX", "LB", "AE", "RS")
ADAM_DATASETS = ("ADSL", "ADLB")

LABELS = {
    "STUDYID": "Study Identifier", "DOMAIN": "Domain Abbreviation", "USUBJID": "Unique Subject Identifier",
    "SUBJID": "Subject Identifier for the Study", "SITEID": "Study Site Identifier", "AGE": "Age",
    "AGEU": "Age Units", "SEX": "Sex", "ARMCD": "Planned Arm Code", "ARM": "Description of Planned Arm",
    "ACTARMCD": "Actual Arm Code", "ACTARM": "Description of Actual Arm", "RFSTDTC": "Subject Reference Start Date/Time",
    "RFXSTDTC": "Date/Time of First Study Treatment", "COUNTRY": "Country",
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
    "AEDY": "Study Day of Maximum Grade",
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


def _load(source: Path, scored: Path | None):
    """(observations frame, scored tables, patients or None, events or None, manifest or {})."""
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
        tables = score_observations(obs)
    patients = events = None
    manifest: dict = {}
    if is_run:
        try:
            patients, events = run.patients(), run.events()
            manifest = run.manifest() if run.is_complete() else {}
        except RunDirectoryError as exc:
            raise CdiscExportError(str(exc)) from None
    return obs.frame, tables, patients, events, manifest


def build_domains(source: str | Path, scored: str | Path | None = None,
                  study_id: str | None = None) -> tuple[dict[str, pl.DataFrame], dict]:
    frame, tables, patients, events, manifest = _load(Path(source), Path(scored) if scored else None)
    simulated = patients is not None
    study = study_id or manifest.get("study_id") or Path(source).stem
    if simulated and not study.upper().endswith("-SIM"):
        study = f"{study}-SIM"
    study = study.upper()

    def usubjid(col: str = "subject") -> pl.Expr:
        return pl.concat_str(pl.lit(study + "-"), pl.col(col))

    # --- DM ---------------------------------------------------------------------------------
    if simulated:
        pts = patients.filter(pl.col("status") == "ok")
        arm_label = pl.concat_str(pl.col("product"), pl.lit(" after "), pl.col("regimen"),
                                  pl.lit(" lymphodepletion"))
        dm = pts.select(
            pl.lit(study).alias("STUDYID"), pl.lit("DM").alias("DOMAIN"), usubjid().alias("USUBJID"),
            pl.col("subject").alias("SUBJID"), pl.lit("VIRTUAL").alias("SITEID"),
            pl.col("AGE").round(1).alias("AGE"), pl.lit("YEARS").alias("AGEU"), pl.col("sex").alias("SEX"),
            pl.col("arm").str.to_uppercase().str.slice(0, 20).alias("ARMCD"), arm_label.alias("ARM"),
            pl.col("arm").str.to_uppercase().str.slice(0, 20).alias("ACTARMCD"), arm_label.alias("ACTARM"),
            pl.lit("").alias("RFSTDTC"), pl.lit("").alias("RFXSTDTC"))
    else:
        subjects = frame.select("subject", *(["arm"] if "arm" in frame.columns else [])).unique(maintain_order=True)
        arm = pl.col("arm").cast(pl.String).fill_null("") if "arm" in subjects.columns else pl.lit("")
        dm = subjects.select(
            pl.lit(study).alias("STUDYID"), pl.lit("DM").alias("DOMAIN"), usubjid().alias("USUBJID"),
            pl.col("subject").alias("SUBJID"), pl.lit("").alias("SITEID"),
            arm.str.to_uppercase().str.slice(0, 20).alias("ARMCD"), arm.alias("ARM"),
            arm.str.to_uppercase().str.slice(0, 20).alias("ACTARMCD"), arm.alias("ACTARM"),
            pl.lit("").alias("RFSTDTC"))
    kept = dm["SUBJID"].to_list()

    # --- EX (a run's doses) --------------------------------------------------------------------
    domains: dict[str, pl.DataFrame] = {"DM": dm}
    if simulated:
        product_names = set(pts["product"].unique().to_list())
        cm_routes = concomitant_drugs()  # given by protocol rules: concomitant medication (CM)
        ex = (events.filter((pl.col("EVID") == 1) & pl.col("ID").is_in(kept) & ~pl.col("DRUG").is_in(list(cm_routes)))
              .with_columns(pl.col("DRUG").is_in(list(product_names)).alias("_cart")))
        ex = ex.with_columns(pl.when(pl.col("RATE") > 0).then(pl.col("AMT") / pl.col("RATE")).otherwise(0.0).alias("_dur"))
        ex = ex.sort(["ID", "TIME"]).select(
            pl.lit(study).alias("STUDYID"), pl.lit("EX").alias("DOMAIN"), usubjid("ID").alias("USUBJID"),
            (pl.int_range(pl.len()).over("ID") + 1).alias("EXSEQ"),
            pl.col("DRUG").str.to_uppercase().alias("EXTRT"),
            pl.when(pl.col("_cart")).then(pl.lit("CAR-T CELL THERAPY"))
            .otherwise(pl.lit("LYMPHODEPLETING CHEMOTHERAPY")).alias("EXCAT"),
            pl.col("AMT").alias("EXDOSE"), pl.col("AMTU").alias("EXDOSU"),
            pl.when(pl.col("_cart")).then(pl.lit("SUSPENSION")).otherwise(pl.lit("SOLUTION")).alias("EXDOSFRM"),
            pl.lit("INTRAVENOUS").alias("EXROUTE"),
            pl.when(pl.col("NOTE").str.contains("reduced|withheld")).then(pl.col("NOTE")).otherwise(pl.lit("")).alias("EXADJ"),
            study_day(pl.col("TIME")).alias("EXSTDY"), study_day(pl.col("TIME") + pl.col("_dur")).alias("EXENDY"),
            pl.when(pl.col("_dur") > 0).then(_elapsed(pl.col("_dur"))).otherwise(pl.lit("")).alias("EXDUR"),
            pl.lit("CAR-T INFUSION").alias("EXTPTREF"), _elapsed(pl.col("TIME")).alias("EXELTM"),
            _visit(pl.col("TIME")).alias("VISIT"))
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
    lab = frame.filter(pl.col("test").is_in([c for c, t in codes.items() if t.kind == "lab"])
                       & pl.col("subject").is_in(kept) & pl.col("value").is_not_null())
    tests = lab["test"].unique(maintain_order=True).to_list()
    testcd = _lbtestcd(tests)
    days = sorted(set(frame["day"].to_list()))
    visitnum = {d: i + 1 for i, d in enumerate(days)}
    grades = (tables["lab_grades"].group_by(["subject", "day", "test"])
              .agg(pl.col("grade").max().alias("_grade")))
    # LBLOBXFL: last result before the first study treatment (the first lymphodepleting dose;
    # a sample at a dose time is pre-dose). ADLB's ABLFL: the clinical layer's grading baseline,
    # the last result on or before its configured baseline day.
    baseline_last_day = float(settings("ctcae_v5")["baseline_last_day"])
    if simulated:
        first_dose = (events.filter(pl.col("EVID") == 1).group_by("ID")
                      .agg(pl.col("TIME").min().alias("_first_dose")).rename({"ID": "subject"}))
    else:
        first_dose = lab.select("subject").unique().with_columns(pl.lit(baseline_last_day).alias("_first_dose"))

    def last_on_or_before(limit: pl.Expr) -> pl.Expr:
        eligible = pl.col("day") <= limit
        return eligible & (pl.col("day") == pl.col("day").filter(eligible).max().over(["subject", "test"]))

    lab = (lab.join(grades, on=["subject", "day", "test"], how="left")
           .join(first_dose, on="subject", how="left")
           .sort(["subject", "test", "day"])
           .with_columns(last_on_or_before(pl.col("_first_dose")).alias("_blfl"),
                         last_on_or_before(pl.lit(baseline_last_day)).alias("_ablfl")))
    lower = pl.col("lower") if "lower" in lab.columns else pl.lit(None, pl.Float64)
    upper = pl.col("upper") if "upper" in lab.columns else pl.lit(None, pl.Float64)
    lb = lab.select(
        pl.lit(study).alias("STUDYID"), pl.lit("LB").alias("DOMAIN"), usubjid().alias("USUBJID"),
        pl.col("test").replace_strict(testcd).alias("LBTESTCD"),
        pl.col("test").replace_strict({t: codes[t].name[:40] for t in tests}).alias("LBTEST"),
        pl.col("test").replace_strict({t: ("CELL PHENOTYPING" if codes[t].unit == "cells/uL" else "CHEMISTRY/HEMATOLOGY") for t in tests}).alias("LBCAT"),
        _format_number(pl.col("value")).alias("LBORRES"), pl.col("unit").alias("LBORRESU"),
        _format_number(pl.col("value")).alias("LBSTRESC"), pl.col("value").alias("LBSTRESN"),
        pl.col("unit").alias("LBSTRESU"), lower.alias("LBSTNRLO"), upper.alias("LBSTNRHI"),
        pl.when(lower.is_not_null() & (pl.col("value") < lower)).then(pl.lit("LOW"))
        .when(upper.is_not_null() & (pl.col("value") > upper)).then(pl.lit("HIGH"))
        .when(lower.is_not_null() | upper.is_not_null()).then(pl.lit("NORMAL")).otherwise(pl.lit("")).alias("LBNRIND"),
        pl.col("_grade").cast(pl.String).fill_null("").alias("LBTOXGR"),
        pl.when(pl.col("_blfl")).then(pl.lit("Y")).otherwise(pl.lit("")).alias("LBLOBXFL"),
        study_day(pl.col("day")).alias("LBDY"),
        pl.col("day").replace_strict(visitnum, return_dtype=pl.Int64).alias("VISITNUM"),
        _visit(pl.col("day")).alias("VISIT"),
        pl.lit("CAR-T INFUSION").alias("LBTPTREF"), _elapsed(pl.col("day")).alias("LBELTM"),
        pl.col("day").alias("_day"), pl.col("test").alias("_test"), pl.col("_grade"), pl.col("_ablfl"),
    ).with_columns((pl.int_range(pl.len()).over("USUBJID") + 1).alias("LBSEQ"))
    domains["LB"] = lb.select([c for c in lb.columns if not c.startswith("_")])

    # --- AE (graded events with grade >= 1, from the clinical layer) -------------------------------
    ae = (tables["adverse_events"].filter((pl.col("max_grade") >= 1) & pl.col("subject").is_in(kept))
          .sort(["subject", "onset_day", "term"], nulls_last=True))
    domains["AE"] = ae.select(
        pl.lit(study).alias("STUDYID"), pl.lit("AE").alias("DOMAIN"), usubjid().alias("USUBJID"),
        (pl.int_range(pl.len()).over("subject") + 1).alias("AESEQ"),
        pl.col("term").str.slice(0, 200).alias("AETERM"), pl.col("term").str.slice(0, 200).alias("AEDECOD"),
        pl.col("standard").alias("AECAT"), pl.col("max_grade").cast(pl.String).alias("AETOXGR"),
        study_day(pl.col("onset_day")).alias("AESTDY"), study_day(pl.col("day_of_max")).alias("AEDY"))

    # --- RS: SLEDAI-2K and the responder indices, per visit ----------------------------------------
    visits = tables["visits"].filter(pl.col("subject").is_in(kept))
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
        parts.append(v.select(
            pl.col("subject"), pl.col("day"), pl.lit(cat).alias("RSCAT"), pl.lit(cd).alias("RSTESTCD"),
            pl.lit(name).alias("RSTEST"), result.alias("RSORRES"), result.alias("RSSTRESC"),
            (pl.lit(None, pl.Float64) if boolean else pl.col(column).cast(pl.Float64)).alias("RSSTRESN"),
            pl.lit("Y").alias("RSDRVFL")))
    rs = pl.concat(parts) if parts else pl.DataFrame(schema={"subject": pl.String, "day": pl.Float64})
    domains["RS"] = (rs.sort(["subject", "day", "RSTESTCD"]).select(
        pl.lit(study).alias("STUDYID"), pl.lit("RS").alias("DOMAIN"), usubjid().alias("USUBJID"),
        (pl.int_range(pl.len()).over("subject") + 1).alias("RSSEQ"),
        "RSCAT", "RSTESTCD", "RSTEST", "RSORRES", "RSSTRESC", "RSSTRESN", "RSDRVFL",
        study_day(pl.col("day")).alias("RSDY"),
        pl.col("day").replace_strict(visitnum, default=None, return_dtype=pl.Int64).alias("VISITNUM"),
        _visit(pl.col("day")).alias("VISIT")))

    # --- ADSL ---------------------------------------------------------------------------------------
    endpoints = tables["patients"]
    adsl = dm.select("STUDYID", "USUBJID", "SUBJID", "SITEID", *[c for c in ("AGE", "AGEU", "SEX") if c in dm.columns],
                     "ARMCD", "ARM", pl.col("ARM").alias("TRT01P"), pl.col("ACTARM").alias("TRT01A"))
    arms = sorted(adsl["ARMCD"].unique().to_list())
    adsl = adsl.with_columns(pl.col("ARMCD").replace_strict({a: i + 1 for i, a in enumerate(arms)}, return_dtype=pl.Int64).alias("TRT01PN"),
                             pl.lit("Y").alias("SAFFL"), pl.lit("Y").alias("ITTFL"),
                             pl.lit("Y" if simulated else "N").alias("SIMFL"))
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
    adlb = (lb.with_columns(pl.col("USUBJID").str.slice(len(study) + 1).alias("_subject"))
            .join(low, left_on=["_subject", "_day", "_test"], right_on=["subject", "day", "test"], how="left")
            .join(high, left_on=["_subject", "_day", "_test"], right_on=["subject", "day", "test"], how="left"))
    base = adlb.filter(pl.col("_ablfl")).select("USUBJID", "_test", pl.col("LBSTRESN").alias("BASE"))
    adlb = adlb.join(base, on=["USUBJID", "_test"], how="left")
    # ATOXGR combines the two directions as admiral does: the low-direction grade is negative
    atoxgr = (pl.when(pl.col("ATOXGRH").fill_null(0) > 0).then(pl.col("ATOXGRH"))
              .when(pl.col("ATOXGRL").fill_null(0) > 0).then(-pl.col("ATOXGRL"))
              .when(pl.col("ATOXGRH").is_not_null() | pl.col("ATOXGRL").is_not_null()).then(pl.lit(0))
              .otherwise(None))
    domains["ADLB"] = adlb.select(
        "STUDYID", "USUBJID", pl.col("LBTESTCD").alias("PARAMCD"),
        pl.concat_str(pl.col("LBTEST"), pl.lit(" ("), pl.col("LBSTRESU"), pl.lit(")")).alias("PARAM"),
        pl.col("_test").replace_strict(paramn, return_dtype=pl.Int64).alias("PARAMN"),
        pl.col("LBSTRESN").alias("AVAL"), pl.col("LBSTRESU").alias("AVALU"),
        pl.col("LBDY").alias("ADY"), pl.col("_day").alias("NRRLT"),
        pl.col("VISIT").alias("AVISIT"), pl.col("VISITNUM").alias("AVISITN"),
        pl.when(pl.col("_ablfl")).then(pl.lit("Y")).otherwise(pl.lit("")).alias("ABLFL"), "BASE",
        (pl.col("LBSTRESN") - pl.col("BASE")).alias("CHG"),
        pl.when(pl.col("BASE") != 0).then((pl.col("LBSTRESN") - pl.col("BASE")) / pl.col("BASE") * 100).otherwise(None).alias("PCHG"),
        pl.col("LBSTNRLO").alias("ANRLO"), pl.col("LBSTNRHI").alias("ANRHI"),
        pl.col("ATOXDSCL").fill_null(""), pl.col("ATOXDSCH").fill_null(""),
        pl.col("ATOXGRL").cast(pl.Int64), pl.col("ATOXGRH").cast(pl.Int64), atoxgr.cast(pl.Int64).alias("ATOXGR"),
        pl.when(pl.col("_day") > 0).then(pl.lit("Y")).otherwise(pl.lit("")).alias("ONTRTFL"),
        pl.lit("LB").alias("SRCDOM"), pl.col("LBSEQ").alias("SRCSEQ"))

    provenance = {
        "cartwin_version": __version__, "simulated": simulated, "study_id": study,
        "source": str(Path(source).resolve()), "scored": str(scored) if scored else None,
        "model": manifest.get("model"), "protocol_sha256": (manifest.get("protocol") or {}).get("sha256"),
        "seed": manifest.get("seed"),
        "timing": "no calendar dates; RFSTDTC = CAR-T infusion; --DY = protocol day + 1 from the infusion "
                  "on, the protocol day before it; VISIT = DAY n relative to the infusion",
        "lbtestcd": testcd,
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
                 study_id: str | None = None, formats: tuple[str, ...] = ("csv", "xpt")) -> CdiscExport:
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
    domains, provenance = build_domains(source, scored, study_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[Path]] = {}
    define = {"provenance": provenance, "datasets": {}}
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
    return CdiscExport(out_dir, domains, files)


def read_xpt(path: str | Path) -> tuple[pl.DataFrame, dict]:
    """Read an XPORT file back (polars frame, {'table_name', 'labels'})."""
    frame, meta = pyreadstat.read_xport(str(path), output_format="polars")
    return frame, {"table_name": meta.table_name, "labels": dict(zip(meta.column_names, meta.column_labels))}
