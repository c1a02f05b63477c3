"""Each statistic on a small hand-built set of scored tables, against a value worked out by hand."""

from __future__ import annotations

import math

import polars as pl
import pytest

from cartwin.validation import statistics as st


def arm(patients=None, visits=None, labs=None, obs=None, dose=None) -> st.ArmData:
    empty = pl.DataFrame({"subject": pl.Series([], dtype=pl.String)})
    return st.ArmData("a", patients if patients is not None else empty, visits if visits is not None else empty,
                      labs if labs is not None else empty, empty, obs if obs is not None else empty, dose)


PATIENTS = pl.DataFrame({
    "subject": ["p1", "p2", "p3", "p4", "p5"],
    "crs_max": [0, 1, 2, None, 1],
    "icans_max": [0, 0, 1, None, 0],
    "crs_onset_day": [None, 3.0, 16.0, None, 1.0],
    "selena_evaluable_visits": [3, 3, 3, 0, 3],
    "remission_day": [90.0, 200.0, None, None, 56.0],
    "bcell_aplasia": [True, True, True, False, None],
    "bcell_aplasia_onset_day": [7.0, 10.0, 5.0, None, None],
    "bcell_return_day": [100.0, None, 150.0, None, None],
    # time-to-event endpoints (endpoints.compute): still aplastic = censored at the last count (365)
    "bcell_aplasia_days": [93.0, 355.0, 145.0, None, None],
    "bcell_aplasia_days_event": [True, False, True, None, None],
    "bcell_return_time": [100.0, 365.0, 150.0, None, None],
    "bcell_return_time_event": [True, False, True, None, None],
    "bcell_last_measured_day": [365.0, 365.0, 365.0, 365.0, None],
    "cart_cmax": [10.0, 40.0, 5.0, 20.0, None],
    "cart_tmax": [10.0, 14.0, 7.0, 10.0, None],
    "cart_last_detectable_day": [120.0, 28.0, None, 60.0, None],
    "cart_last_measured_day": [365.0, 365.0, 365.0, 365.0, None],
})


def test_crs_and_icans_rates_count_patients_graded():
    """crs_max 0,1,2,(null),1: grade >= 1 in 3 of 4 graded, grade >= 2 in 1 of 4; ICANS 1 of 4."""
    a = arm(PATIENTS)
    e = st.crs_rate(a, 1)
    assert (e.value, e.n) == (0.75, 4)
    assert e.lower < 0.75 < e.upper
    assert st.crs_rate(a, 2).value == 0.25
    assert st.icans_rate(a, 1).value == 0.25
    assert st.crs_onset_after_day(a, 14).value == 0.25  # p3 begins on day 16


def test_remission_by_day_counts_evaluable_patients_only():
    """Remission days 90, 200, never, (not evaluable), 56: by day 180 two of four."""
    assert st.remission_by_day(arm(PATIENTS), 180).value == 0.5


def test_bcell_statistics():
    """Aplasia onsets 7, 10, 5 (p4 none, p5 unmeasured); returns 100, not yet, 150."""
    a = arm(PATIENTS)
    assert st.bcell_aplasia_by_day(a, 7).value == pytest.approx(2 / 4)
    # on day 120: p1 back (100), p2 still aplastic, p3 aplastic until 150, p4 never: 2 of 4
    assert st.bcell_aplasia_at_day(a, 120).value == pytest.approx(2 / 4)
    assert st.bcell_return_by_day(a, 120).value == pytest.approx(1 / 3)
    # returns 100, 150 and one censored at 365: Kaplan-Meier S falls to 1/3 at 150, median 150
    assert st.bcell_return_median(a).value == 150
    # durations 93, 145 and one censored at 355: median 145
    assert st.bcell_aplasia_duration_median(a).value == 145
    # censored early (before both events): the median is that of the two events, S = 1/2 at 93
    early = arm(PATIENTS.with_columns(pl.when(pl.col("subject") == "p2").then(20.0)
                                      .otherwise(pl.col("bcell_aplasia_days")).alias("bcell_aplasia_days")))
    assert st.bcell_aplasia_duration_median(early).value == pytest.approx((93 + 145) / 2)
    # no aplasia at all (a product that spares CD19+ B cells): not evaluable, and the reason says why
    spared = arm(PATIENTS.with_columns(pl.col("bcell_aplasia") & False))
    with pytest.raises(st.NotEvaluable, match="no patient reached B-cell aplasia"):
        st.bcell_return_by_day(spared, 90)


def test_bcell_return_sd_counts_patients_not_returned_at_their_last_count():
    """Return times 100, 150 and one not back by the last count on day 365 (counted there): mean
    205, squared deviations 11025 + 3025 + 25600 = 39650, SD sqrt(39650 / 2) = 140.8 d."""
    e = st.bcell_return_sd(arm(PATIENTS))
    assert e.value == pytest.approx(math.sqrt(39650 / 2))
    assert e.n == 3 and "1 not returned" in e.detail
    assert e.lower <= e.value <= e.upper
    # the two returns alone, 100 and 150: SD 50 / sqrt(2)
    returned = arm(PATIENTS.filter(pl.col("bcell_return_time_event").fill_null(False)))
    assert st.bcell_return_sd(returned).value == pytest.approx(50 / math.sqrt(2))
    # one patient has no spread to report, and it is not a proportion to difference
    with pytest.raises(st.NotEvaluable, match="an SD needs 2"):
        st.bcell_return_sd(arm(PATIENTS.filter(pl.col("subject") == "p1")))
    assert "bcell_return_sd" not in st.PROPORTIONS and "bcell_return_sd" not in st.MEDIANS


def test_cart_persistence():
    """Last detectable days 120, 28, never, 60 (all measured to 365)."""
    a = arm(PATIENTS)
    assert st.cart_detectable_at_day(a, 56).value == 0.5
    assert st.cart_lost_by_day(a, 28).value == 0.5  # p2 (day 28) and p3 (never)
    assert st.median_of(a, "cart_tmax").value == 10


def test_median_interval_is_the_order_statistic_interval():
    """n = 10, values 1..10: binomial(10, 1/2) quantiles 2 and 8 give x(2) = 2 and x(9) = 9."""
    e = st.median_with_interval([float(v) for v in range(10, 0, -1)])
    assert (e.value, e.lower, e.upper) == (5.5, 2.0, 9.0)


LABS = pl.DataFrame({
    "subject": ["p1", "p1", "p2", "p2", "p3", "p3", "p1"],
    "term": ["Neutrophil count decreased"] * 6 + ["Alanine aminotransferase increased"],
    "day": [7.0, 28.0, 7.0, 28.0, 7.0, 28.0, 7.0],
    "grade": [4, 0, 3, 3, 1, None, 3],
})


def test_lab_grades():
    """Worst neutropenia grades 4, 3, 1; on day 28: 0, 3 (p3 not graded)."""
    a = arm(labs=LABS)
    assert st.lab_grade_rate(a, "Neutrophil count decreased", 3).value == pytest.approx(2 / 3)
    assert st.lab_grade_rate(a, "Neutrophil count decreased", 3, first_day=10, last_day=30).value == 0.5
    assert st.lab_grade_at_day(a, "Neutrophil count decreased", 28, min_grade=3).value == 0.5
    assert st.lab_grade_at_day(a, "Neutrophil count decreased", 28, max_grade=3).value == 1.0
    # several terms: the worst of them per patient (p1: ALT 3, neutrophils 4)
    both = st.lab_grade_rate(a, ["Alanine aminotransferase increased", "Neutrophil count decreased"], 4)
    assert both.value == pytest.approx(1 / 3)


VISITS = pl.DataFrame({
    "subject": ["p1"] * 4 + ["p2"] * 4,
    "day": [-6.0, 84.0, 90.0, 180.0] * 2,
    "sledai_visit": [True] * 8,
    "sledai2k": [16, 2, 0, 0, 10, 6, 4, 8],
    "doris_remission": [None, False, True, True, None, False, False, False],
    "sri4": [None, True, True, True, None, False, True, False],
    "sfi_flare": [None, "none", "none", "none", None, "none", "none", "mild/moderate"],
})


def test_visit_statistics_use_the_visit_nearest_the_day():
    a = arm(visits=VISITS)
    assert st.doris_at_day(a, 90).value == 0.5
    assert st.doris_at_day(a, 91).value == 0.5  # nearest visit is day 90, not 84
    assert st.sri4_at_day(a, 90).value == 1.0
    assert st.sledai2k_zero_at_day(a, 180).value == 0.5
    assert st.sledai2k_median_at_day(a, 90).value == 2.0
    # mean SLEDAI-2K 4 at day 180 over 13 at baseline
    assert st.mean_ratio_to_baseline(a, "sledai2k", 180).value == pytest.approx(4 / 13)
    with pytest.raises(st.NotEvaluable):
        st.doris_at_day(a, 400)


def test_flares():
    """p2 flares at day 180; p1 does not. Only p1 is in remission (day 90) by day 180."""
    patients = pl.DataFrame({"subject": ["p1", "p2"], "remission_day": [90.0, None]})
    a = arm(patients, VISITS)
    assert st.flare_after_remission_by_day(a, 180).value == 0.0
    assert st.flare_between_days(a, 90, 180).value == 0.5
    flaring = arm(pl.DataFrame({"subject": ["p1", "p2"], "remission_day": [None, 84.0]}), VISITS)
    assert st.flare_after_remission_by_day(flaring, 180).value == 1.0


OBS = pl.DataFrame({
    "subject": ["p1"] * 5 + ["p2"] * 4,
    "day": [-1.0, 10.0, 17.0, 90.0, 180.0, -1.0, 14.0, 21.0, 180.0],
    "test": ["IGG", "CART", "CART", "IGG", "IGG", "IGG", "CART", "CART", "IGG"],
    "value": [10.0, 40.0, 10.0, 8.0, 9.0, 12.0, 20.0, 20.0, 6.0],
})


def test_ratio_to_baseline_and_decline_half_life():
    peaks = pl.DataFrame({"subject": ["p1", "p2"], "cart_cmax": [40.0, 20.0], "cart_tmax": [10.0, 14.0]})
    a = arm(peaks, obs=OBS)
    # IgG day 180 over baseline: 0.9 and 0.5, median 0.7
    assert st.median_ratio_to_baseline(a, "IGG", 180).value == pytest.approx(0.7)
    with pytest.raises(st.NotEvaluable, match="VACCIGG"):
        st.median_ratio_to_baseline(a, "VACCIGG", 180)
    # p1: 40 -> 10 in 7 days, two half-lives: 3.5 d; p2: no decline (inf); median of the two: inf
    e = st.cart_decline_half_life(a, 7)
    assert math.isinf(e.value) and e.n == 2
    assert math.isnan(e.lower)  # two patients are too few for a 95% order-statistic interval
    assert st.cart_decline_half_life(arm(peaks.head(1), obs=OBS), 7).value == pytest.approx(3.5)


def test_contrasts():
    a, b = arm(PATIENTS, dose=5e6), arm(PATIENTS.with_columns(pl.col("cart_cmax") / 5), dose=2e5)
    d = st.proportion_difference(a, b, "crs_rate", min_grade=2)
    assert d.value == 0 and d.lower < 0 < d.upper
    # Cmax 5-fold higher over a 25-fold dose: elasticity log 5 / log 25 = 0.5
    assert st.dose_elasticity(a, b, "cart_cmax").value == pytest.approx(0.5)
    r = st.median_ratio(a, b, "median_of", column="cart_cmax")
    assert r.value == pytest.approx(5.0)
    with pytest.raises(ValueError):
        st.proportion_difference(a, b, "median_of", column="cart_cmax")


def test_geometric_mean_ratio():
    """Geometric means sqrt(10 x 40) = 20 and sqrt(2 x 8) = 4: ratio 5."""
    a = arm(pl.DataFrame({"subject": ["p1", "p2"], "cart_auc_0_28": [10.0, 40.0]}))
    b = arm(pl.DataFrame({"subject": ["q1", "q2", "q3"], "cart_auc_0_28": [2.0, 8.0, 0.0]}))
    e = st.geometric_mean_ratio(a, b, "cart_auc_0_28")
    assert e.value == pytest.approx(5.0) and e.lower < 5.0 < e.upper
