"""Covariates drawn jointly (Gaussian copula) and virtual patients resampled from a cohort CSV.
No solves: these tests generate populations only."""

import copy

import numpy as np
import pytest

from cartwin.model import get_model
from cartwin.population.cohort import CohortError, read_cohort
from cartwin.population.correlation import CITED
from cartwin.population.virtual import generate
from cartwin.protocol import ProtocolError, load_protocol, parse_protocol
from tests.conftest import BASE_PROTOCOL, write_protocol

MODEL = get_model("lupus_cart")
TYPICAL = np.array([p.value for p in MODEL.parameters])


def _population(**changes):
    data = copy.deepcopy(BASE_PROTOCOL)
    data["population"].update(changes)
    return parse_protocol(data).population


def _draw(population, n=4000, start=0):
    return generate(MODEL, population, "a", np.arange(start, start + n), 11, TYPICAL).covariates


def test_declared_correlation_is_recovered_on_the_transformed_scale():
    # weight log-normal, height normal: rho is the correlation of log weight and height
    pop = _population(weight={"dist": "lognormal", "median": 62, "cv": 0.18},
                      correlations=[{"first": "weight", "second": "height", "rho": 0.6, "source": "assumed: test"}])
    cov = _draw(pop)
    r = np.corrcoef(np.log(cov["WT"]), cov["HT"])[0, 1]
    assert abs(r - 0.6) < 0.04  # SE of r at n = 4000 is about 0.01
    # the marginals are those declared: median weight 62 kg, mean height 165 cm
    assert abs(np.median(cov["WT"]) / 62 - 1) < 0.02
    assert abs(cov["HT"].mean() - 165) < 0.5
    # without correlations the same draws are independent
    free = _draw(_population(weight={"dist": "lognormal", "median": 62, "cv": 0.18}))
    assert abs(np.corrcoef(np.log(free["WT"]), free["HT"])[0, 1]) < 0.05


def test_uncorrelated_covariates_keep_their_draws_and_patients_do_not_depend_on_their_chunk():
    pairs = [{"first": "c3", "second": "c4", "rho": 0.6, "source": "assumed: test"}]
    plain, joint = _draw(_population(), 50), _draw(_population(correlations=pairs), 50)
    for name in ("AGE", "WT", "HT", "CREAT", "DSDNA0"):
        assert np.array_equal(plain[name], joint[name])
    assert not np.array_equal(plain["C4_0"], joint["C4_0"])
    # the first correlated field is unchanged by a Cholesky mix (its row of L is (1, 0, ...))
    assert np.allclose(plain["C3_0"], joint["C3_0"])
    tail = _draw(_population(correlations=pairs), 20, start=30)
    for name in joint:
        assert np.array_equal(joint[name][30:], tail[name])


def test_cited_correlations_name_their_source_and_run():
    assert all(c.source for c in CITED)
    cov = _draw(_population(correlations="cited"), 3000)
    assert np.corrcoef(np.log(cov["C3_0"]), np.log(cov["C4_0"]))[0, 1] > 0.45
    assert np.corrcoef(np.log(cov["DSDNA0"]), np.log(cov["C3_0"]))[0, 1] < -0.15


@pytest.mark.parametrize("pairs, message", [
    ([{"first": "weight", "second": "shoe_size", "rho": 0.3, "source": "x"}], "not a drawn continuous covariate"),
    ([{"first": "weight", "second": "weight", "rho": 0.3, "source": "x"}], "with itself"),
    ([{"first": "weight", "second": "height", "rho": 0.9, "source": "x"},
      {"first": "weight", "second": "age", "rho": 0.9, "source": "x"},
      {"first": "height", "second": "age", "rho": -0.9, "source": "x"}], "positive definite"),
])
def test_bad_correlations_are_rejected_with_the_field(protocol_dict, pairs, message):
    protocol_dict["population"]["correlations"] = pairs
    with pytest.raises(ProtocolError, match=message) as err:
        parse_protocol(protocol_dict)
    assert "population.correlations" in str(err.value)


COHORT = """id,sex,age,weight,height,creatinine,creatinine_unit,dsdna,c3,c4,complement_unit,proteinuria,pga,descriptors
A1,F,22,52,160,58,umol/L,240,0.55,0.06,g/L,0.3,2.2,arthritis;rash
A2,M,31,74,178,0.95,mg/dL,180,58,9,mg/dL,0.8,2.0,pleurisy
A3,F,40,66,170,70,,90,0.7,0.1,,1.0,1.5,
"""


def _cohort_protocol(tmp_path, protocol_dict, text=COHORT, **population):
    (tmp_path / "cohort.csv").write_text(text)
    protocol_dict["population"] = {"cohort": "cohort.csv", **population}
    return write_protocol(tmp_path / "p.toml", protocol_dict)


def test_a_cohort_file_is_read_in_canonical_units(tmp_path, protocol_dict):
    loaded = load_protocol(_cohort_protocol(tmp_path, protocol_dict, cohort_sampling="in_order"))
    pop = generate(MODEL, loaded.protocol.population, "a", np.arange(4), 1, TYPICAL)
    # row 2 gave creatinine 0.95 mg/dL = 84.0 umol/L and C3 58 mg/dL = 0.58 g/L; in order, row 1 again 4th
    assert pop.covariates["CREAT"][1] == pytest.approx(0.95 * 88.42, rel=1e-3)
    assert pop.covariates["C3_0"][1] == pytest.approx(0.58)
    assert pop.covariates["SEXF"].tolist() == [1.0, 0.0, 1.0, 1.0]
    assert pop.covariates["RASH0"][0] == 1 and pop.covariates["PLEUR0"][1] == 1
    assert pop.subject == ["a-A1", "a-A2", "a-A3", "a-A1-2"]


def test_bootstrap_resampling_is_reproducible_and_independent_of_chunks(tmp_path, protocol_dict):
    loaded = load_protocol(_cohort_protocol(tmp_path, protocol_dict))
    population = loaded.protocol.population
    whole = generate(MODEL, population, "a", np.arange(300), 5, TYPICAL)
    part = generate(MODEL, population, "a", np.arange(200, 300), 5, TYPICAL)
    assert whole.subject[200:] == part.subject
    assert np.array_equal(whole.covariates["WT"][200:], part.covariates["WT"])
    # every row is drawn about a third of the time (300 draws with replacement from 3 rows)
    counts = np.unique(whole.covariates["WT"], return_counts=True)[1]
    assert len(counts) == 3 and counts.min() > 70
    assert len(set(whole.subject)) == 300


@pytest.mark.parametrize("edit, where", [
    (lambda t: t.replace("A2,M,31,74", "A2,M,31,abc"), "line 3 (id A2), column weight: 'abc' is not a number"),
    (lambda t: t.replace("A3,F,40,66", "A3,F,40,"), "line 4 (id A3), column weight: missing value"),
    (lambda t: t.replace("A1,F,22,52,160", "A1,F,22,52,16"), "line 2 (id A1), column height: 16 cm is implausible"),
    (lambda t: t.replace("0.95,mg/dL", "0.95,mmol/L"), "line 3 (id A2), column creatinine_unit: unknown unit"),
    (lambda t: t.replace(",pga,", ",pgax,"), "missing column(s) ['pga']"),
    (lambda t: t.replace("A2,M", "A1,M"), "line 3, column id: patient id 'A1' is also on line 2"),
    (lambda t: t.replace("pleurisy", "headache"), "line 3 (id A2), column descriptors: unknown descriptor"),
])
def test_bad_cohort_values_name_the_file_line_and_column(tmp_path, protocol_dict, edit, where):
    path = _cohort_protocol(tmp_path, protocol_dict, text=edit(COHORT))
    with pytest.raises(ProtocolError) as err:
        load_protocol(path)
    message = str(err.value)
    assert "cohort.csv" in message and where in message and "Traceback" not in message


def test_a_missing_cohort_file_and_a_cohort_beside_distributions_are_refused(tmp_path, protocol_dict):
    path = _cohort_protocol(tmp_path, protocol_dict)
    (tmp_path / "cohort.csv").unlink()
    with pytest.raises(ProtocolError, match="file not found"):
        load_protocol(path)
    with pytest.raises(CohortError, match="file not found"):
        read_cohort(tmp_path / "cohort.csv")
    data = copy.deepcopy(BASE_PROTOCOL)
    data["population"]["cohort"] = "cohort.csv"
    with pytest.raises(ProtocolError, match="a cohort file replaces distributions"):
        parse_protocol(data)


def test_the_cited_correlation_table_of_the_docs_is_fresh():
    from cartwin.docs import with_correlations
    from tests.conftest import ROOT

    text = (ROOT / "docs" / "protocol.md").read_text()
    assert with_correlations(text) == text, "docs/protocol.md is stale: run `python -m cartwin.docs`"
