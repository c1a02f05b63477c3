"""The statistics a validation target can ask for, each a function of scored arms.

Everything clinical comes from the clinical layer as it is: SLEDAI-2K, SELENA-SLEDAI and PGA
per visit, SRI-4, DORIS and the SELENA flare index per visit, ASTCT CRS and ICANS grades, CTCAE v5
lab grades, CAR-T kinetics and B-cell aplasia (``cartwin.clinical``). Per-patient endpoint values
(the trial remission read-out's remission day, serological normalisation, B-cell aplasia duration
and time to B-cell return with their censoring) come from the endpoints table
(``cartwin.endpoints.compute``), declared there once with their standard and censoring rule. This
module only counts and summarises them, with an interval from ``cartwin.endpoints.stats``: exact
Clopper-Pearson for proportions, Newcombe for differences, Welch on the log scale for
geometric-mean ratios, the distribution-free order-statistic interval for medians, Kaplan-Meier
with Brookmeyer-Crowley limits for censored times; and a seeded bootstrap for ratios of means or
medians and for the between-patient SD of B-cell return. :func:`score_arms` is the one place that calls the clinical layer and the endpoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import polars as pl

from cartwin.endpoints import stats

BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 20260101
FLARES = ("mild/moderate", "severe")


class NotEvaluable(Exception):
    """The statistic cannot be computed from this run (e.g. the model lacks an observable)."""


@dataclass(frozen=True)
class Estimate:
    value: float
    lower: float
    upper: float
    n: int
    detail: str = ""


@dataclass
class ArmData:
    """One arm's scored tables (clinical layer output) and its validated observations."""

    arm: str
    patients: pl.DataFrame
    visits: pl.DataFrame
    lab_grades: pl.DataFrame
    adverse_events: pl.DataFrame
    observations: pl.DataFrame
    dose_cells_per_kg: float | None = None
    n_failed: int = 0
    extra: dict = field(default_factory=dict)


def score_arms(observations: pl.DataFrame, source: str = "simulation") -> dict[str, ArmData]:
    """Score a simulation's observation table with the clinical layer; split the tables by arm."""
    from cartwin import endpoints
    from cartwin.clinical import observations_from_frame, score_observations

    obs = observations_from_frame(observations, source)
    frame = obs.frame
    tables = score_observations(obs)
    visits = tables["visits"]
    values = endpoints.compute(tables, frame)
    # an endpoint's value replaces a clinical column of the same name (e.g. bcell_aplasia_days:
    # the endpoint's time, censored patients included, with its event flag beside it)
    clinical = tables["patients"].drop([c for c in values.columns if c not in ("subject", "arm")], strict=False)
    patients = clinical.join(values.drop("arm"), on="subject", how="left")
    arm_of = patients.select("subject", "arm")
    out = {}
    for arm in patients["arm"].unique(maintain_order=True).to_list():
        subjects = arm_of.filter(pl.col("arm") == arm)["subject"].implode()
        pick = lambda t: t.filter(pl.col("subject").is_in(subjects))  # noqa: E731
        out[arm] = ArmData(arm, pick(patients), pick(visits), pick(tables["lab_grades"]),
                           pick(tables["adverse_events"]), pick(frame))
    return out


# --- interval helpers -------------------------------------------------------------------------
def proportion(k: int, n: int, detail: str = "") -> Estimate:
    if n == 0:
        raise NotEvaluable("no evaluable patients")
    iv = stats.clopper_pearson(int(k), int(n))
    return Estimate(iv.estimate, iv.lower, iv.upper, int(n), detail or f"{int(k)}/{int(n)}")


def median_with_interval(values: np.ndarray, detail: str = "") -> Estimate:
    """Median with the distribution-free 95% interval from order statistics
    (``endpoints.stats.median_interval``). ``inf`` stands for a value that never came (e.g. no
    CAR-T decline): larger than every finite value."""
    x = np.asarray(values, float)
    n = x.size
    if n == 0:
        raise NotEvaluable("no evaluable patients")
    iv = stats.median_interval(x)
    infinite = int(np.isinf(x).sum())
    note = f"n = {n}" + (f", {infinite} never" if infinite else "")
    return Estimate(iv.estimate, iv.lower, iv.upper, n, detail or note)


def km_median(time: np.ndarray, event: np.ndarray, detail: str = "") -> Estimate:
    """Kaplan-Meier median of a censored time with its Brookmeyer-Crowley interval
    (``endpoints.stats``); ``inf`` where the median (or its upper limit) is not reached."""
    time, event = np.asarray(time, float), np.asarray(event, bool)
    if time.size == 0:
        raise NotEvaluable("no evaluable patients")
    km = stats.kaplan_meier(time, event)
    iv = km.median()
    nan_inf = lambda v: math.inf if math.isnan(v) else v  # noqa: E731
    censored = int((~event).sum())
    note = f"n = {time.size}" + (f", {censored} censored" if censored else "") + ", Kaplan-Meier"
    return Estimate(nan_inf(iv.estimate), nan_inf(iv.lower), nan_inf(iv.upper), int(time.size), detail or note)


def _bootstrap(fn: Callable[[np.random.Generator], float]) -> tuple[float, float]:
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    draws = np.array([fn(rng) for _ in range(BOOTSTRAP_SAMPLES)], float)
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return math.nan, math.nan
    return float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))


# --- per-patient read-outs (one value per patient, from the clinical tables) ------------------
def _visit_at(arm: ArmData, day: float, column: str, window: float = 14.0) -> pl.DataFrame:
    """Each patient's value of a visit column at the SLEDAI visit nearest ``day`` (within +/-
    ``window`` days), null where not evaluable."""
    v = arm.visits.filter(pl.col("sledai_visit") & ((pl.col("day") - day).abs() <= window))
    if v.height == 0:
        raise NotEvaluable(f"no SLEDAI visit within {window:g} days of day {day:g}")
    return (v.with_columns((pl.col("day") - day).abs().alias("_distance"))
            .sort("subject", "_distance", "day").group_by("subject", maintain_order=True).first()
            .select("subject", column))


def _require(arm: ArmData, column: str) -> None:
    if column not in arm.patients.columns:
        raise NotEvaluable(f"the clinical layer gave no {column!r} (the model lacks its observable)")


def _aplastic(arm: ArmData) -> pl.DataFrame:
    _require(arm, "bcell_aplasia")
    aplastic = arm.patients.filter(pl.col("bcell_aplasia").fill_null(False))
    if aplastic.height == 0:
        counted = arm.patients.filter(pl.col("bcell_aplasia").is_not_null()).height
        raise NotEvaluable(f"no patient reached B-cell aplasia (0 of {counted} with a B-cell count after infusion)")
    return aplastic


def _time_to_event(arm: ArmData, key: str) -> tuple[np.ndarray, np.ndarray]:
    """A time-to-event endpoint's per-patient times and event flags (``endpoints.compute``), for
    the patients in its population."""
    _require(arm, key)
    known = arm.patients.sort("subject").filter(pl.col(key).is_not_null())
    return known[key].cast(pl.Float64).to_numpy(), known[f"{key}_event"].cast(pl.Boolean).to_numpy()


def _lab_terms(term) -> list[str]:
    return [term] if isinstance(term, str) else list(term)


# --- statistics on one arm ----------------------------------------------------------------------
def crs_rate(arm: ArmData, min_grade: int = 1) -> Estimate:
    """Patients whose worst ASTCT CRS grade reaches ``min_grade``."""
    x = arm.patients["crs_max"].drop_nulls()
    return proportion(int((x >= min_grade).sum()), x.len())


def icans_rate(arm: ArmData, min_grade: int = 1) -> Estimate:
    """Patients whose worst ASTCT ICANS grade reaches ``min_grade``."""
    x = arm.patients["icans_max"].drop_nulls()
    return proportion(int((x >= min_grade).sum()), x.len())


def crs_onset_after_day(arm: ArmData, day: float) -> Estimate:
    """Patients whose CRS begins after ``day`` (first day of grade >= 1), among all graded."""
    p = arm.patients.filter(pl.col("crs_max").is_not_null())
    k = p.filter(pl.col("crs_onset_day") > day).height
    return proportion(k, p.height)


def lab_grade_rate(arm: ArmData, term, min_grade: int, first_day: float = -math.inf,
                   last_day: float = math.inf) -> Estimate:
    """Patients whose worst CTCAE grade of ``term`` (one term or several) within the days given
    reaches ``min_grade``, among patients graded for it."""
    g = arm.lab_grades.filter(pl.col("term").is_in(_lab_terms(term)) & pl.col("day").is_between(first_day, last_day)
                              & pl.col("grade").is_not_null())
    if g.height == 0:
        raise NotEvaluable(f"no graded {term} rows")
    worst = g.group_by("subject").agg(pl.col("grade").max())
    return proportion(worst.filter(pl.col("grade") >= min_grade).height, worst.height)


def lab_grade_at_day(arm: ArmData, term, day: float, min_grade: int | None = None,
                     max_grade: int | None = None) -> Estimate:
    """Patients whose CTCAE grade of ``term`` on ``day`` is at least ``min_grade`` (or at most
    ``max_grade``)."""
    if (min_grade is None) == (max_grade is None):
        raise ValueError("give exactly one of min_grade and max_grade")
    g = arm.lab_grades.filter(pl.col("term").is_in(_lab_terms(term)) & (pl.col("day") == day)
                              & pl.col("grade").is_not_null())
    if g.height == 0:
        raise NotEvaluable(f"no graded {term} rows on day {day:g}")
    worst = g.group_by("subject").agg(pl.col("grade").max())
    hit = pl.col("grade") >= min_grade if min_grade is not None else pl.col("grade") <= max_grade
    return proportion(worst.filter(hit).height, worst.height)


def remission_by_day(arm: ArmData, day: float) -> Estimate:
    """SELENA-SLEDAI 0 and PGA < 1 at a visit by ``day`` (the report's trial read-out)."""
    p = arm.patients.filter(pl.col("selena_evaluable_visits") > 0)
    return proportion(p.filter(pl.col("remission_day") <= day).height, p.height)


def _visit_flag(arm: ArmData, day: float, column: str) -> Estimate:
    v = _visit_at(arm, day, column).drop_nulls(column)
    return proportion(int(v[column].cast(pl.Int64).sum()), v.height)


def doris_at_day(arm: ArmData, day: float) -> Estimate:
    """DORIS remission at the SLEDAI visit nearest ``day``, among patients evaluable then."""
    return _visit_flag(arm, day, "doris_remission")


def sri4_at_day(arm: ArmData, day: float) -> Estimate:
    """SRI-4 response at the SLEDAI visit nearest ``day``, among patients evaluable then."""
    return _visit_flag(arm, day, "sri4")


def sledai2k_zero_at_day(arm: ArmData, day: float) -> Estimate:
    """SLEDAI-2K of 0 at the visit nearest ``day``, among patients with a SLEDAI-2K then."""
    v = _visit_at(arm, day, "sledai2k").drop_nulls("sledai2k")
    return proportion(v.filter(pl.col("sledai2k") == 0).height, v.height)


def sledai2k_median_at_day(arm: ArmData, day: float) -> Estimate:
    """Median SLEDAI-2K at the visit nearest ``day``."""
    v = _visit_at(arm, day, "sledai2k").drop_nulls("sledai2k")
    return median_with_interval(v["sledai2k"].cast(pl.Float64).to_numpy())


def mean_ratio_to_baseline(arm: ArmData, column: str, day: float) -> Estimate:
    """Mean of a visit score at ``day`` over its mean at baseline (last visit on or before day 0),
    in patients with both; bootstrap interval over patients."""
    base = (arm.visits.filter(pl.col("sledai_visit") & (pl.col("day") <= 0)).sort("day")
            .group_by("subject").agg(pl.col(column).drop_nulls().last().alias("_base")))
    both = _visit_at(arm, day, column).join(base, on="subject").drop_nulls().sort("subject")  # a fixed order for the bootstrap
    if both.height == 0:
        raise NotEvaluable(f"no patient with {column} at baseline and day {day:g}")
    now, before = both[column].cast(pl.Float64).to_numpy(), both["_base"].cast(pl.Float64).to_numpy()
    if before.mean() == 0:
        raise NotEvaluable(f"mean {column} at baseline is 0")

    def draw(rng):
        i = rng.integers(0, now.size, now.size)
        return now[i].mean() / before[i].mean() if before[i].mean() > 0 else math.nan
    lo, hi = _bootstrap(draw)
    return Estimate(float(now.mean() / before.mean()), lo, hi, int(now.size),
                    f"mean {before.mean():.1f} -> {now.mean():.1f}, n = {now.size}")


def flare_after_remission_by_day(arm: ArmData, day: float) -> Estimate:
    """Among patients in remission (SELENA-SLEDAI 0, PGA < 1) by ``day``, those with a SELENA
    flare (mild/moderate or severe, clinical layer) at a later visit up to ``day``."""
    remitters = arm.patients.filter(pl.col("remission_day") <= day).select("subject", "remission_day")
    flares = (arm.visits.join(remitters, on="subject")
              .filter((pl.col("day") > pl.col("remission_day")) & (pl.col("day") <= day)
                      & pl.col("sfi_flare").is_in(FLARES))
              .select("subject").unique())
    return proportion(flares.height, remitters.height)


def flare_between_days(arm: ArmData, first_day: float, last_day: float) -> Estimate:
    """Patients with a SELENA flare at a visit in (first_day, last_day], among those with a
    decidable flare index in that window."""
    v = arm.visits.filter(pl.col("day").is_between(first_day, last_day, closed="right")
                          & pl.col("sfi_flare").is_not_null())
    per = v.group_by("subject").agg(pl.col("sfi_flare").is_in(FLARES).any().alias("flare"))
    return proportion(int(per["flare"].sum()), per.height)


def serology_normalised_by_day(arm: ArmData, test: str, day: float) -> Estimate:
    """Normalisation (C3, C4) or seroconversion (anti-dsDNA) at the last measurement up to
    ``day``, among patients abnormal at baseline: the endpoints table's serology variable for
    ``test`` (clinical layer rule), computed on the observations up to ``day``."""
    from cartwin import endpoints

    table = endpoints.definitions()
    variables = {v.test: v for v in table.variables if v.statistic == "serology_normalisation"}
    if test not in variables:
        raise ValueError(f"serology test must be one of {sorted(variables)}")
    frame = arm.observations.filter(pl.col("day") <= day)
    if frame.filter(pl.col("test") == test).height == 0:
        raise NotEvaluable(f"no {test} observations")
    only = endpoints.Table(table.version, table.source, (variables[test],))
    patients = arm.patients.select("subject", *(["arm"] if "arm" in arm.patients.columns else []))
    if "arm" not in patients.columns:
        patients = patients.with_columns(pl.lit(arm.arm).alias("arm"))
    result = endpoints.compute({"patients": patients, "visits": arm.visits}, frame, only)[variables[test].name].drop_nulls()
    return proportion(int(result.sum()), result.len())


def median_of(arm: ArmData, column: str) -> Estimate:
    """Median of a per-patient column of the clinical layer (e.g. cart_tmax, cart_cmax)."""
    _require(arm, column)
    return median_with_interval(arm.patients[column].drop_nulls().cast(pl.Float64).to_numpy())


def bcell_aplasia_by_day(arm: ArmData, day: float) -> Estimate:
    """B-cell aplasia (below the clinical layer's threshold) reached by ``day``."""
    _require(arm, "bcell_aplasia_onset_day")
    p = arm.patients.filter(pl.col("bcell_last_measured_day").is_not_null())
    return proportion(p.filter(pl.col("bcell_aplasia_onset_day") <= day).height, p.height)


def bcell_aplasia_at_day(arm: ArmData, day: float) -> Estimate:
    """In aplasia on ``day``: aplasia began on or before it and B cells had not returned by it."""
    _require(arm, "bcell_aplasia_onset_day")
    p = arm.patients.filter(pl.col("bcell_last_measured_day") >= day)
    k = p.filter((pl.col("bcell_aplasia_onset_day") <= day)
                 & (pl.col("bcell_return_day").is_null() | (pl.col("bcell_return_day") > day))).height
    return proportion(k, p.height)


def bcell_return_by_day(arm: ArmData, day: float) -> Estimate:
    """B cells back by ``day``, among patients with aplasia."""
    a = _aplastic(arm)
    return proportion(a.filter(pl.col("bcell_return_day") <= day).height, a.height)


def bcell_return_median(arm: ArmData) -> Estimate:
    """Kaplan-Meier median day B cells return, among patients with aplasia (endpoint
    ``bcell_return_time``: not returned = censored at the last B-cell count)."""
    return km_median(*_time_to_event(arm, "bcell_return_time"))


def bcell_aplasia_duration_median(arm: ArmData) -> Estimate:
    """Kaplan-Meier median aplasia duration among patients with aplasia (endpoint
    ``bcell_aplasia_days``: still aplastic = censored at the last B-cell count)."""
    return km_median(*_time_to_event(arm, "bcell_aplasia_days"))


def bcell_return_sd(arm: ArmData) -> Estimate:
    """Between-patient standard deviation (n - 1) of the day of B-cell return after aplasia
    (endpoint ``bcell_return_time``), the spread that case series report as mean +/- SD, with a
    seeded bootstrap interval. A patient whose B cells had not come back is counted at the last
    B-cell count, a lower bound of the return day: the SD is then a lower bound too, so a tail
    past follow-up can only make it look narrower, never wider, than it is."""
    time, event = _time_to_event(arm, "bcell_return_time")
    if time.size < 2:
        raise NotEvaluable(f"{time.size} patient(s) with a B-cell return time; an SD needs 2")
    censored = int((~event).sum())

    def draw(rng):
        return float(np.std(time[rng.integers(0, time.size, time.size)], ddof=1))
    lo, hi = _bootstrap(draw)
    note = f"n = {time.size}" + (f", {censored} not returned (counted at the last count)" if censored else "")
    return Estimate(float(np.std(time, ddof=1)), lo, hi, int(time.size), note)


def cart_detectable_at_day(arm: ArmData, day: float) -> Estimate:
    """CAR-T still detectable on or after ``day`` (clinical layer's last detectable day), among
    patients measured through it."""
    _require(arm, "cart_last_detectable_day")
    p = arm.patients.filter(pl.col("cart_last_measured_day") >= day)
    return proportion(p.filter(pl.col("cart_last_detectable_day") >= day).height, p.height)


def cart_lost_by_day(arm: ArmData, day: float) -> Estimate:
    """CAR-T last detectable on or before ``day`` (or never), among patients measured past it."""
    _require(arm, "cart_last_detectable_day")
    p = arm.patients.filter(pl.col("cart_last_measured_day") > day)
    k = p.filter(pl.col("cart_last_detectable_day").is_null() | (pl.col("cart_last_detectable_day") <= day)).height
    return proportion(k, p.height)


def cart_decline_half_life(arm: ArmData, days_after_peak: float = 7.0) -> Estimate:
    """Apparent CAR-T half-life over the ``days_after_peak`` after each patient's peak (clinical
    layer's Cmax and Tmax): days x ln 2 / ln(Cmax / C(Tmax + days)); no decline = infinite."""
    _require(arm, "cart_tmax")
    peaks = arm.patients.select("subject", "cart_cmax", "cart_tmax").drop_nulls()
    later = (arm.observations.filter(pl.col("test") == "CART").select("subject", "day", "value")
             .join(peaks, on="subject").filter(pl.col("day") >= pl.col("cart_tmax") + days_after_peak)
             .sort("subject", "day").group_by("subject", maintain_order=True).first())
    if later.height == 0:
        raise NotEvaluable("no CAR-T measurement after the peak")
    ratio = (later["cart_cmax"] / later["value"]).to_numpy()
    elapsed = (later["day"] - later["cart_tmax"]).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        half = np.where(ratio > 1, elapsed * math.log(2) / np.log(ratio), math.inf)
    return median_with_interval(half)


def median_ratio_to_baseline(arm: ArmData, test: str, day: float) -> Estimate:
    """Median over patients of value(day) / value(last measurement on or before day 0)."""
    obs = arm.observations.filter((pl.col("test") == test) & pl.col("value").is_not_null())
    if obs.height == 0:
        raise NotEvaluable(f"test {test} is not among this model's observations")
    base = obs.filter(pl.col("day") <= 0).sort("day").group_by("subject").agg(pl.col("value").last().alias("_base"))
    now = obs.filter(pl.col("day") == day).select("subject", "value")
    both = now.join(base, on="subject").filter(pl.col("_base") > 0)
    if both.height == 0:
        raise NotEvaluable(f"no {test} at baseline and day {day:g}")
    return median_with_interval((both["value"] / both["_base"]).to_numpy())


ONE_ARM: dict[str, Callable[..., Estimate]] = {f.__name__: f for f in (
    crs_rate, icans_rate, crs_onset_after_day, lab_grade_rate, lab_grade_at_day, remission_by_day,
    doris_at_day, sri4_at_day, sledai2k_zero_at_day, sledai2k_median_at_day, mean_ratio_to_baseline,
    flare_after_remission_by_day, flare_between_days, serology_normalised_by_day, median_of,
    bcell_aplasia_by_day, bcell_aplasia_at_day, bcell_return_by_day, bcell_return_median,
    bcell_aplasia_duration_median, bcell_return_sd, cart_detectable_at_day, cart_lost_by_day,
    cart_decline_half_life, median_ratio_to_baseline)}

# Proportions: the statistics whose estimate is a k/n (usable in proportion_difference).
PROPORTIONS = frozenset(name for name in ONE_ARM if name not in (
    "sledai2k_median_at_day", "mean_ratio_to_baseline", "median_of", "bcell_return_median",
    "bcell_aplasia_duration_median", "bcell_return_sd", "cart_decline_half_life", "median_ratio_to_baseline"))
MEDIANS = frozenset(("median_of", "bcell_return_median", "bcell_aplasia_duration_median",
                     "cart_decline_half_life", "median_ratio_to_baseline", "sledai2k_median_at_day"))


# --- contrasts of two arms (the first against the second) -------------------------------------
def proportion_difference(first: ArmData, second: ArmData, of: str, **params) -> Estimate:
    """Difference of a proportion statistic ``of`` between two arms (first minus second), with
    Newcombe's hybrid score interval."""
    if of not in PROPORTIONS:
        raise ValueError(f"proportion_difference: {of!r} is not a proportion statistic")
    a, b = ONE_ARM[of](first, **params), ONE_ARM[of](second, **params)
    k1, k0 = round(a.value * a.n), round(b.value * b.n)
    iv = stats.newcombe_difference(k1, a.n, k0, b.n)
    return Estimate(iv.estimate, iv.lower, iv.upper, a.n + b.n, f"{k1}/{a.n} vs {k0}/{b.n}")


def median_ratio(first: ArmData, second: ArmData, of: str, **params) -> Estimate:
    """Ratio of two arms' medians, with a bootstrap interval (each arm resampled)."""
    if of not in MEDIANS:
        raise ValueError(f"median_ratio: {of!r} is not a median statistic")
    values = []
    for arm in (first, second):
        est = ONE_ARM[of](arm, **params)
        values.append((est, _median_inputs(arm, of, params)))
    (a, xa), (b, xb) = values
    if not (b.value > 0 and math.isfinite(b.value) and math.isfinite(a.value)):
        raise NotEvaluable(f"median {a.value:g} over {b.value:g}: the ratio is not finite")

    def draw(rng):
        ma, mb = _resampled_median(xa, rng), _resampled_median(xb, rng)
        return ma / mb if mb > 0 and math.isfinite(ma) and math.isfinite(mb) else math.nan
    lo, hi = _bootstrap(draw)
    return Estimate(a.value / b.value, lo, hi, a.n + b.n, f"median {a.value:.3g} vs {b.value:.3g}")


def _resampled_median(x, rng: np.random.Generator) -> float:
    """Median of a bootstrap resample of patients: the sample median of plain values, the
    Kaplan-Meier median of (time, event) pairs (``inf`` where it is not reached)."""
    if isinstance(x, tuple):
        time, event = x
        i = rng.integers(0, time.size, time.size)
        m = stats.kaplan_meier(time[i], event[i]).quantile(0.5)
        return math.inf if math.isnan(m) else m
    return float(np.median(x[rng.integers(0, x.size, x.size)]))


def _median_inputs(arm: ArmData, of: str, params: dict):
    """What the bootstrap resamples, in a fixed (subject) order: values, or (time, event)."""
    if of == "bcell_return_median":
        return _time_to_event(arm, "bcell_return_time")
    if of == "bcell_aplasia_duration_median":
        return _time_to_event(arm, "bcell_aplasia_days")
    if of == "median_of":
        return arm.patients.sort("subject")[params["column"]].drop_nulls().cast(pl.Float64).to_numpy()
    raise NotEvaluable(f"median_ratio does not resample {of}")


def dose_elasticity(first: ArmData, second: ArmData, column: str) -> Estimate:
    """d log(geometric mean of ``column``) / d log(dose) between two arms (Welch interval on the
    log scale, divided by the log dose ratio)."""
    if not (first.dose_cells_per_kg and second.dose_cells_per_kg) or first.dose_cells_per_kg == second.dose_cells_per_kg:
        raise NotEvaluable("dose_elasticity needs two arms with different cells/kg doses")
    ratio = geometric_mean_ratio(first, second, column)
    step = math.log(first.dose_cells_per_kg / second.dose_cells_per_kg)
    bounds = sorted((math.log(ratio.lower) / step, math.log(ratio.upper) / step))
    return Estimate(math.log(ratio.value) / step, bounds[0], bounds[1], ratio.n,
                    f"geometric-mean ratio {ratio.value:.3g} over a {math.exp(step):.3g}-fold dose")


def geometric_mean_ratio(first: ArmData, second: ArmData, column: str) -> Estimate:
    """Ratio of two arms' geometric means of a per-patient column (e.g. cart_auc_0_28), with the
    Welch interval on the log scale; zero or missing values are left out."""
    logs = []
    for arm in (first, second):
        _require(arm, column)
        x = arm.patients[column].drop_nulls().cast(pl.Float64).to_numpy()
        x = np.log(x[x > 0])
        if x.size < 2:
            raise NotEvaluable(f"fewer than 2 positive {column} values")
        logs.append(x)
    iv = stats.geometric_mean_ratio(logs[0].mean(), logs[0].var(ddof=1), logs[0].size,
                                    logs[1].mean(), logs[1].var(ddof=1), logs[1].size)
    return Estimate(iv.estimate, iv.lower, iv.upper, logs[0].size + logs[1].size,
                    f"geometric means {math.exp(logs[0].mean()):.3g} vs {math.exp(logs[1].mean()):.3g}")


TWO_ARM: dict[str, Callable[..., Estimate]] = {f.__name__: f for f in (
    proportion_difference, median_ratio, dose_elasticity, geometric_mean_ratio)}

STATISTICS = frozenset(ONE_ARM) | frozenset(TWO_ARM)


def compute(name: str, arms: list[ArmData], params: dict) -> Estimate:
    """Compute statistic ``name`` on one arm or, for a contrast, two."""
    if name in ONE_ARM:
        return ONE_ARM[name](arms[0], **params)
    return TWO_ARM[name](arms[0], arms[1], **params)
