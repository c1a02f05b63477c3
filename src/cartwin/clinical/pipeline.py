"""Score validated observations into the clinical layer's result tables (Polars frames).

``score_observations`` returns ``visits`` (one row per subject and day: SLEDAI variants with bounds
and descriptors, PGA, CRS, ICANS, SRI-4, BICLA, DORIS, LLDAS, SELENA flare), ``lab_grades`` (CTCAE
per lab row), ``patients`` (per-patient endpoints), ``adverse_events`` (maximum grade per term and
patient) and ``flags`` (everything not evaluable or assumed, with file/row/column). The layer
receives frames and returns frames; reading files and writing results happen at the border
(``cartwin.scoring``, the store).
"""

from __future__ import annotations

import polars as pl

from cartwin.clinical import composite, crs_icans, ctcae, haematotox, kinetics, sledai
from cartwin.clinical._frames import frames_by_subject_code, in_subject_day_order, pivot_first, sort_by_subject_day
from cartwin.clinical.gvhd_body import magic_stages
from cartwin.clinical.observations import FLAG_SCHEMA, Observations, make_flags
from cartwin.clinical.ruleset import settings

TABLES = ("visits", "lab_grades", "patients", "adverse_events", "flags")
ICANS_TESTS = ("ICE", "ICANS_LOC", "ICANS_SEIZ", "ICANS_MOTOR", "ICANS_ICP")
GVHD_TESTS = ("GVHD_SKIN", "GVHD_BULLAE", "GVHD_UGI", "STOOL", "STOOL_N", "GVHD_LGI4")


def _wide(frame: pl.DataFrame) -> pl.DataFrame:
    daily = pivot_first(frame, on="test", values="value")
    arms = frame.group_by("subject").agg(pl.col("arm").drop_nulls().first())
    return daily.join(arms, on="subject", how="left")


def _ensure(frame: pl.DataFrame, columns: list[str] | tuple[str, ...]) -> pl.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    return frame.with_columns([pl.lit(None, pl.Float64).alias(c) for c in missing]) if missing else frame


def _join_by_visit(left: pl.DataFrame, right: pl.DataFrame) -> pl.DataFrame:
    """``left.join(right, on=["subject", "day"], how="left")`` for a ``right`` with one row per
    subject and day. When both hold the same (subject, day) rows in the same order (the daily
    frame and the SLEDAI visits of daily data), the columns are put side by side instead of
    matched by hashing: the same frame."""
    keys = ["subject", "day"]
    added = [c for c in right.columns if c not in keys]
    if (left.height == right.height and not set(added) & set(left.columns)
            and left.select(keys).equals(right.select(keys))):
        return left.hstack(right.select(added))
    return left.join(right, on=keys, how="left")


def _sledai_visit_days(frame: pl.DataFrame) -> pl.DataFrame:
    visit = settings("sledai")["visit"]
    days = (frame.lazy().select("subject", "day", "test")
            .filter(pl.col("test").str.starts_with(visit["defining_prefix"]) | pl.col("test").is_in(visit["defining_tests"]))
            .select("subject", "day").collect())
    # rows already in strictly ascending order (one defining test, as in a run's chunks) are distinct
    return days if in_subject_day_order(days) else days.unique()


def _composites(visits: pl.DataFrame, daily: pl.DataFrame, baseline_day: float,
                platelets_attributed: pl.DataFrame) -> pl.DataFrame:
    """SRI, BICLA, DORIS, LLDAS and SFI on SLEDAI assessment visits. ``platelets_attributed``:
    (subject, day, attributed), thrombocytopenia attributed to another cause than lupus by the
    SLEDAI attribution rules (:func:`sledai.attributed_days`), which the SFI's platelet criterion
    follows too."""
    desc = sledai.descriptors()
    cols = ["PGA", "PRED", "IMMSUP", "ANTIMAL", "TXFAIL", "HOSP", "NEWDRUG_MILD", "NEWDRUG_SEVERE", "WEIGHT",
            "HAEMOLYSIS", "GIACT", "PLAT", "HGB"] + [f"BILAG_{d}" for d in composite.BILAG_DOMAINS]
    daily = _ensure(daily, cols)
    # Treatment failure is an event that persists: a failure on or before a visit counts at that visit.
    failures = sort_by_subject_day(daily).select(
        "subject", "day", (pl.col("TXFAIL").fill_null(0) == 1).cum_max().over("subject").alias("treatment_failure"))
    v = sort_by_subject_day(_join_by_visit(_join_by_visit(visits, daily.select("subject", "day", *cols)), failures))
    base_cols = ["selena", "sledai2k", "PGA"] + [f"BILAG_{d}" for d in composite.BILAG_DOMAINS]
    base = (v.filter(pl.col("day") <= baseline_day).group_by("subject")
            .agg([pl.col(c).drop_nulls().last().alias(f"{c}_base") for c in base_cols]))
    v = v.join(base, on="subject", how="left", maintain_order="left")
    # the bounds of the last baseline SELENA-SLEDAI, for a score with descriptors not evaluable
    bounds = (v.filter((pl.col("day") <= baseline_day) & pl.col("selena_min").is_not_null()).group_by("subject")
              .agg(pl.col("selena_min").sort_by("day").last().alias("sledai_base_min"),
                   pl.col("selena_max").sort_by("day").last().alias("sledai_base_max")))
    # a baseline score, where there is one, is its own range: both visits are judged against the
    # same baseline
    v = v.join(bounds, on="subject", how="left", maintain_order="left").with_columns(
        pl.coalesce("selena_base", "sledai_base_min").alias("sledai_base_min"),
        pl.coalesce("selena_base", "sledai_base_max").alias("sledai_base_max"))
    after = pl.col("day") > baseline_day

    v = composite.bilag_changes(v)
    v = composite.sri(v.with_columns(pl.col("selena").alias("sledai"), pl.col("selena_base").alias("sledai_base"),
                                     pl.col("selena_min").alias("sledai_min"), pl.col("selena_max").alias("sledai_max"),
                                     pl.col("PGA").alias("pga"), pl.col("PGA_base").alias("pga_base")))
    v = composite.bicla(v)
    v = v.with_columns([pl.when(after).then(pl.col(c)).otherwise(None).alias(c)
                        for c in ("sri4", "sri4_sledai_component", "sri4_pga_component", "sri4_bilag_component", "bicla")])
    v = v.with_columns(pl.when(after).then(pl.col("sri4_reason")).otherwise(pl.lit("baseline visit")).alias("sri4_reason"))

    v = composite.doris(v.with_columns(pl.col("csledai2k").alias("csledai"), pl.col("PRED").alias("pred"),
                                       pl.col("IMMSUP").alias("immsup"), pl.col("ANTIMAL").alias("antimal")))
    major = desc.filter(pl.col("lldas_major"))["code"].to_list()
    codes = desc["code"].to_list()
    # ``v`` is in subject and day order with one row per visit: a subject's previous visit is the
    # row above unless that row is another subject's (then there is none), and its first visit is
    # the row that starts its run. (The same values as shift(1).over("subject") and the day equal
    # to the subject's first day, without a window pass per column.)
    first_visit = (pl.col("subject") != pl.col("subject").shift(1)).fill_null(True)
    prev = lambda c: pl.when(first_visit).then(None).otherwise(pl.col(c).shift(1))  # noqa: E731
    previous = {c: prev(f"d_{c}") for c in codes}
    new_any = pl.any_horizontal([pl.col(f"d_{c}") & ~previous[c] for c in codes])
    v = v.with_columns(
        pl.any_horizontal([pl.col(f"d_{c}") for c in major]).alias("major_organ_activity"),
        pl.when(first_visit).then(None).otherwise(new_any).alias("new_activity"),
        (pl.col("HAEMOLYSIS") == 1).alias("haemolysis"), (pl.col("GIACT") == 1).alias("gi_activity"),
    )
    v = composite.lldas(v)

    mild = desc.filter(pl.col("sfi_class") == "mild")["code"].to_list()
    severe = desc.filter(pl.col("sfi_class") == "severe")["code"].to_list()
    sfi_cfg = settings("composite")["sfi"]
    v = v.join(platelets_attributed.rename({"attributed": "platelets_attributed"}), on=["subject", "day"],
               how="left", maintain_order="left")
    v = v.with_columns(
        prev("selena").alias("sledai_prev"), prev("PGA").alias("pga_prev"), prev("PRED").alias("pred_prev"),
        pl.col("WEIGHT").alias("weight"),
        ((pl.col("PLAT") < sfi_cfg["severe_platelets_below"]) & ~pl.col("platelets_attributed").fill_null(False)
         & (prev("PLAT").is_null() | (prev("PLAT") >= sfi_cfg["severe_platelets_below"]))).alias("platelets_sle_new_low"),
        ((pl.col("HAEMOLYSIS") == 1) & ((pl.col("HGB") < sfi_cfg["severe_haemoglobin_below_g_per_l"])
                                        | ((prev("HGB") - pl.col("HGB")) > sfi_cfg["severe_haemoglobin_fall_g_per_l"]))).alias("haemolysis_severe"),
        pl.any_horizontal([pl.col(f"d_{c}") & ~previous[c] for c in mild]).alias("new_mild_manifestation"),
        pl.any_horizontal([pl.col(f"d_{c}") & ~previous[c] for c in severe]).alias("new_severe_manifestation"),
        (pl.col("NEWDRUG_MILD") == 1).alias("new_drug_mild"), (pl.col("NEWDRUG_SEVERE") == 1).alias("new_drug_severe"),
        (pl.col("HOSP") == 1).alias("hospitalised"),
    )
    v = composite.sfi(v).with_columns(pl.when(first_visit).then(None).otherwise(pl.col("sfi_flare")).alias("sfi_flare"))
    keep = [c for c in v.columns if c not in cols and not c.startswith("BILAG_") and c not in
            ("sledai", "sledai_base", "sledai_min", "sledai_max", "sledai_base_min", "sledai_base_max",
             "pga", "pga_base", "csledai", "pred", "immsup", "antimal", "sledai_prev",
             "pga_prev", "pred_prev", "weight", "haemolysis", "gi_activity", "platelets_attributed")]
    return v.select(keep)


# Frames larger than this are scored in chunks of whole subjects: every score is per subject, so
# the tables are the same, and the working memory is bounded by the chunk instead of the frame.
CHUNK_ROWS = 2_000_000
_POSITION = "__position"  # frame order of a row, to put per-chunk flags back in whole-frame order


def baseline_days(baseline_last_day: float | None = None, lab_baseline_last_day: float | None = None) -> tuple[float, float]:
    """(last day of the baseline for SLEDAI, SRI, composites and endpoints; last day of the CTCAE
    grading reference): the days given, else those of ``ctcae_v5.toml``."""
    config = settings("ctcae_v5")
    return (float(config["baseline_last_day"] if baseline_last_day is None else baseline_last_day),
            float(config["lab_baseline_last_day"] if lab_baseline_last_day is None else lab_baseline_last_day))


def score_observations(obs: Observations, sledai_window_days: float | None = None, *,
                       baseline_last_day: float | None = None,
                       lab_baseline_last_day: float | None = None, flags: bool = True) -> dict[str, pl.DataFrame]:
    """Score validated observations; returns the five result tables as Polars frames.
    ``baseline_last_day`` and ``lab_baseline_last_day`` choose the baselines (:func:`baseline_days`).

    ``flags=False`` (scoring a run as it streams, where only the tables are kept): no ``flags``
    table, and ``lab_grades`` holds the same rows and columns in grading order instead of sorted by
    subject, test and day (and may carry working columns); the other tables are the same."""
    baselines = baseline_days(baseline_last_day, lab_baseline_last_day)
    chunks = _subject_chunks(obs.frame, CHUNK_ROWS)
    if chunks is None:
        if not flags:
            tables = _score_frame(obs.frame, sledai_window_days, None, baselines, lab_grade_table=False)
            return {name: tables["_lab_grades"] if name == "lab_grades" else tables[name]
                    for name in TABLES if name != "flags"}
        return _score_unchunked(obs, sledai_window_days, baselines)
    tests = frozenset(obs.frame["test"].unique().drop_nulls().to_list())
    parts: dict[str, list[pl.DataFrame]] = {"visits": [], "lab_grades": [], "patients": [], "adverse_events": [], "_base": []}
    for chunk in chunks:
        tables = _score_frame(chunk, sledai_window_days, tests, baselines)
        lab_grades = tables.pop("_lab_grades")
        for name, frame in tables.items():
            parts[name].append(frame)
        parts["_base"].append(_baseline_flag_rows(lab_grades).select(*FLAG_COLUMNS_FROM_ROWS, "_term_index", _POSITION))
    combined = {}
    for name, frames in parts.items():
        if any(f.columns != frames[0].columns for f in frames):  # not expected: the unchunked path is the reference
            return _score_unchunked(obs, sledai_window_days, baselines)
        combined[name] = pl.concat(frames, how="vertical_relaxed")
    base = combined.pop("_base").sort("_term_index", _POSITION, maintain_order=True)
    combined["flags"] = _flags(obs, base, combined["visits"])
    return {name: combined[name] for name in TABLES}


def _score_unchunked(obs: Observations, sledai_window_days: float | None,
                     baselines: tuple[float, float]) -> dict[str, pl.DataFrame]:
    tables = _score_frame(obs.frame, sledai_window_days, None, baselines)
    lab_grades = tables.pop("_lab_grades")
    tables["flags"] = _flags(obs, _baseline_flag_rows(lab_grades), tables["visits"])
    return {name: tables[name] for name in TABLES}


def _subject_chunks(frame: pl.DataFrame, chunk_rows: int):
    """Generator of frames holding whole subjects (in subject order, rows in frame order) with a
    frame-position column; None when the frame is small enough to score at once."""
    if frame.height <= chunk_rows or frame.schema.get("subject") != pl.String or frame["subject"].null_count():
        return None
    subjects = frame["subject"].unique().sort()
    n_chunks = -(-frame.height // chunk_rows)
    per_chunk = -(-subjects.len() // n_chunks)
    if per_chunk >= subjects.len():
        return None
    chunk_id = (pl.col("subject").cast(pl.Enum(subjects)).to_physical() // per_chunk).alias("__chunk")
    keyed = frame.with_row_index(_POSITION).with_columns(chunk_id)

    def generate():
        for index in range(-(-subjects.len() // per_chunk)):
            yield keyed.filter(pl.col("__chunk") == index).drop("__chunk")
    return generate()


def _score_frame(frame: pl.DataFrame, sledai_window_days: float | None, tests: frozenset | None,
                 baselines: tuple[float, float], lab_grade_table: bool = True) -> dict[str, pl.DataFrame]:
    """Score one frame of whole subjects. ``tests``: the test codes of the whole frame when this is a
    chunk of it, so that a chunk lacking a test scores as the whole frame does (same columns)."""
    # Subjects as an Enum of their sorted identifiers: joins, groupings and sorts by subject work on
    # integers and still order subjects by their text; the tables get text identifiers back at the end.
    coded = frames_by_subject_code({"frame": frame})
    text_subjects = coded is not None
    if text_subjects:
        frame = coded["frame"]
    daily = _wide(frame)
    if tests is not None:
        daily = _ensure(daily, sorted(tests))
    daily = _ensure(daily, ["TEMP", "HYPOTEN", "HYPOXIA", "ANTICYT", *ICANS_TESTS, "PGA", "NEUT"])
    # no row gives a cause (a simulated run): no row to look at, the same empty table
    with_cause = frame if frame["cause"].null_count() < frame.height else frame.clear()
    icans_cause = (with_cause.filter(pl.col("test").is_in(ICANS_TESTS) & pl.col("cause").is_not_null())
                   .group_by("subject", "day").agg(pl.col("cause").first().alias("icans_cause")))
    daily = daily.join(icans_cause, on=["subject", "day"], how="left")
    daily = crs_icans.grade_icans(crs_icans.grade_crs(daily))

    lab_grades = ctcae.grade_labs(frame, lab_baseline_last_day=baselines[1])
    events = sledai.descriptor_events(frame, daily.select("subject", "day", "icans_grade"))
    visit_days = _sledai_visit_days(frame)
    sledai_scores = sledai.score_visits(events, visit_days, window_days=sledai_window_days)
    sledai_scores = _composites(sledai_scores, daily, baselines[0], sledai.attributed_days(events, "SD_THROMB"))

    gvhd = _magic(daily)
    visits = (daily.select("subject", "arm", "day", "PGA", "crs_grade", "crs_reason", "icans_grade", "icans_reason")
              .rename({"PGA": "pga"}))
    # no GvHD input recorded: the stages are null on every day (as the join with no rows gives)
    visits = (visits.join(gvhd.select("subject", "day", *MAGIC_COLUMNS), on=["subject", "day"], how="left") if gvhd.height
              else visits.with_columns([pl.lit(None, gvhd.schema[c]).alias(c) for c in MAGIC_COLUMNS]))
    visits = sort_by_subject_day(_join_by_visit(visits, sledai_scores)
                                 .with_columns(pl.col("sledai2k_min").is_not_null().alias("sledai_visit")))
    patients = _patients(frame, daily, visits, lab_grades, baselines[0], tests)
    adverse = _adverse_events(daily, lab_grades, patients, gvhd)
    tables = {"visits": visits, "_lab_grades": lab_grades, "patients": patients, "adverse_events": adverse}
    if lab_grade_table:
        tables["lab_grades"] = _lab_grade_table(lab_grades)
    if text_subjects:
        tables = {name: t.with_columns(pl.col("subject").cast(pl.String)) for name, t in tables.items()}
    return tables


def _sledai_not_evaluable_flags(visits: pl.DataFrame, source: str) -> pl.DataFrame:
    """One flag per SLEDAI descriptor that could not be judged at some SLEDAI visits (neither the
    descriptor nor its laboratory input was recorded in its window): those visits' SLEDAI-2K is
    then only a range (``sledai2k_min``..``sledai2k_max``), and endpoints that need the score are
    not evaluable there."""
    if "sledai_not_evaluable" not in visits.columns:
        return pl.DataFrame(schema=FLAG_SCHEMA)
    scored = visits.filter(pl.col("sledai_visit"))
    counts = (scored.select(pl.col("sledai_not_evaluable").str.split(", ").alias("code")).explode("code")
              .filter(pl.col("code").is_not_null() & (pl.col("code") != "")).group_by("code").agg(pl.len().alias("n")))
    if not counts.height:
        return pl.DataFrame(schema=FLAG_SCHEMA)
    names = dict(zip(*sledai.descriptors().select("code", "descriptor")))
    inputs: dict[str, list[str]] = {}
    for code, test in sledai.lab_rules().select("descriptor", "test").iter_rows():
        inputs.setdefault(code, []).append(test)
    order = {c: i for i, c in enumerate(sledai.descriptor_codes())}
    rows = []
    for code, n in sorted(counts.iter_rows(), key=lambda r: order.get(r[0], len(order))):
        needed = f"{code} or its laboratory input ({', '.join(dict.fromkeys(inputs[code]))})" if code in inputs else code
        rows.append({"file": source, "row": None, "column": "test", "subject": None, "test": code, "day": None,
                     "problem": f"SLEDAI descriptor {code} ({names.get(code, code)}) not evaluable at {n} of "
                                f"{scored.height} SLEDAI visits: {needed} was not recorded in its window; those "
                                "visits' SLEDAI-2K is only a range (sledai2k_min..sledai2k_max) and the endpoints "
                                "that need the score are not evaluable there"})
    return pl.DataFrame(rows, schema=FLAG_SCHEMA)


FLAG_COLUMNS_FROM_ROWS = ("file", "row", "subject", "test", "day", "baseline_flag")


def _baseline_flag_rows(lab_grades: pl.DataFrame) -> pl.DataFrame:
    """Graded rows with a baseline flag, in grading order, with the term's position in the rules."""
    if "baseline_flag" not in lab_grades.columns:
        return pl.DataFrame()
    terms = ctcae.criteria()["term"].unique(maintain_order=True).to_list()
    rows = lab_grades.filter(pl.col("baseline_flag").is_not_null())
    rows = rows.with_columns(pl.col("term").replace_strict({t: i for i, t in enumerate(terms)}, default=None,
                                                           return_dtype=pl.UInt32).alias("_term_index"))
    return rows if _POSITION in rows.columns else rows.with_columns(pl.lit(None, pl.UInt32).alias(_POSITION))


def _lab_grade_table(lab_grades: pl.DataFrame) -> pl.DataFrame:
    cols = ["subject", "arm", "day", "test", "term", "direction", "value", "unit", "reported_unit", "lower", "upper",
            "limit_source", "baseline", "baseline_day", "pchg", "grade", "grade_reason", "baseline_flag", "standard",
            "file", "row"]
    table = lab_grades.select([c for c in cols if c in lab_grades.columns])
    if "reported_unit" in table.columns:
        table = table.with_columns(pl.col("reported_unit").cast(pl.String))
    # Rows of one subject, test and day (one per CTCAE term) stay in grading order.
    return table.sort("subject", "test", "day", maintain_order=True)


def _patients(frame: pl.DataFrame, daily: pl.DataFrame, visits: pl.DataFrame, lab_grades: pl.DataFrame,
              baseline_day: float, tests: frozenset | None = None) -> pl.DataFrame:
    # In a chunk, a test present elsewhere in the frame gives its (empty) columns here too.
    present = lambda rows, test: rows.height > 0 or (tests is not None and test in tests)  # noqa: E731
    subjects = daily.group_by("subject").agg(pl.col("arm").first(), pl.col("day").min().alias("first_day"),
                                             pl.col("day").max().alias("last_day"))
    sv = visits.filter(pl.col("sledai_visit"))  # in subject and day order, as the visits are
    after = pl.col("day") > baseline_day
    # Baseline characteristics only: per-patient endpoints over the visits (SRI-4 at the last
    # visit, DORIS or LLDAS ever, flares, remission) are declared in cartwin.endpoints.
    sledai_summary = sv.group_by("subject").agg(
        pl.len().alias("sledai_visits"),
        pl.col("sledai2k").filter(~after).last().alias("sledai2k_baseline"),
    )
    crs = daily.group_by("subject").agg(pl.col("crs_grade").max().alias("crs_max"), pl.col("icans_grade").max().alias("icans_max"),
                                        pl.col("day").filter(pl.col("crs_grade") >= 1).min().alias("crs_onset_day"),
                                        pl.col("day").filter(pl.col("icans_grade") >= 1).min().alias("icans_onset_day"))
    # Each test's rows as lazy queries: only the columns read are gathered from the frame's rows.
    rows_of = lambda test, *columns: frame.lazy().filter(pl.col("test") == test).select(*columns).collect()  # noqa: E731
    anc = rows_of("NEUT", "subject", "day", (pl.col("value") * haematotox.CELLS_PER_UL_PER_10E9_L).alias("anc_per_ul"))
    icaht = haematotox.icaht(anc) if present(anc, "NEUT") else pl.DataFrame(schema={"subject": frame.schema["subject"]})
    htx_cfg = settings("hematotox")
    pre = (frame.lazy().select("subject", "day", "test", "value")
           .filter((pl.col("day") <= htx_cfg["baseline_last_day"]) & pl.col("value").is_not_null()
                   & pl.col("test").is_in(["PLAT", "NEUT", "HGB", "CRP", "FERRITIN"]))
           .sort("day").group_by("subject", "test").agg(pl.col("value").last()).collect())
    pre_wide = pre.pivot(on="test", index="subject", values="value") if pre.height else pl.DataFrame(schema={"subject": frame.schema["subject"]})
    htx = haematotox.hematotox(subjects.select("subject").join(pre_wide, on="subject", how="left")).select(
        "subject", "hematotox", "hematotox_min", "hematotox_max", "hematotox_risk")
    cart = rows_of("CART", "subject", "day", "value", "lower")
    kin = kinetics.cart_kinetics(cart) if present(cart, "CART") else pl.DataFrame(schema={"subject": frame.schema["subject"]})
    bcell = rows_of("BCELL", "subject", "day", "value")
    bc = kinetics.bcell_aplasia(bcell) if present(bcell, "BCELL") else pl.DataFrame(schema={"subject": frame.schema["subject"]})
    worst = (lab_grades.group_by("subject", "term").agg(pl.col("grade").max())
             .group_by("subject").agg(pl.col("grade").max().alias("ctcae_lab_worst_grade")))
    out = subjects
    for part in (sledai_summary, crs, icaht, htx, kin, bc, worst):
        out = out.join(part, on="subject", how="left")
    return out.sort("subject")


MAGIC_COLUMNS = ("magic_skin_stage", "magic_liver_stage", "magic_upper_gi_stage", "magic_lower_gi_stage", "magic_grade")


def _magic(daily: pl.DataFrame) -> pl.DataFrame:
    """MAGIC organ stages and overall grade per subject and day (null where no GvHD input was
    recorded that day); columns ``MAGIC_COLUMNS``, no rows when the frame has no GvHD inputs."""
    present = [c for c in GVHD_TESTS if c in daily.columns]
    if not present:
        return pl.DataFrame(schema={"subject": daily.schema["subject"], "day": pl.Float64,
                                    **{c: pl.Int8 for c in MAGIC_COLUMNS}})
    names = {"GVHD_SKIN": "rash_bsa_pct", "GVHD_BULLAE": "bullae", "GVHD_UGI": "persistent_nausea", "STOOL": "stool_ml",
             "STOOL_N": "stool_episodes", "GVHD_LGI4": "severe_pain_or_bloody", "BILI": "bilirubin_umol_l",
             "WEIGHT": "weight_kg"}
    inputs = [c for c in (*present, "BILI", "WEIGHT") if c in daily.columns]
    staged = magic_stages(daily.select("subject", "day", *inputs).rename({c: names[c] for c in inputs}))
    recorded = pl.any_horizontal([pl.col(names[c]).is_not_null() for c in present])
    organs = {"skin": "magic_skin_stage", "liver": "magic_liver_stage", "upper_gi": "magic_upper_gi_stage",
              "lower_gi": "magic_lower_gi_stage", "magic_grade": "magic_grade"}
    return staged.select("subject", "day", *[pl.when(recorded).then(pl.col(o)).otherwise(None).cast(pl.Int8).alias(c)
                                             for o, c in organs.items()])


def _adverse_events(daily: pl.DataFrame, lab_grades: pl.DataFrame, patients: pl.DataFrame,
                    gvhd: pl.DataFrame) -> pl.DataFrame:
    """Maximum grade per term and patient; grade null means never evaluable."""
    def summarise(frame: pl.DataFrame, term: str | pl.Expr, standard: str, grade: str) -> pl.DataFrame:
        # grouped by subject and a term column; a term given as text, and the standard, are the
        # same for every row and are added to the summary rather than grouped on
        by_term = not isinstance(term, str)
        data = frame.select("subject", "day", *([term.alias("term")] if by_term else []),
                            pl.col(grade).cast(pl.Int8).alias("grade"))
        # Day of the maximum: the earliest day with the maximum grade (no sort needed for a minimum).
        summary = data.group_by("subject", *(["term"] if by_term else [])).agg(
            pl.col("grade").max().alias("max_grade"),
            pl.col("day").filter(pl.col("grade") == pl.col("grade").max()).min().alias("day_of_max"),
            pl.col("day").filter(pl.col("grade") >= 1).min().alias("onset_day"),
            pl.col("grade").is_not_null().sum().alias("evaluable_assessments"))
        return summary.select("subject", pl.col("term") if by_term else pl.lit(term).alias("term"),
                              pl.lit(standard).alias("standard"), pl.exclude("subject", "term"))
    parts = [
        summarise(lab_grades, pl.col("term"), "CTCAE v5.0", "grade"),
        summarise(daily, "Cytokine release syndrome", "ASTCT 2019", "crs_grade"),
        summarise(daily, "Immune effector cell-associated neurotoxicity syndrome", "ASTCT 2019", "icans_grade"),
    ]
    if "icaht_early" in patients.columns:
        for column, term in (("icaht_early", "ICAHT early"), ("icaht_late", "ICAHT late")):
            parts.append(patients.select("subject", pl.lit(term).alias("term"), pl.lit("EHA/EBMT ICAHT 2023").alias("standard"),
                                         pl.col(column).cast(pl.Int8).alias("max_grade"), pl.lit(None, pl.Float64).alias("day_of_max"),
                                         pl.lit(None, pl.Float64).alias("onset_day"),
                                         pl.col(column).is_not_null().cast(pl.UInt32).alias("evaluable_assessments")))
    if any(c in daily.columns for c in GVHD_TESTS):
        staged = gvhd.filter(pl.any_horizontal([pl.col(c).is_not_null() for c in
                                                ("magic_skin_stage", "magic_upper_gi_stage", "magic_lower_gi_stage")]))
        parts.append(summarise(staged, "Acute graft-versus-host disease", "MAGIC 2016", "magic_grade"))
    arms = patients.select("subject", "arm")
    return pl.concat(parts, how="vertical_relaxed").join(arms, on="subject", how="left").sort("subject", "standard", "term")


def _flags(obs: Observations, missing_base: pl.DataFrame, visits: pl.DataFrame) -> pl.DataFrame:
    parts = [obs.flags, _sledai_not_evaluable_flags(visits, obs.source)]
    if missing_base.height:
        parts.append(make_flags(missing_base, "value", pl.col("baseline_flag")))
    defaults = (obs.frame.lazy().select("test", "limit_source").filter(pl.col("limit_source") == "default")
                .group_by("test", maintain_order=True).agg(pl.len().alias("n")).collect())  # tests in first-row order, every time
    if defaults.height:
        parts.append(defaults.select(
            pl.lit(obs.source).alias("file"), pl.lit(None, pl.Int64).alias("row"), pl.lit("lower/upper").alias("column"),
            pl.lit(None, pl.String).alias("subject"), pl.col("test"), pl.lit(None, pl.Float64).alias("day"),
            pl.concat_str([pl.lit("reference limits missing in "), pl.col("n").cast(pl.String),
                           pl.lit(" rows: default limits from rules/reference_limits.csv used")]).alias("problem")))
    return pl.concat([p.select(list(FLAG_SCHEMA)).cast(FLAG_SCHEMA) for p in parts])
