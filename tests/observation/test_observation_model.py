"""The observation model (data/observation_model.toml, cartwin.observation): each test's assay
error and LLOQ, drawn from streams that depend on (seed, arm, patient, test) only."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from scipy import stats

from cartwin.observation import (OBSERVATION_KEY, ObservationModelError, m3_log_likelihood, observation_model,
                                 observe, parse_observation_model)
from cartwin.vocabulary import test_codes as vocabulary_codes

SEED, ARM = 11, 12345


def _model(tests: dict, derived: dict | None = None):
    return parse_observation_model({"tests": tests, "derived": derived or {}}, "t.toml")


def test_the_table_covers_the_assays_with_units_limits_and_sources():
    model = observation_model()
    codes = vocabulary_codes()
    # flow cytometry and qPCR for CAR-T, high-sensitivity flow for B cells, anti-dsDNA by assay
    assert {"CART", "CARTQ", "BCELL", "DSDNA"} <= set(model.assays)
    for code, assay in model.assays.items():
        assert assay.unit == codes[code].unit
        assert assay.lloq is not None and assay.lloq > 0, code
        assert len(assay.source) > 40, code
    assert model.assays["CARTQ"].unit == "copies/ug" and model.assays["CARTQ"].error == "exponential"
    assert model.assays["BCELL"].lloq < 1.0  # below the B-cell aplasia threshold (1 cell/uL)


@pytest.mark.parametrize("row, message", [
    ({"unit": "cells/uL", "error": "poisson", "cv": 0.1, "source": "s"}, "error: 'poisson'"),
    ({"unit": "cells/uL", "error": "proportional", "source": "s"}, "needs cv"),
    ({"unit": "cells/uL", "error": "proportional", "cv": 0.1, "sd": 1.0, "source": "s"}, "not ['sd']"),
    ({"unit": "10^9/L", "error": "proportional", "cv": 0.1, "source": "s"}, "unit: '10^9/L'"),
    ({"unit": "cells/uL", "error": "proportional", "cv": -0.1, "source": "s"}, "cv: must be >= 0"),
    ({"unit": "cells/uL", "error": "proportional", "cv": 0.1, "lloq": 0, "source": "s"}, "lloq: must be > 0"),
    ({"unit": "cells/uL", "error": "proportional", "cv": 0.1}, "needs a source"),
])
def test_a_malformed_table_names_the_file_test_and_field(row, message):
    with pytest.raises(ObservationModelError) as exc:
        _model({"CART": row})
    assert "t.toml: [tests.CART]" in str(exc.value) and message in str(exc.value)


def test_an_unknown_test_code_is_refused():
    with pytest.raises(ObservationModelError, match=r"\[tests.NOPE\]: NOPE is not a test code"):
        _model({"NOPE": {"unit": "x", "error": "additive", "sd": 1, "source": "s"}})


def test_proportional_error_hand_check_stream_ratio_and_blq():
    """CART: y = f (1 + 0.2 eps), eps from SeedSequence(seed, (arm, index, OBSERVATION_KEY,
    crc32('CART'))); the observed/true ratio has mean 1 and SD 0.2; BLQ exactly when y < 1."""
    n, days = 400, 25
    true = np.full((n, days, 1), 1.5)
    out = observe(("CART",), ("cells/uL",), true, SEED, ARM, np.arange(n))
    eps0 = np.random.default_rng(np.random.SeedSequence(
        SEED, spawn_key=(ARM, 0, OBSERVATION_KEY, zlib.crc32(b"CART")))).standard_normal(days)
    np.testing.assert_allclose(out.observed[0, :, 0], 1.5 * (1 + 0.2 * eps0), rtol=1e-15)
    ratio = (out.observed / out.true).ravel()
    assert abs(ratio.mean() - 1) < 3 * 0.2 / np.sqrt(ratio.size)
    assert 0.19 < ratio.std() < 0.21
    np.testing.assert_array_equal(out.blq, out.observed < 1.0)
    # P(y < 1) = P(eps < (1/1.5 - 1)/0.2) = Phi(-1.667) = 0.0478
    assert abs(out.blq.mean() - stats.norm.cdf((1 / 1.5 - 1) / 0.2)) < 0.01
    np.testing.assert_array_equal(out.true, true)  # the true value is kept untouched
    assert out.lloq.tolist() == [1.0]


def test_exponential_error_has_the_declared_log_sd():
    model = _model({"DSDNA": {"unit": "IU/mL", "error": "exponential", "sd_log": 0.56, "lloq": 10,
                              "source": "s"}})
    true = np.full((500, 20, 1), 40.0)
    out = observe(("DSDNA",), ("IU/mL",), true, SEED, ARM, np.arange(500), model)
    logs = np.log(out.observed / out.true).ravel()
    assert abs(logs.mean()) < 3 * 0.56 / np.sqrt(logs.size)
    assert 0.54 < logs.std() < 0.58
    assert (out.observed > 0).all()


def test_additive_and_combined_errors_follow_their_formulas():
    model = _model({"CART": {"unit": "cells/uL", "error": "additive", "sd": 2.0, "source": "s"},
                    "BCELL": {"unit": "cells/uL", "error": "combined", "cv": 0.1, "sd": 3.0, "source": "s"}})
    true = np.stack([np.full((3, 4), 10.0), np.full((3, 4), 40.0)], axis=2)
    out = observe(("CART", "BCELL"), ("cells/uL", "cells/uL"), true, SEED, ARM, np.arange(3), model)
    for i in range(3):
        eps = [np.random.default_rng(np.random.SeedSequence(
            SEED, spawn_key=(ARM, i, OBSERVATION_KEY, zlib.crc32(t.encode())))).standard_normal(4)
            for t in ("CART", "BCELL")]
        np.testing.assert_allclose(out.observed[i, :, 0], 10 + 2.0 * eps[0], rtol=1e-15)
        np.testing.assert_allclose(out.observed[i, :, 1], 40 + np.sqrt(9 + 16) * eps[1], rtol=1e-15)
    assert np.isnan(out.lloq).all() and not out.blq.any()  # no limit declared: nothing is BLQ


def test_observations_do_not_depend_on_chunking_or_on_the_other_tests_stored():
    rng = np.random.default_rng(0)
    true = rng.uniform(0.5, 50, (10, 6, 3))
    tests, units = ("CART", "BCELL", "DSDNA"), ("cells/uL", "cells/uL", "IU/mL")
    whole = observe(tests, units, true, SEED, ARM, np.arange(10))
    parts = [observe(tests, units, true[a:b], SEED, ARM, np.arange(a, b)) for a, b in ((0, 1), (1, 7), (7, 10))]
    np.testing.assert_array_equal(whole.observed, np.concatenate([p.observed for p in parts]))
    alone = observe(("BCELL",), ("cells/uL",), true[:, :, 1:2], SEED, ARM, np.arange(10))
    np.testing.assert_array_equal(alone.observed[:, :, 0], whole.observed[:, :, 1])
    other_seed = observe(tests, units, true, SEED + 1, ARM, np.arange(10))
    assert not np.allclose(other_seed.observed, whole.observed)


def test_failed_patients_stay_nan_and_are_not_blq():
    true = np.full((2, 3, 1), np.nan)
    out = observe(("CART",), ("cells/uL",), true, SEED, ARM, np.arange(2))
    assert np.isnan(out.observed).all() and not out.blq.any()


def test_transgene_copies_derived_from_car_t_and_white_cells_by_hand():
    """10 CAR-T cells/uL among 5 x 10^9/L white cells: 10/5000 of 151515 genomes per ug, one
    copy each: 303.03 copies/ug."""
    true = np.zeros((1, 2, 2))
    true[0, :, 0] = [10.0, 0.0]  # CART
    true[0, :, 1] = [5.0, 5.0]  # WBC
    out = observe(("CART", "WBC"), ("cells/uL", "10^9/L"), true, SEED, ARM, np.arange(1))
    assert out.tests == ("CART", "WBC", "CARTQ") and out.units[2] == "copies/ug"
    assert out.true[0, 0, 2] == pytest.approx(10 * 151515 / 5000)
    assert out.true[0, 1, 2] == 0.0 and out.blq[0, 1, 2]  # no CAR-T cells: below 50 copies/ug
    assert out.lloq[2] == 50.0 and np.isnan(out.lloq[1])  # WBC has no error model here
    np.testing.assert_array_equal(out.observed[:, :, 1], true[:, :, 1])
    without_wbc = observe(("CART",), ("cells/uL",), true[:, :, :1], SEED, ARM, np.arange(1))
    assert without_wbc.tests == ("CART",)  # CARTQ needs WBC


def test_m3_likelihood_by_hand():
    # at the limit the probability of being below it is one half
    assert m3_log_likelihood(np.log(50), np.log(50), 0.56) == pytest.approx(np.log(0.5), abs=1e-15)
    # one SD above the prediction: Phi(1) = 0.841344746...
    assert m3_log_likelihood(1.0, 0.0, 1.0) == pytest.approx(np.log(0.8413447460685429), rel=1e-12)
    # far above: log Phi(-10) = -53.231... (no underflow)
    assert m3_log_likelihood(0.0, 10.0, 1.0) == pytest.approx(-53.23128515051247, rel=1e-9)


def test_a_read_out_in_another_unit_is_left_alone():
    """An SBML model's species named CART in cells/mL is not the flow cytometry count."""
    true = np.full((2, 3, 2), 5.0)
    out = observe(("CART", "WBC"), ("cells/mL", "10^9/L"), true, SEED, ARM, np.arange(2))
    np.testing.assert_array_equal(out.observed, true)
    assert out.tests == ("CART", "WBC") and not out.blq.any()  # and no CARTQ from it
