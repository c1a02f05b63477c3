"""A Kaplan-Meier figure of a large run draws a bounded number of steps (its SVG is inlined in the
report), lagging the exact curve by less than one slice of the time axis; the estimate itself
uses every patient."""

import numpy as np

from cartwin.endpoints import stats
from cartwin.report.figures import KM_DRAWN_STEPS, _drawn_steps


def test_every_step_is_drawn_below_the_cap():
    time = np.arange(50.0)
    assert np.array_equal(_drawn_steps(time), np.arange(50))


def test_a_curve_with_a_time_per_patient_is_drawn_with_bounded_steps_close_to_the_exact_one():
    rng = np.random.default_rng(7)
    time = rng.exponential(60.0, 200_000)
    event = rng.random(time.size) < 0.7
    km = stats.kaplan_meier(time, event)
    drawn = _drawn_steps(km.time)
    assert drawn.size <= KM_DRAWN_STEPS
    assert drawn[-1] == km.time.size - 1  # the curve ends where the estimate ends
    assert np.all(np.diff(drawn) > 0)
    # the drawn step function at any time equals the exact one at most one slice earlier
    slice_width = (km.time[-1] - km.time[0]) / KM_DRAWN_STEPS
    probe = np.linspace(km.time[0], km.time[-1], 5000)
    exact = km.survival[np.searchsorted(km.time, probe, side="right") - 1]
    at = np.searchsorted(km.time[drawn], probe, side="right") - 1
    shown = np.where(at >= 0, km.survival[drawn][np.maximum(at, 0)], 1.0)
    before = np.searchsorted(km.time, probe - slice_width, side="right") - 1
    earlier = np.where(before >= 0, km.survival[np.maximum(before, 0)], 1.0)
    assert np.all(shown >= exact)  # a survival curve drawn late is never below the estimate
    assert np.all(shown <= earlier)  # and never later than one slice
    assert np.max(shown - exact) < 0.01


def test_grouped_counts_give_the_estimate_of_the_patients_one_by_one():
    time = [3.0, 3.0, 5.0, 5.0, 5.0, 8.5, 9.0, 9.0]
    event = [True, True, False, True, True, True, False, False]
    one_by_one = stats.kaplan_meier(time, event)
    grouped = stats.kaplan_meier([3.0, 5.0, 5.0, 8.5, 9.0], [True, False, True, True, False], [2, 1, 2, 1, 2])
    for field in ("time", "at_risk", "events", "censored", "survival", "greenwood"):
        assert np.array_equal(getattr(one_by_one, field), getattr(grouped, field)), field
