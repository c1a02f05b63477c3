"""SLEDAI-2K, SELENA-SLEDAI and hybrid SLEDAI from clinical descriptors and laboratory values.

Pipeline (all columnar, no per-row Python):
1. descriptor events: explicit ``SD_*`` rows and lab-derived descriptors (``sledai_lab_rules.csv``)
   with the CAR-T attribution rules (``attribution.toml``) and a row's ``cause`` applied;
2. look-back window: a descriptor scores at a visit if it was present (due to SLE) on the visit
   day or in the preceding ``window_days``; it is known absent if it was evaluated in that window
   and never present; otherwise it is not evaluable;
3. totals with lower/upper bounds when descriptors are not evaluable.
"""

from __future__ import annotations

from collections import Counter
from functools import cache

import polars as pl

from cartwin.clinical._frames import in_subject_day_order, pivot_first, sort_by_subject_day
from cartwin.clinical.ruleset import settings, table

INSTRUMENTS = ("sledai2k", "selena", "hybrid")
_OPERATORS = {"<": pl.Expr.__lt__, "<=": pl.Expr.__le__, ">": pl.Expr.__gt__, ">=": pl.Expr.__ge__}


@cache
def descriptors() -> pl.DataFrame:
    return table("sledai_descriptors", numeric=("item", "weight"), boolean=("serology", "lldas_major"))


@cache
def lab_rules() -> pl.DataFrame:
    return table("sledai_lab_rules", numeric=("threshold",))


def descriptor_codes() -> list[str]:
    return descriptors()["code"].to_list()


def input_tests() -> frozenset[str]:
    """Every test code SLEDAI reads: the descriptor codes and the laboratory tests of its rules."""
    return frozenset(descriptor_codes()) | frozenset(lab_rules()["test"].to_list())


def missing_inputs(kept, offered) -> tuple[list[str], bool]:
    """The SLEDAI inputs among ``offered`` test codes that ``kept`` leaves out, sorted, and whether
    any of them feeds a clinical (not serological) descriptor, so that the clinical SLEDAI of
    DORIS is a range too."""
    missing = sorted((input_tests() & set(offered)) - set(kept))
    serology = set(descriptors().filter(pl.col("serology"))["code"].to_list())
    serology |= set(lab_rules().filter(pl.col("descriptor").is_in(list(serology)))["test"].to_list())
    return missing, any(code not in serology for code in missing)


def weights() -> dict[str, int]:
    return {r["code"]: int(r["weight"]) for r in descriptors().iter_rows(named=True)}


def sledai_input_tests() -> list[str]:
    return sorted(set(descriptor_codes()) | set(lab_rules()["test"].to_list()))


def organic_brain_syndrome(clouded_consciousness: bool, additional_features: int) -> bool:
    """SLEDAI-2K item 3: clouded consciousness plus the minimum number of listed features."""
    minimum = settings("sledai")["organic_brain_syndrome"]["min_additional_features"]
    return bool(clouded_consciousness) and additional_features >= minimum


def activity_category(total: pl.Expr, scheme: str | None = None) -> pl.Expr:
    """Activity band label for a SLEDAI total (scheme from sledai.toml [activity])."""
    config = settings("sledai")["activity"]
    chosen = config[scheme or config["default_scheme"]]
    expr = pl.when(total.is_null()).then(pl.lit(None, pl.String))
    for lower, label in reversed(list(zip(chosen["lower_bounds"], chosen["labels"]))):
        expr = expr.when(total >= lower).then(pl.lit(label))
    return expr.otherwise(None)


def _instrument_variant(code: str, instrument: str) -> str:
    """Column name of a descriptor as scored by an instrument (only arthritis and proteinuria differ)."""
    if code == "SD_ARTH" and instrument in ("selena", "hybrid"):
        return "SD_ARTH__selena"
    if code == "SD_PROT" and instrument == "selena":
        return "SD_PROT__selena"
    return code


def _attribution(use_icans: bool) -> pl.Expr:
    """Expression giving the non-SLE cause a row's event is attributed to (null = SLE)."""
    rules = settings("attribution")
    expr = pl.when(pl.col("cause") == "sle").then(pl.lit(None, pl.String))
    expr = expr.when(pl.col("cause").is_not_null()).then(pl.col("cause"))
    cyto, fever, neuro = rules["cytopenia"], rules["fever"], rules["neurological"]

    def attributed(rule) -> pl.Expr:
        inside = pl.col("day").is_between(rule["first_day"], rule["last_day"])
        if rule.get("continue_episode", False):
            # an episode that began inside the window keeps its cause until a visit without it
            # (``episode_begins_after``: the last day whose assessment predates the therapy)
            start = pl.col("episode_start")
            begun = (start.is_between(rule["first_day"], rule["last_day"]) if "episode_begins_after" not in rule
                     else (start > rule["episode_begins_after"]) & (start <= rule["last_day"]))
            inside = inside | begun
        return inside

    code = pl.col("base_code")
    expr = expr.when(code.is_in(cyto["descriptors"]) & attributed(cyto)).then(pl.lit("lymphodepletion/CAR-T"))
    expr = expr.when(code.is_in(fever["descriptors"]) & attributed(fever)).then(pl.lit("crs"))
    if use_icans:
        expr = expr.when(code.is_in(neuro["descriptors"]) & attributed(neuro)
                         & (pl.col("icans_grade").fill_null(0) >= 1)).then(pl.lit("icans"))
    return expr.otherwise(None)


def _with_episode_start(events: pl.DataFrame) -> pl.DataFrame:
    """``events`` with ``episode_start``: on a row of a descriptor whose attribution rule continues
    episodes (``continue_episode``), the first day of the unbroken run of visits with that
    descriptor present that the row belongs to (a visit without it ends the run); null on other
    rows and where the descriptor is absent. Explicit and lab-derived rows of a day count together;
    a day whose rows were not evaluable (no value) neither ends nor starts an episode."""
    rules = settings("attribution")
    codes = [c for rule in rules.values() if isinstance(rule, dict) and rule.get("continue_episode", False)
             for c in rule["descriptors"]]
    tracked = pl.col("base_code").is_in(codes)
    days = (events.filter(tracked & pl.col("raw").is_not_null()).group_by("subject", "base_code", "day")
            .agg(pl.col("raw").any().alias("present")).sort("subject", "base_code", "day"))
    starts = pl.col("present") & ~pl.col("present").shift(1).over("subject", "base_code").fill_null(False)
    days = days.with_columns(
        pl.when(starts).then(pl.col("day")).otherwise(None).forward_fill().over("subject", "base_code").alias("start"))
    days = days.select("subject", "base_code", "day", pl.when(pl.col("present")).then(pl.col("start")).alias("episode_start"))
    # only the tracked rows look their day up (one row per subject, descriptor and day above)
    positions = events.select(pl.arg_where(tracked)).to_series()
    start = pl.repeat(None, events.height, dtype=days.schema["episode_start"], eager=True)
    if positions.len():
        start = start.scatter(positions, events[positions].select("subject", "base_code", "day").join(
            days, on=["subject", "base_code", "day"], how="left", maintain_order="left")["episode_start"])
    return events.with_columns(start.alias("episode_start"))


def attributed_days(events: pl.DataFrame, code: str) -> pl.DataFrame:
    """(subject, day, ``attributed``): whether descriptor ``code`` was attributed to another cause
    than lupus on that day (by the attribution rules or a row's ``cause``), from
    :func:`descriptor_events`' output, so that other instruments (the SFI's platelet criterion)
    apply the same attribution as SLEDAI."""
    return (events.filter(pl.col("code") == code).group_by("subject", "day")
            .agg(pl.col("attributed_to").is_not_null().any().alias("attributed")))


def _base_code(code: pl.Expr) -> pl.Expr:
    """Descriptor code without its instrument variant suffix (``SD_ARTH__selena`` -> ``SD_ARTH``);
    descriptor codes carry no suffix, so the text split is only needed if one ever does."""
    return code.str.split("__").list.first() if any("__" in c for c in descriptor_codes()) else code


def _with_icans_grade(events: pl.DataFrame, icans: pl.DataFrame) -> pl.DataFrame:
    """``events`` left-joined with the day's ``icans_grade``, which only the neurological attribution
    rule reads: only rows of its descriptors inside its window are looked up, the others get null
    (the rule treats a missing grade as 0). Falls back to the full join when ICANS days repeat."""
    neuro = settings("attribution")["neurological"]
    needed = pl.col("base_code").is_in(neuro["descriptors"]) & pl.col("day").is_between(neuro["first_day"], neuro["last_day"])
    right = icans.select("subject", "day", "icans_grade")
    if not in_subject_day_order(right) and right.select(pl.struct("subject", "day").is_duplicated().any()).item():
        return events.join(right, on=["subject", "day"], how="left")
    positions = events.select(pl.arg_where(needed)).to_series()
    grade = pl.repeat(None, events.height, dtype=right.schema["icans_grade"], eager=True).alias("icans_grade")
    if positions.len():
        looked_up = events[positions].select("subject", "day").join(right, on=["subject", "day"], how="left",
                                                                    maintain_order="left")["icans_grade"]
        grade = grade.scatter(positions, looked_up)
    return events.with_columns(grade)


def descriptor_events(obs: pl.DataFrame, icans: pl.DataFrame | None = None) -> pl.DataFrame:
    """One row per subject, day and descriptor column: ``present`` (as SLE activity) true/false/null.

    ``obs`` is the canonical observation frame (one row per subject, day and test); ``icans`` an
    optional (subject, day, icans_grade) frame used by the neurological attribution rule.
    """
    base_cols = ["subject", "day", "test", "value", "lower", "upper", "cause"]
    obs = obs.select([c for c in base_cols if c in obs.columns])
    if "cause" not in obs.columns:
        obs = obs.with_columns(pl.lit(None, pl.String).alias("cause"))
    explicit = obs.filter(pl.col("test").is_in(descriptor_codes())).select(
        "subject", "day", pl.col("test").alias("code"), (pl.col("value") == 1).alias("raw"), "cause",
        pl.lit(0).alias("priority"), _base_code(pl.col("test")).alias("base_code"))
    explicit_variants = [
        explicit.filter(pl.col("code") == "SD_ARTH").with_columns(pl.lit("SD_ARTH__selena").alias("code")),
        explicit.filter(pl.col("code") == "SD_PROT").with_columns(pl.lit("SD_PROT__selena").alias("code")),
    ]

    rules = lab_rules()
    derived = []
    # the rows of the rules' tests first (one pass over the frame), then each rule's among them
    lab = obs.filter(pl.col("test").is_in(rules["test"].unique().implode()))
    for rule in rules.iter_rows(named=True):
        rows = lab.filter(pl.col("test") == rule["test"])
        if rows.height == 0:
            continue
        reference = {"absolute": pl.lit(1.0), "lower": pl.col("lower"), "upper": pl.col("upper")}[rule["reference"]]
        present = _OPERATORS[rule["operator"]](pl.col("value"), reference * rule["threshold"])
        targets = {"all": [rule["descriptor"]] + ([f"{rule['descriptor']}__selena"] if rule["descriptor"] in ("SD_ARTH", "SD_PROT") else []),
                   "sledai2k": [rule["descriptor"]], "selena": [f"{rule['descriptor']}__selena"], "hybrid": []}[rule["instrument"]]
        for code in targets:
            derived.append(rows.select("subject", "day", pl.lit(code).alias("code"), present.alias("raw"), "cause",
                                       pl.lit(1).alias("priority"), pl.lit(code.split("__")[0]).alias("base_code")))
    selena_rule = settings("sledai")["selena"]
    uprot = obs.filter((pl.col("test") == "UPROT") & pl.col("value").is_not_null()).sort("subject", "day")
    if uprot.height and selena_rule["proteinuria_rule"] == "new_or_rise":
        previous = pl.col("value").shift(1).over("subject")
        threshold = lab_rules().filter(pl.col("descriptor") == "SD_PROT")["threshold"][0]
        rise = selena_rule["proteinuria_rise_g_per_24h"]
        # A patient's first measurement has no previous one to call it new against: it does not
        # score (sledai.toml [selena]); a site that knows it is new records SD_PROT explicitly.
        present = (pl.col("value") > threshold) & previous.is_not_null() & (
            (previous <= threshold) | ((pl.col("value") - previous) > rise))
        derived = [d for d in derived if not (d.height and d["code"][0] == "SD_PROT__selena")]
        derived.append(uprot.select("subject", "day", pl.lit("SD_PROT__selena").alias("code"), present.alias("raw"),
                                    "cause", pl.lit(1).alias("priority"), pl.lit("SD_PROT").alias("base_code")))

    events = pl.concat([explicit, *explicit_variants, *derived], how="vertical_relaxed") if (explicit.height or derived) else explicit
    use_icans = icans is not None and icans.height > 0
    if use_icans:
        events = _with_icans_grade(events, icans)
    events = _with_episode_start(events)
    events = events.with_columns(_attribution(use_icans).alias("attributed_to"))
    events = events.with_columns(
        pl.when(pl.col("attributed_to").is_not_null() & pl.col("raw").is_not_null()).then(pl.lit(False))
        .otherwise(pl.col("raw")).alias("present"),
        (pl.col("attributed_to").is_not_null() & pl.col("raw").fill_null(False)).alias("excluded"),
    )
    # Explicit descriptor rows are the investigator's judgement and win over lab derivation.
    # Explicit rows are unique per (subject, day, code) after validation; only lab-derived rows
    # can repeat a key (C3 and C4 both feed low complement), so only they are aggregated.
    keys = ["subject", "day", "code"]
    explicit_events = events.filter(pl.col("priority") == 0)
    derived_events = events.filter(pl.col("priority") == 1)
    # Only explicit rows of a code that is also lab-derived can win over a derived row.
    derived_codes = derived_events["code"].unique().to_list()
    winners = explicit_events.filter(pl.col("code").is_in(derived_codes)).select(keys)
    if winners.height:
        derived_events = derived_events.join(winners, on=keys, how="anti")
    columns = keys + ["present", "excluded", "attributed_to"]
    # A key repeats only for a code with rows from more than one rule: the frame holds one row per
    # subject, day and test, so one rule's rows (one test's) give a code one row per subject and
    # day, which the aggregation below would leave as it is. Only the other codes are aggregated.
    rules_per_code = Counter(part["code"][0] for part in derived if part.height)
    repeated = [code for code, n in rules_per_code.items() if n > 1]
    single = derived_events.filter(~pl.col("code").is_in(repeated)) if repeated else derived_events
    aggregated = derived_events.filter(pl.col("code").is_in(repeated)).group_by(keys).agg(
        pl.col("present").any(ignore_nulls=False).alias("present"),
        pl.col("excluded").any().alias("excluded"),
        pl.col("attributed_to").drop_nulls().first().alias("attributed_to"),
    )
    return pl.concat([explicit_events.select(columns), single.select(columns), aggregated.select(columns)])


def score_visits(events: pl.DataFrame, visits: pl.DataFrame, window_days: float | None = None,
                 activity_scheme: str | None = None) -> pl.DataFrame:
    """Score SLEDAI at each (subject, day) of ``visits`` from ``descriptor_events`` output."""
    config = settings("sledai")
    window = float(window_days if window_days is not None else config["window"]["default_days"])
    if window not in [float(w) for w in config["window"]["allowed_days"]]:
        raise ValueError(f"SLEDAI window {window:g} days is not one of {config['window']['allowed_days']}")
    codes = descriptor_codes() + ["SD_ARTH__selena", "SD_PROT__selena"]
    visits = visits.select("subject", "day")
    if not in_subject_day_order(visits):  # rows in strictly ascending order are distinct already
        visits = visits.unique()
    if events.height:
        wide = pivot_first(events, on="code", values="present")
        excluded = events.filter(pl.col("excluded")).group_by("subject", "day").agg(
            pl.concat_str([pl.col("code"), pl.lit(" ("), pl.col("attributed_to"), pl.lit(")")]).sort().str.join("; ")
            .alias("sledai_excluded"))
    else:
        wide = pl.DataFrame(schema={"subject": visits.schema["subject"], "day": pl.Float64})
        excluded = pl.DataFrame(schema={"subject": visits.schema["subject"], "day": pl.Float64, "sledai_excluded": pl.String})
    for code in codes:
        if code not in wide.columns:
            wide = wide.with_columns(pl.lit(None, pl.Boolean).alias(code))
    keys = wide.select("subject", "day")
    # Usually every visit day has descriptor rows (pivot_first gives one row per subject and day):
    # the grid is then the pivot's own rows, and the visits all of them when as many (often the
    # very same rows, which needs no join to see)
    covered = keys.schema == visits.schema and (keys.equals(visits)
                                                or visits.join(keys, on=["subject", "day"], how="anti").height == 0)
    if covered:
        wide = sort_by_subject_day(wide)
    else:
        grid = pl.concat([keys, visits], how="vertical_relaxed").unique()
        wide = grid.join(wide, on=["subject", "day"], how="left").sort("subject", "day")
    states = []
    # A descriptor never observed (no row of any subject, e.g. no test feeds it) is unknown at every
    # visit: null, as the window rule below gives for a column of nulls, without its window passes.
    never = {code for code, nulls in zip(codes, wide.select(pl.col(codes).null_count()).row(0))
             if nulls == wide.height}
    for code in codes:
        if code in never:
            states.append(pl.lit(None, pl.Boolean).alias(code))
            continue
        last_present = pl.when(pl.col(code)).then(pl.col("day")).otherwise(None).forward_fill().over("subject")
        last_seen = pl.when(pl.col(code).is_not_null()).then(pl.col("day")).otherwise(None).forward_fill().over("subject")
        state = (pl.when((pl.col("day") - last_present) <= window).then(pl.lit(True))
                 .when((pl.col("day") - last_seen) <= window).then(pl.lit(False))
                 .otherwise(pl.lit(None, pl.Boolean)))
        states.append(state.alias(code))
    scored = wide.select("subject", "day", *states)
    if not (covered and visits.height == wide.height):
        scored = scored.join(visits, on=["subject", "day"], how="semi")
    w = weights()
    serology = set(descriptors().filter(pl.col("serology"))["code"].to_list())
    out = []
    for instrument in INSTRUMENTS:
        cols = {code: _instrument_variant(code, instrument) for code in descriptor_codes()}
        points = [pl.col(col).cast(pl.Int32) * w[code] for code, col in cols.items()]
        clinical_points = [p for (code, _), p in zip(cols.items(), points) if code not in serology]
        out += [
            pl.sum_horizontal([p.fill_null(0) for p in points]).alias(f"{instrument}_min"),
            pl.sum_horizontal([p.fill_null(w[c]) for c, p in zip(cols, points)]).alias(f"{instrument}_max"),
            pl.when(pl.any_horizontal([pl.col(c).is_null() for c in cols.values()])).then(None)
            .otherwise(pl.sum_horizontal([p.fill_null(0) for p in points])).alias(instrument),
            pl.when(pl.any_horizontal([pl.col(cols[c]).is_null() for c in cols if c not in serology])).then(None)
            .otherwise(pl.sum_horizontal([p.fill_null(0) for p in clinical_points])).alias(f"c{instrument}"),
        ]
    # one lazy query: each descriptor's points, shared by the instruments' totals, computed once
    result = scored.lazy().with_columns(out).with_columns(
        activity_category(pl.col("sledai2k"), activity_scheme).alias("sledai2k_activity"),
        pl.lit(window).alias("sledai_window_days"),
    )
    missing = [pl.when(pl.col(c).is_null()).then(pl.lit(c)) for c in descriptor_codes()]
    result = result.with_columns(
        pl.concat_list(missing).list.drop_nulls().list.join(", ").alias("sledai_not_evaluable")).collect()
    result = result.join(excluded, on=["subject", "day"], how="left")
    rename = {c: f"d_{c}" for c in codes}
    return result.rename(rename)
