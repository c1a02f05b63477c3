"""NONMEM-format datasets: export a run directory, import a dataset as observed data.

Export layout (one row per event, grouped by ``ID``, ordered by ``TIME``; docs/interchange.md):

- ``TIME`` is in days since the subject's first record: the first intervention (the first
  lymphodepleting dose) unless a screening sample comes earlier, so ``TIME >= 0``. ``DAY`` carries
  the nominal day relative to the CAR-T infusion (day 0; ADaM ``NRRLT``-style) and ``TAFD`` the
  time after the first dose (negative for screening samples);
- lymphodepletion is exported as **PK doses** (EVID 1) into the model's drug compartments, with
  ``RATE`` for their infusions; the CAR-T infusion is a bolus (``RATE`` 0) of cells;
- at equal ``TIME`` observation rows come before dose rows: NONMEM processes records in file
  order, so a sample on a dose day is a pre-dose sample, as in cartwin;
- ``DVID`` numbers the test codes; the dictionary beside the data maps them back with units.
  CAR-T cells (``CART``) and transgene copies (``CARTQ``) sampled before the infusion, or at its time (pre-dose), are not
  observations: ``MDV`` 1 and ``DV`` missing (there are no cells to measure yet).
  Missing values are written as ``.`` (NM-TRAN reads them as 0; ``MDV`` says which are missing).

Import validates the EVID/AMT/MDV logic row by row and names every inconsistent row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from cartwin import __version__
from cartwin.store.atomic import write_via
from cartwin.store import layout
from cartwin.store.run_directory import RunDirectoryError, open_run
from cartwin.io.errors import NonmemDatasetError
from cartwin.vocabulary import PATIENT_COVARIATES, test_codes

# The patient covariates of the vocabulary, as time-constant columns: column in patients.parquet
# -> (NONMEM column, unit, meaning). Names are the vocabulary's except C3_0/C4_0, exported as
# C3BL/C4BL (the "BL" baseline suffix of ADaM; kept so that existing control streams still read).
# SEXF is written from the run's 'sex' column; descriptor flags are not exported.
NONMEM_NAMES = {"C3_0": "C3BL", "C4_0": "C4BL"}
NUMERIC_COVARIATES = {
    c.name: (NONMEM_NAMES.get(c.name, c.name), c.unit, c.description)
    for c in PATIENT_COVARIATES.values() if c.name != "SEXF" and c.kind != "descriptor"
}

DATASET_COLUMNS = {
    "ID": ("", "subject number (1..N, contiguous block per subject); SUBJ holds the run's subject id"),
    "TIME": ("day", "days since the subject's first record (first intervention unless a screening sample precedes it); >= 0"),
    "DV": ("see DVID", "observed (simulated) value in the unit of its test code; '.' on dose rows"),
    "AMT": ("see CMT", "dose amount in the unit of the dosed compartment (mg of drug, or CAR-T cells); '.' on observations"),
    "RATE": ("AMT/day", "infusion rate; 0 = bolus; '.' on observations"),
    "EVID": ("", "0 observation, 1 dose (NONMEM meaning)"),
    "MDV": ("", "1 when DV is not an observation to use (dose rows, missing values)"),
    "CMT": ("", "dose rows: compartment (1-based state of the model, see 'compartments'); observations: 0 (default)"),
    "DVID": ("", "observation rows: test code number (see 'dvid'); 0 on dose rows"),
    "LLOQ": ("see DVID", "observation rows: the assay's lower limit of quantification (observation model); "
                         "'.' where the test has none, the run had the observation model off, or on dose rows"),
    "BLQ": ("", "1 when the observation is below the LLOQ (then DV = LLOQ), else 0; for M1, drop these "
                "rows (IGNORE=(BLQ.EQ.1)); for M3, their likelihood is P(y < LLOQ)"),
    "CENS": ("", "censoring (Monolix/nlmixr2 CENS): 1 = left-censored, the value is below DV (= LLOQ); 0 otherwise"),
    "DAY": ("day", "nominal day relative to the CAR-T infusion (day 0; negative before it); ADaM NRRLT-style"),
    "TAFD": ("day", "time after the first dose (negative for screening samples)"),
    "ARMN": ("", "arm number (see 'arms')"),
    "SEXF": (PATIENT_COVARIATES["SEXF"].unit, PATIENT_COVARIATES["SEXF"].description),
}


@dataclass(frozen=True)
class NonmemExport:
    data: Path
    dictionary_json: Path
    dictionary_csv: Path
    n_subjects: int
    n_rows: int
    excluded_subjects: tuple[str, ...]
    n_without_observations: int = 0  # patients beyond the run's stored ones ([store] observations_per_arm)


def _read_run(run_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, dict]:
    try:
        run = open_run(run_dir, tables=("patients", "observations", "events"))
        patients, obs, events, manifest = run.patients(), run.observations().collect(), run.events(), run.manifest()
        arm_order = run.arm_order()
    except RunDirectoryError as exc:
        raise NonmemDatasetError(str(exc)) from None
    obs = obs.with_columns(*(pl.col(c).cast(pl.String) for c in ("arm", "test", "unit") if c in obs.columns))
    # arms in the protocol's order (ARMN 1 is the protocol's first arm), then patients by index
    position = {a: i for i, a in enumerate(arm_order)}
    patients = patients.with_columns(
        pl.col("arm").cast(pl.String).replace_strict(position, default=len(position), return_dtype=pl.Int32)
        .alias("_arm_position"))
    return patients, obs, events, manifest


def build_dataset(run_dir: str | Path, tests: list[str] | None = None) -> tuple[pl.DataFrame, dict]:
    """The NONMEM-format dataset of a run directory and its dictionary (not written)."""
    patients, obs, events, manifest = _read_run(Path(run_dir))
    ok = patients.filter(pl.col("status") == "ok").sort(["_arm_position", "arm", "index"]).drop("_arm_position")
    excluded = patients.filter(pl.col("status") != "ok")["subject"].to_list()
    # a run keeps the observations of the first [store] observations_per_arm patients of each arm;
    # the others would be subjects of doses alone, which inform no fit: left out and counted
    observed = ok["subject"].is_in(obs["subject"].unique().implode())
    n_without_observations = ok.height - int(observed.sum())
    ok = ok.filter(observed)
    available = obs["test"].unique(maintain_order=True).to_list()
    if tests:
        unknown = [t for t in tests if t not in available]
        if unknown:
            raise NonmemDatasetError(f"{run_dir}: tests {unknown} are not in the run; available: {available}")
    else:
        tests = available
    dvid = {t: i + 1 for i, t in enumerate(tests)}
    unit_of = dict(obs.select("test", "unit").unique().iter_rows())
    arms = ok["arm"].unique(maintain_order=True).to_list()
    arm_n = {a: i + 1 for i, a in enumerate(arms)}
    ids = {s: i + 1 for i, s in enumerate(ok["subject"].to_list())}

    doses = (events.filter((pl.col("EVID") == 1) & pl.col("ID").is_in(list(ids)))
             .select(pl.col("ID").alias("SUBJ"), pl.col("TIME").alias("DAY"), "EVID", "CMT",
                     pl.col("AMT"), pl.col("RATE"), pl.col("CMTNAME"), pl.col("AMTU"), pl.col("DRUG"))
             .with_columns(pl.lit(None, pl.Float64).alias("DV"), pl.lit(1, pl.Int8).alias("MDV"),
                           pl.lit(0, pl.Int32).alias("DVID")))
    samples = (obs.filter(pl.col("subject").is_in(list(ids)) & pl.col("test").is_in(tests))
               .select(pl.col("subject").alias("SUBJ"), pl.col("day").alias("DAY"),
                       pl.col("value").alias("DV"), pl.col("test"))
               .with_columns(pl.lit(0, pl.Int8).alias("EVID"), pl.lit(0, pl.Int16).alias("CMT"),
                             pl.lit(None, pl.Float64).alias("AMT"), pl.lit(None, pl.Float64).alias("RATE"),
                             pl.col("test").replace_strict(dvid, return_dtype=pl.Int32).alias("DVID"),
                             pl.when(pl.col("DV").is_null() | pl.col("DV").is_nan()).then(1).otherwise(0)
                             .cast(pl.Int8).alias("MDV")))
    # CAR-T cells (and their transgene copies) before the infusion (a sample at the infusion time is pre-dose) are absent by
    # construction, not measured: MDV 1 and no DV, so that no fit reads them as observed zeros
    infusion = doses.filter(pl.col("AMTU") == "cells").group_by("SUBJ").agg(pl.col("DAY").min().alias("_infusion"))
    samples = (samples.join(infusion, on="SUBJ", how="left", maintain_order="left")
               .with_columns(pl.when(pl.col("test").is_in(["CART", "CARTQ"]) & (pl.col("DAY") <= pl.col("_infusion")))
                             .then(1).otherwise(pl.col("MDV")).cast(pl.Int8).alias("MDV")).drop("_infusion"))
    samples = samples.with_columns(pl.when(pl.col("MDV") == 1).then(None).otherwise(pl.col("DV")).alias("DV"))
    samples = _censoring(samples, obs, tests)
    doses = doses.with_columns(pl.lit(None, pl.Float64).alias("LLOQ"), pl.lit(0, pl.Int8).alias("BLQ"),
                               pl.lit(0, pl.Int8).alias("CENS"))
    cols = ["SUBJ", "DAY", "EVID", "CMT", "AMT", "RATE", "DV", "MDV", "DVID", "LLOQ", "BLQ", "CENS"]
    rows = pl.concat([samples.select(cols), doses.select(cols)], how="vertical_relaxed")
    first_record = rows.group_by("SUBJ").agg(pl.col("DAY").min().alias("_origin"))
    first_dose = doses.group_by("SUBJ").agg(pl.col("DAY").min().alias("_first_dose"))
    # a run of an imported SBML model has no patient covariates, products or regimens: its dataset
    # has the event and observation columns and ARMN only
    cov_cols = [c for c in NUMERIC_COVARIATES if c in ok.columns]
    sex_cols = ["SEXF"] if "sex" in ok.columns else []
    covariates = ok.select(
        pl.col("subject").alias("SUBJ"),
        pl.col("arm").replace_strict(arm_n, return_dtype=pl.Int32).alias("ARMN"),
        *[(pl.col("sex") == "F").cast(pl.Int8).alias("SEXF") for _ in sex_cols],
        *[pl.col(c).cast(pl.Float64).alias(NUMERIC_COVARIATES[c][0]) for c in cov_cols])
    data = (rows.join(first_record, on="SUBJ").join(first_dose, on="SUBJ", how="left")
            .join(covariates, on="SUBJ")
            .with_columns(pl.col("SUBJ").replace_strict(ids, return_dtype=pl.Int64).alias("ID"),
                          (pl.col("DAY") - pl.col("_origin")).alias("TIME"),
                          (pl.col("DAY") - pl.col("_first_dose")).alias("TAFD"))
            # observations before doses at equal TIME: NONMEM applies records in file order
            .sort(["ID", "TIME", "EVID", "CMT", "DVID"]))
    out_cols = (["ID", "TIME", "DV", "AMT", "RATE", "EVID", "MDV", "CMT", "DVID", "LLOQ", "BLQ", "CENS", "DAY", "TAFD",
                 "ARMN", *sex_cols] + [NUMERIC_COVARIATES[c][0] for c in cov_cols] + ["SUBJ"])
    data = data.select(out_cols)

    compartments = {int(c): {"state": n, "amount_unit": u}
                    for c, n, u in events.filter(pl.col("EVID") == 1)
                    .select("CMT", "CMTNAME", "AMTU").unique().sort("CMT").iter_rows()}
    arm_info = (ok.group_by("arm", maintain_order=True)
                .agg(*[(pl.col(c).first() if c in ok.columns else pl.lit(None, pl.String)).alias(c)
                       for c in ("product", "regimen")]))
    dictionary = {
        "format": "NONMEM-style event dataset (cartwin)",
        "cartwin_version": __version__,
        "source_run": str(Path(run_dir).resolve()),
        "study_id": manifest.get("study_id"),
        "model": manifest.get("model"),
        "protocol_sha256": (manifest.get("protocol") or {}).get("sha256"),
        "seed": manifest.get("seed"),
        "simulated": True,
        "time_origin": "TIME = 0 at the subject's first record: the first intervention unless a "
                       "screening sample precedes it; DAY is the nominal day relative to the CAR-T infusion",
        "lymphodepletion": "PK doses (EVID 1) into the model's drug compartments, infusions with RATE",
        "ordering": "by ID, TIME; at equal TIME observations before doses (pre-dose samples)",
        "missing_value": ".",
        "nmtran_input": "$INPUT " + " ".join(c if c != "SUBJ" else "SUBJ=DROP" for c in out_cols),
        "columns": {**{c: {"unit": u, "meaning": m} for c, (u, m) in DATASET_COLUMNS.items() if c in out_cols},
                    **{NUMERIC_COVARIATES[c][0]: {"unit": NUMERIC_COVARIATES[c][1],
                                                   "meaning": NUMERIC_COVARIATES[c][2] + " (time-constant covariate)"}
                       for c in cov_cols},
                    "SUBJ": {"unit": "", "meaning": "subject id in the run (text; drop it in NONMEM $INPUT)"}},
        "dvid": {str(n): {"test": t, "unit": unit_of.get(t, ""),
                          "name": test_codes()[t].name if t in test_codes() else t} for t, n in dvid.items()},
        "compartments": {str(k): v for k, v in compartments.items()},
        "arms": {str(arm_n[a]): {"arm": a, "product": p, "regimen": r} for a, p, r in arm_info.iter_rows()},
        "subjects": {str(n): s for s, n in ids.items()},
        "excluded_subjects": {s: "simulation failed" for s in excluded},
        "subjects_without_observations": {
            "count": n_without_observations,
            "meaning": "patients left out because the run did not store their observations (it keeps those "
                       "of the first [store] observations_per_arm patients of each arm, docs/protocol.md)"},
    }
    return data, dictionary


def _censoring(samples: pl.DataFrame, obs: pl.DataFrame, tests: list[str]) -> pl.DataFrame:
    """LLOQ, BLQ and CENS of the observation rows (``samples``, in ``obs`` order). A run with the
    observation model on flags values below the LLOQ (``blq``); they go out as DV = LLOQ with
    BLQ = 1 and CENS = 1 (left-censored), the layout M3 in NONMEM, Monolix and nlmixr2 expects.
    Without it, every value is quantified: LLOQ empty, BLQ = CENS = 0."""
    if layout.OBSERVATION_BLQ not in obs.columns:
        return samples.with_columns(pl.lit(None, pl.Float64).alias("LLOQ"), pl.lit(0, pl.Int8).alias("BLQ"),
                                    pl.lit(0, pl.Int8).alias("CENS"))
    flags = (obs.filter(pl.col("test").is_in(tests))
             .select(pl.col("subject").alias("SUBJ"), pl.col("day").alias("DAY"), "test",
                     pl.col(layout.OBSERVATION_LLOQ).cast(pl.Float64).alias("LLOQ"),
                     (pl.col(layout.OBSERVATION_BLQ).fill_null(False) & pl.col("value").is_not_nan())
                     .cast(pl.Int8).alias("BLQ")))
    out = samples.join(flags, on=["SUBJ", "DAY", "test"], how="left", maintain_order="left")
    # a row that is not an observation (MDV 1: CAR-T before the infusion, a missing value) is not
    # censored either: it carries no information for M3
    out = out.with_columns(pl.when(pl.col("MDV") == 1).then(0).otherwise(pl.col("BLQ")).cast(pl.Int8).alias("BLQ"))
    return out.with_columns(
        pl.when(pl.col("BLQ") == 1).then(pl.col("LLOQ")).otherwise(pl.col("DV")).alias("DV"),
        pl.col("BLQ").fill_null(0).alias("BLQ"), pl.col("BLQ").fill_null(0).alias("CENS"))


def export_nonmem(run_dir: str | Path, out: str | Path, tests: list[str] | None = None) -> NonmemExport:
    """Write ``out`` (CSV) and its column dictionary beside it (``<stem>.dictionary.json`` and
    ``.csv``)."""
    out = Path(out)
    if out.is_dir():
        raise NonmemDatasetError(f"{out} is a directory; give a file name such as dataset.csv")
    data, dictionary = build_dataset(run_dir, tests)
    try:  # a new folder is made, as every command's --out makes its own
        out.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise NonmemDatasetError(f"{out.parent}: exists and is not a folder; choose another --out") from None
    json_path = out.with_name(out.stem + ".dictionary.json")
    csv_path = out.with_name(out.stem + ".dictionary.csv")
    write_via(out, lambda p: data.write_csv(p, null_value=".", float_precision=None))
    write_via(json_path, lambda p: Path(p).write_text(json.dumps(dictionary, indent=2)))
    flat = pl.DataFrame([{"column": c, "unit": d["unit"], "meaning": d["meaning"]}
                         for c, d in dictionary["columns"].items()])
    write_via(csv_path, lambda p: flat.write_csv(p))
    return NonmemExport(out, json_path, csv_path, int(data["ID"].n_unique()), data.height,
                        tuple(dictionary["excluded_subjects"]),
                        dictionary["subjects_without_observations"]["count"])


# --- import -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class NonmemDataset:
    """A dataset read back: observations in the clinical layer's format, and the dose records."""

    observations: pl.DataFrame  # subject, day, test, value, unit
    doses: pl.DataFrame  # subject, day, cmt, amount, rate
    source: str


def _rows(frame: pl.DataFrame, mask: pl.Expr) -> list[int]:
    return frame.filter(mask)["_row"].to_list()


def _name_rows(rows: list[int], limit: int = 10) -> str:
    shown = ", ".join(map(str, rows[:limit]))
    return f"row{'s' if len(rows) > 1 else ''} {shown}" + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


def check_records(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    """Validate the NONMEM record logic; returns the frame with EVID/MDV filled in. Rows are
    1-based data rows (header excluded)."""
    missing = [c for c in ("ID", "TIME", "DV") if c not in frame.columns]
    if "EVID" not in frame.columns and "MDV" not in frame.columns:
        missing.append("EVID or MDV")
    if missing:
        raise NonmemDatasetError(f"{source}: missing required column(s) {missing}")
    f = frame.with_row_index("_row", offset=1)
    numeric = [c for c in ("ID", "TIME", "DV", "AMT", "RATE", "EVID", "MDV", "CMT") if c in f.columns]
    problems: list[str] = []
    for c in numeric:
        if f.schema[c] == pl.String:
            text = pl.col(c).str.strip_chars()
            parsed = pl.when(text.is_in([".", ""])).then(None).otherwise(text.cast(pl.Float64, strict=False))
            bad = _rows(f, text.is_not_null() & ~text.is_in([".", ""]) & parsed.is_null())
            if bad:
                problems.append(f"{_name_rows(bad)}: column {c} is not a number")
            f = f.with_columns(parsed.alias(c))
        else:
            f = f.with_columns(pl.col(c).cast(pl.Float64))
    if problems:
        raise NonmemDatasetError(f"{source}: " + "; ".join(problems))
    if "AMT" not in f.columns:
        f = f.with_columns(pl.lit(None, pl.Float64).alias("AMT"))
    if "EVID" not in f.columns:  # NONMEM's rule: a row with AMT is a dose, MDV=1 without is "other"
        f = f.with_columns(pl.when(pl.col("AMT").fill_null(0) > 0).then(1.0)
                           .when(pl.col("MDV") == 1).then(2.0).otherwise(0.0).alias("EVID"))
    if "MDV" not in f.columns:
        f = f.with_columns(pl.when(pl.col("EVID") == 0).then(0.0).otherwise(1.0).alias("MDV"))
    checks = [
        (pl.col("ID").is_null(), "ID is missing"),
        (pl.col("TIME").is_null(), "TIME is missing"),
        (~pl.col("EVID").is_in([0.0, 1.0, 2.0, 3.0, 4.0]) | pl.col("EVID").is_null(), "EVID is not one of 0-4"),
        (~pl.col("MDV").is_in([0.0, 1.0]) | pl.col("MDV").is_null(), "MDV is not 0 or 1"),
        ((pl.col("EVID") == 0) & (pl.col("AMT").fill_null(0) != 0), "observation (EVID 0) with a dose amount AMT"),
        (pl.col("EVID").is_in([1.0, 4.0]) & pl.col("AMT").is_null(), "dose (EVID 1/4) without AMT"),
        (pl.col("AMT") < 0, "negative AMT"),
        ((pl.col("EVID") != 0) & (pl.col("MDV") == 0), "dose or other event (EVID != 0) with MDV 0: its DV would be used as an observation"),
        ((pl.col("EVID") == 0) & (pl.col("MDV") == 0) & pl.col("DV").is_null(), "observation with MDV 0 but no DV"),
    ]
    if "RATE" in f.columns:
        checks.append(((pl.col("EVID") == 0) & (pl.col("RATE").fill_null(0) != 0), "observation (EVID 0) with a RATE"))
        checks.append((pl.col("RATE") < 0, "negative RATE (modelled rates, -1/-2, are not supported)"))
    for mask, text in checks:
        bad = _rows(f, mask)
        if bad:
            problems.append(f"{_name_rows(bad)}: {text}")
    # each ID one contiguous block; TIME non-decreasing inside it unless a reset (EVID 3/4)
    block = (pl.col("ID") != pl.col("ID").shift(1)).fill_null(True).cum_sum()
    f = f.with_columns(block.alias("_block"))
    blocks = f.group_by("ID").agg(pl.col("_block").n_unique().alias("n"), pl.col("_row").min().alias("first"))
    split = blocks.filter(pl.col("n") > 1)
    for id_, _, first in split.iter_rows():
        rows = f.filter((pl.col("ID") == id_) & (pl.col("_block") != f.filter(pl.col("_row") == first)["_block"][0]))["_row"].to_list()
        problems.append(f"{_name_rows(rows)}: ID {id_:g} appears again after other subjects (NONMEM would "
                        "read a new individual); sort by ID")
    back = _rows(f, (pl.col("TIME") < pl.col("TIME").shift(1)) & (pl.col("_block") == pl.col("_block").shift(1))
                 & ~pl.col("EVID").is_in([3.0, 4.0]))
    if back:
        problems.append(f"{_name_rows(back)}: TIME goes backwards within a subject")
    if problems:
        raise NonmemDatasetError(f"{source}: inconsistent records (1-based data rows):\n  " + "\n  ".join(problems))
    return f.drop("_block")


def _censoring_columns(obs: pl.DataFrame) -> list[pl.Expr]:
    """``lloq`` and ``blq`` of observation rows from LLOQ and BLQ/CENS columns, when present: a
    row is below the limit when BLQ = 1 or CENS = 1 (left-censored; its DV is the limit)."""
    if not {"BLQ", "CENS"} & set(obs.columns):
        return []
    flag = pl.lit(False)
    for c in ("BLQ", "CENS"):
        if c in obs.columns:
            flag = flag | (pl.col(c).cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False) == 1).fill_null(False)
    limit = (pl.col("LLOQ").cast(pl.String).str.strip_chars().replace(".", None).cast(pl.Float64, strict=False)
             if "LLOQ" in obs.columns else pl.lit(None, pl.Float64))
    # CENS = 1 says the value lies below DV: without an LLOQ column, DV is the limit
    return [pl.when(flag & limit.is_null()).then(pl.col("DV")).otherwise(limit).alias("lloq"), flag.alias("blq")]


def read_nonmem(path: str | Path, dictionary: str | Path | dict | None = None,
                infusion_cmt: int | None = None) -> NonmemDataset:
    """Read a NONMEM-format CSV as observed data. Tests come from ``DVID`` through the dictionary
    (``dvid`` map, as written by :func:`export_nonmem`, found beside the file by default) or
    ``DVID`` holding test codes directly. The day relative to the infusion comes from a ``DAY``
    column, or from ``TIME`` minus the time of the first dose into ``infusion_cmt``."""
    path = Path(path)
    if not path.exists():
        raise NonmemDatasetError(f"{path}: no such file")
    if dictionary is None:
        beside = path.with_name(path.stem + ".dictionary.json")
        dictionary = beside if beside.exists() else {}
    if not isinstance(dictionary, dict):
        dictionary = json.loads(Path(dictionary).read_text())
    try:
        raw = pl.read_csv(path, infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        raise NonmemDatasetError(f"{path}: cannot be read as CSV ({exc})") from None
    f = check_records(raw, str(path))
    subject = pl.col("SUBJ") if "SUBJ" in f.columns else pl.col("ID").cast(pl.Int64).cast(pl.String)
    f = f.with_columns(subject.alias("subject"))
    if "DAY" in f.columns:
        f = f.with_columns(pl.col("DAY").cast(pl.Float64, strict=False).alias("day"))
    elif infusion_cmt is not None:
        infusion = (f.filter((pl.col("EVID") == 1) & (pl.col("CMT") == infusion_cmt))
                    .group_by("subject").agg(pl.col("TIME").min().alias("_t_inf")))
        lacking = sorted(set(f["subject"].unique()) - set(infusion["subject"]))
        if lacking:
            raise NonmemDatasetError(f"{path}: subjects {lacking[:10]} have no dose into CMT {infusion_cmt}")
        f = f.join(infusion, on="subject").with_columns((pl.col("TIME") - pl.col("_t_inf")).alias("day"))
    else:
        raise NonmemDatasetError(f"{path}: no DAY column; give infusion_cmt (the CAR-T compartment) so "
                                 "that days relative to the infusion can be computed")
    dvid_map = dictionary.get("dvid", {})
    codes = test_codes()
    obs = f.filter((pl.col("EVID") == 0) & (pl.col("MDV") == 0))
    if "DVID" not in obs.columns:
        raise NonmemDatasetError(f"{path}: no DVID column to say which test each observation is")
    dvid_text = obs["DVID"].cast(pl.String)
    tests, units, bad = [], [], []
    for row, key in zip(obs["_row"], dvid_text):
        k = key.removesuffix(".0") if key is not None else None
        if k in dvid_map:
            tests.append(dvid_map[k]["test"])
            units.append(dvid_map[k].get("unit") or codes.get(dvid_map[k]["test"]).unit)
        elif k in codes:
            tests.append(k)
            units.append(codes[k].unit)
        else:
            tests.append(None)
            units.append(None)
            bad.append(row)
    if bad:
        raise NonmemDatasetError(f"{path}: {_name_rows(bad)}: DVID is neither in the dictionary's dvid map "
                                 "nor a cartwin test code")
    observations = (obs.with_columns(pl.Series("test", tests), pl.Series("unit", units))
                    .select("subject", "day", "test", pl.col("DV").alias("value"), "unit",
                            *_censoring_columns(obs)))
    dose_cols = [pl.col("subject"), pl.col("day"), pl.col("CMT").cast(pl.Int64).alias("cmt") if "CMT" in f.columns
                 else pl.lit(None, pl.Int64).alias("cmt"), pl.col("AMT").alias("amount"),
                 (pl.col("RATE") if "RATE" in f.columns else pl.lit(0.0)).fill_null(0.0).alias("rate")]
    doses = f.filter(pl.col("EVID").is_in([1.0, 4.0])).select(dose_cols)
    return NonmemDataset(observations, doses, str(path))
