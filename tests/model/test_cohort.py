"""Behaviour of the default model as medians and shares over virtual cohorts of 200 patients
per arm, run through the public engine (conftest.cohort_protocol: refractory SLE, the model's
declared inter-individual variability). The same behaviours as test_typical_patient.py, now
across patients; tolerances are stated per test.
"""

from __future__ import annotations

import numpy as np
import pytest

import lupus_virtual as lv

pytestmark = pytest.mark.cohort

EARLY_SAMPLING_DAYS = (3, 5, 7, 10, 14, 17, 21, 28)


def test_every_cohort_patient_solves(cohort_runs):
    """A behaviour median means nothing if patients silently drop out."""
    for arm, run in cohort_runs.items():
        assert run.ok.all(), arm
        assert run.n == 200


def test_cohort_baseline_activity_matches_the_trials(cohort_runs):
    """Median SLEDAI-2K at baseline within the trial ranges (Mackensen 2022 median 16; TyU19
    Cell Research 2025: 14-26). Tolerance: median 12-26."""
    assert 12 <= np.median(lv.sledai(cohort_runs["autologous_erlangen"], -6)) <= 26


# --- autologous_cd19, Erlangen ----------------------------------------------------------------
def test_autologous_median_peak_day_7_to_14(cohort_runs):
    """Median CAR-T peak day within 7-14 (Stein 2019 Tmax 9.3 d)."""
    day, _ = lv.cart_peak(cohort_runs["autologous_erlangen"])
    assert 7 <= np.median(day) <= 14


def test_autologous_b_aplasia_within_14_days_in_nearly_all(cohort_runs):
    """B cells < 1/uL within 14 days (Mackensen 2022; WangX 2024). Tolerance: median onset
    <= 14 d and >= 85% of patients (5/5 and 3/3 bound the share from below only, at 48% and
    29%; since model 0.6 the kill is weak below a few CAR-T/uL, so the patients whose CAR-T
    expand slowly reach aplasia after day 14)."""
    onset = lv.b_aplasia_day(cohort_runs["autologous_erlangen"])
    assert np.nanmedian(onset) <= 14
    assert np.mean(onset <= 14) >= 0.85


def test_autologous_median_b_return_110_days(cohort_runs):
    """B cells back at mean 110 +/- 32 d (Mackensen 2022). Tolerance: cohort median within
    one reported SD; return in >= 90% of patients by day 365 (later Erlangen patients all
    reconstituted)."""
    back = lv.b_return_day(cohort_runs["autologous_erlangen"])
    assert abs(np.nanmedian(back) - 110) <= 32
    assert np.mean(back <= 365) >= 0.9


def test_autologous_month_3_remission_and_serology(cohort_runs):
    """SLEDAI-2K median 0 at month 3 (Mackensen 2022: median 0, range 2; DORIS 5/5), anti-
    dsDNA seroconversion, C3/C4 normal. Tolerance: SLEDAI 0 in > 50% (median 0) and <= 2 in
    >= 70% at day 90; anti-dsDNA negative in >= 70%; C3 normal >= 90%, C4 normal >= 80%."""
    r = cohort_runs["autologous_erlangen"]
    score = lv.sledai(r, 90)
    assert np.median(score) == 0 and np.mean(score <= 2) >= 0.7
    assert np.mean(r.at("DSDNA", 90) <= lv.DSDNA_POSITIVE_ABOVE) >= 0.7
    assert np.mean(r.at("C3", 90) >= lv.C3_LLN) >= 0.9
    assert np.mean(r.at("C4", 90) >= lv.C4_LLN) >= 0.8


def test_autologous_crs_mostly_grade_0_or_1(cohort_runs):
    """CRS grade 1 in 3/5 (Mackensen 2022), grade 1 in 10/15 and grade 2 in 1/15 (Muller
    2024): fever in 40-85% and grade >= 2 in <= 12%."""
    grade = lv.crs_grade(cohort_runs["autologous_erlangen"])
    assert 0.4 <= np.mean(grade >= 1) <= 0.85
    assert np.mean(grade >= 2) <= 0.12


# --- tyu19, low-intensity LD --------------------------------------------------------------------
def test_tyu19_median_peak_near_day_14(cohort_runs):
    """CAR+ peak at day 14 (WangD 2025, sampled). Tolerance: median true peak day 10-17 and,
    in at least 45% of patients, the day-14 sample within 25% of the highest early sample (the
    peak is sharper since model 0.6, so fewer patients have a day-14 sample near it)."""
    r = cohort_runs["tyu19_reduced"]
    day, _ = lv.cart_peak(r)
    assert 10 <= np.median(day) <= 17
    samples = np.column_stack([r.at("CART", d) for d in EARLY_SAMPLING_DAYS])
    assert np.mean(r.at("CART", 14) >= 0.75 * samples.max(axis=1)) >= 0.45


def test_tyu19_b_depletion_by_day_14_lasting_2_months(cohort_runs):
    """Complete B depletion within 2 weeks, lasting >= 2 months (WangX 2024, 3 of 3). Tolerance:
    median onset <= 14 d, median return >= day 74, and aplasia from day 14 through day 74 in a
    share compatible with 3 of 3 (above 0.29, the exact 95% lower bound the validation suite
    uses for this report)."""
    r = cohort_runs["tyu19_reduced"]
    onset, back = lv.b_aplasia_day(r), lv.b_return_day(r)
    assert np.nanmedian(onset) <= 14
    assert np.nanmedian(back) >= 74
    assert np.mean((onset <= 14) & (back >= 74)) > 0.29


def test_tyu19_cart_detectable_beyond_3_months_in_most(cohort_runs):
    """Persisted for over 3 months (WangX 2024, n = 3). Tolerance: median last detectable day
    (>= 1 cell/uL) after day 90."""
    assert np.nanmedian(lv.last_detectable_cart_day(cohort_runs["tyu19_reduced"])) > 90


def test_tyu19_remission_within_6_months(cohort_runs):
    """SELENA-SLEDAI to 0 and PGA < 1 within 3-6 months in all 4, C3/C4 normal (TyU19 Cell
    Research 2025). Tolerance: at day 182, SLEDAI 0 in >= 75%, PGA < 1 in >= 90%, C3 and C4
    normal in >= 80%."""
    r = cohort_runs["tyu19_reduced"]
    assert np.mean(lv.sledai(r, 182) == 0) >= 0.75
    assert np.mean(r.at("PGA", 182) < 1.0) >= 0.9
    assert np.mean((r.at("C3", 182) >= lv.C3_LLN) & (r.at("C4", 182) >= lv.C4_LLN)) >= 0.8


def test_tyu19_chemotherapy_cytopenias_and_little_crs(cohort_runs):
    """Grade 3/4 neutropenia and lymphopenia were the common AEs, attributed to LD; no CRS
    (TyU19 Cell Research 2025; WangX 2024; WangD 2025). Tolerance: ANC < 1.0 x 10^9/L
    (CTCAE grade 3) in > 50%, ALC < 0.5 in > 90%; CRS grade >= 2 in <= 10%. The model gives
    grade 1 fever as often as after autologous cells (see docs/model.md, thin evidence)."""
    r = cohort_runs["tyu19_reduced"]
    assert np.mean(lv.nadir(r, "NEUT", -6, 21) < 1.0) > 0.5
    assert np.mean(lv.nadir(r, "LYM", -6, 21) < 0.5) > 0.9
    assert np.mean(lv.crs_grade(r) >= 2) <= 0.10


# --- tyu19 without LD -------------------------------------------------------------------------
def test_tyu19_without_lymphodepletion_weaker_shorter_expansion(cohort_runs):
    """Model prediction (see test_typical_patient): antigen drives expansion without LD, but
    weaker and shorter, and it still depletes B cells in most patients (TyU19 in SLE:
    efficacy without lymphocyte clearance, [V2]). Tolerance: median peak below 80% of the
    post-LD median and above the infused level (0.124 cells/uL for 62 kg at 1e6/kg) in most;
    median last detectable day earlier than after LD; B-cell aplasia (< 1 cell/uL) reached in
    more than half, but by day 14 in fewer than after LD (the expansion is slower)."""
    none, ld = cohort_runs["tyu19_none"], cohort_runs["tyu19_reduced"]
    _, peak_none = lv.cart_peak(none)
    _, peak_ld = lv.cart_peak(ld)
    assert np.median(peak_none) < 0.8 * np.median(peak_ld)
    infused = 1e6 * none.cov["WT"] / 5e8
    assert np.mean(peak_none > 2 * infused) > 0.5
    last_none = np.nan_to_num(lv.last_detectable_cart_day(none), nan=0.0)
    last_ld = np.nan_to_num(lv.last_detectable_cart_day(ld), nan=0.0)
    assert np.median(last_none) < np.median(last_ld)
    aplasia_none = lv.b_aplasia_day(none)
    assert np.mean(~np.isnan(aplasia_none)) > 0.5
    assert np.mean(aplasia_none <= 14) < np.mean(lv.b_aplasia_day(ld) <= 14)


# --- allo_hla_intact --------------------------------------------------------------------------
def test_hla_intact_cells_lost_within_about_4_weeks_in_most(cohort_runs):
    """UCART19 without alemtuzumab: persistence <= 28 d in 10/25, > 42 d in 4/25 (Dupouy
    2022). Tolerance: undetectable by day 35 in > 50% and by day 56 in >= 80%."""
    last = np.nan_to_num(lv.last_detectable_cart_day(cohort_runs["allo_hla_intact_standard"]),
                         nan=0.0)
    assert np.mean(last <= 35) > 0.5
    assert np.mean(last <= 56) >= 0.8


# --- lymphodepletion intensity ------------------------------------------------------------------
@pytest.mark.parametrize("product", ["autologous", "tyu19"])
def test_less_intense_lymphodepletion_in_cohort_medians(cohort_runs, product):
    """Less intense LD -> lower CAR-T peak, shorter B aplasia, milder neutropenia (Kochenderfer
    2017; Hirayama 2019; issue 3). Tolerance: medians of peak and ANC nadir ordered standard >
    Erlangen > reduced > none; aplasia duration ordered standard > reduced > none. Erlangen
    (Flu 75 + Cy 1000) and reduced (Flu 75 + Cy 750) give B aplasia within a day or two of
    each other, closer than the cohort's sampling resolution, so that pair is not ordered."""
    order = ["standard", "erlangen", "reduced", "none"] if product == "autologous" else \
        ["standard", "reduced", "none"]
    runs = [cohort_runs[f"{product}_{ld}"] for ld in order]
    peak = [np.median(lv.cart_peak(r)[1]) for r in runs]
    anc = [np.median(lv.nadir(r, "NEUT")) for r in runs]
    aplasia = [np.median(np.nan_to_num(lv.b_return_day(r) - lv.b_aplasia_day(r), nan=0.0))
               for r, ld in zip(runs, order) if ld != "erlangen"]
    assert peak == sorted(peak, reverse=True)
    assert anc == sorted(anc)
    assert aplasia[0] > aplasia[1] > aplasia[2]


def test_lower_creatinine_clearance_deepens_lymphodepletion_across_patients(cohort_runs):
    """Fludarabine is renally cleared (Langenhorst 2019): across the cohort, lower CrCl goes
    with a deeper lymphocyte nadir, despite the label's 20% dose cut at CrCl 30-70 mL/min
    and the other sources of variability. Tolerance: Spearman rho(CrCl, ALC nadir) > 0.1."""
    from scipy.stats import spearmanr

    r = cohort_runs["autologous_standard"]
    rho = spearmanr(r.cov["CRCL"], lv.nadir(r, "LYM", -6, 7)).statistic
    assert rho > 0.1
