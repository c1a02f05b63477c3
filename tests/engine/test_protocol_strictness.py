"""No silent coercion: a protocol value of the wrong type, NaN or infinity, a truncation that
cannot be honoured, a variability that is negative, or a size that would take unbounded work is
refused before anything runs, with every problem named at once (schema and meaning together)."""

import time

import pytest

from cartwin.protocol import ProtocolError, parse_protocol

NAN, INF = float("nan"), float("inf")


def errors_of(data) -> str:
    with pytest.raises(ProtocolError) as exc:
        parse_protocol(data, "trial.toml")
    return str(exc.value)


def _set(path: str, value):
    def mutate(d):
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        target = d
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value
    return mutate


@pytest.mark.parametrize("path, value, field", [
    ("arms.0.n", "5", "arms[0].n"),
    ("arms.0.n", True, "arms[0].n"),
    ("arms.0.n", 5.0, "arms[0].n"),
    ("seed", True, "seed"),
    ("seed", "7", "seed"),
    ("follow_up_days", "120", "follow_up_days"),
    ("schedule.days", [0, True, 7], "schedule.days[1]"),
    ("schedule.days", [0, "7"], "schedule.days[1]"),
    ("population.sex.female", "0.9", "population.sex.female"),
    ("population.height.mean", False, "population.height.mean"),
])
def test_values_of_another_type_are_refused_not_converted(protocol_dict, path, value, field):
    _set(path, value)(protocol_dict)
    msg = errors_of(protocol_dict)
    assert f"{field}:" in msg, msg


def test_a_product_flag_of_another_type_is_refused(protocol_dict):
    protocol_dict["products"] = {"mine": {"allogeneic": "no"}}
    assert "products.mine.allogeneic:" in errors_of(protocol_dict)


@pytest.mark.parametrize("path, value", [
    ("follow_up_days", NAN), ("follow_up_days", INF), ("schedule.days", [0, NAN]),
    ("population.height.mean", NAN), ("population.height.sd", INF), ("population.weight.high", INF),
    ("population.age.low", -INF), ("arms.0.dose", {"cells_per_kg": NAN}),
    ("population.disease.descriptors", {"rash": NAN}),
])
def test_nan_and_infinity_are_refused_everywhere(protocol_dict, path, value):
    _set(path, value)(protocol_dict)
    msg = errors_of(protocol_dict)
    assert "finite" in msg or "range" in msg or "[0, 1]" in msg, msg


def test_model_variability_must_be_a_finite_non_negative_sd(protocol_dict):
    from cartwin.model import MODELS
    name = next(p.name for p in MODELS["lupus_cart"].parameters if p.iiv > 0)
    for bad in (-0.2, NAN, INF):
        protocol_dict["model_variability"] = {name: bad}
        assert f"model_variability.{name}:" in errors_of(protocol_dict)


@pytest.mark.parametrize("block", [
    {"dist": "normal", "mean": 165, "sd": 7, "low": 180, "high": 170},
    {"dist": "lognormal", "median": 165, "cv": 0.1, "low": 180, "high": 170},
])
def test_truncation_bounds_in_the_wrong_order_are_refused(protocol_dict, block):
    protocol_dict["population"]["height"] = block
    assert "population.height" in errors_of(protocol_dict)


def test_a_truncation_the_distribution_cannot_reach_is_refused(protocol_dict):
    # low 200 cm with sd 0.001 around 165: no probability inside the bounds; drawing from it
    # gave infinite heights
    protocol_dict["population"]["height"] = {"dist": "normal", "mean": 165, "sd": 0.001, "low": 200}
    msg = errors_of(protocol_dict)
    assert "population.height" in msg and "probability" in msg, msg


def test_the_drawn_population_stays_finite_at_the_edge_of_what_is_accepted(protocol_dict):
    import numpy as np
    from cartwin.model import MODELS
    from cartwin.population.virtual import generate
    protocol_dict["population"]["height"] = {"dist": "normal", "mean": 165, "sd": 5, "low": 188}
    p = parse_protocol(protocol_dict)  # 4.6 sd out: a probability of about 2e-6, still accepted
    model = MODELS["lupus_cart"]
    drawn = generate(model, p.population, "auto", np.arange(200), p.seed,
                     np.array([q.value for q in model.parameters]))
    height = drawn.covariates["HT"]
    assert np.isfinite(height).all() and height.min() >= 188 and height.max() < 200


@pytest.mark.parametrize("mutate, field", [
    (_set("arms.0.n", 10**12), "arms[0].n"),
    (_set("schedule", {"every": 1e-9, "start": 0, "stop": 120}), "schedule"),
    (_set("schedule", {"every": 1, "start": 0, "stop": INF}), "schedule.stop"),
    (_set("schedule", {"every": 1, "start": NAN, "stop": 100}), "schedule.start"),
    (_set("schedule", {"every": 1, "start": 50, "stop": 10}), "schedule"),
])
def test_sizes_are_bounded_before_anything_runs(protocol_dict, mutate, field):
    mutate(protocol_dict)
    start = time.perf_counter()
    msg = errors_of(protocol_dict)
    assert time.perf_counter() - start < 2.0
    assert f"{field}" in msg, msg


def test_schema_errors_do_not_hide_the_checks_of_meaning(protocol_dict):
    protocol_dict["seed"] = "seven"                                # a schema problem
    protocol_dict["arms"][0]["dose"] = {"cells_per_kg": 1e12}      # a plausibility problem
    protocol_dict["population"]["height"]["mean"] = 400           # a physiologic-range problem
    msg = errors_of(protocol_dict)
    assert "seed:" in msg
    assert "arms[0] (auto).dose.cells_per_kg" in msg
    assert "population.height.mean" in msg


def test_an_enormous_spread_is_refused_not_an_overflow(protocol_dict):
    # found by tests/fuzz: cv = 1e308 overflowed (OverflowError) while checking the truncation
    protocol_dict["population"]["disease"]["dsdna"]["distribution"]["cv"] = 1e308
    assert "population.disease.dsdna.distribution.cv" in errors_of(protocol_dict)


def test_schema_errors_do_not_hide_the_schedule_or_the_other_cross_field_checks(protocol_dict):
    """One run of `cartwin validate` lists every problem: a schema error elsewhere must not hide
    the schedule against the follow-up or any other check of meaning on the fields that parsed."""
    protocol_dict["seed"] = "seven"                                            # schema
    protocol_dict["follow_up_days"] = 100
    protocol_dict["schedule"] = {"days": [-40, 0, 7, 200]}                      # past follow-up, too early
    protocol_dict["arms"][0]["product"] = "autologous_cd91"                    # unknown product
    protocol_dict["arms"][1]["lymphodepletion"] = "erlangenn"                  # unknown regimen
    protocol_dict["arms"].append({**protocol_dict["arms"][0], "product": "tyu19"})  # arm id used twice
    protocol_dict["arms"].append({"id": "bad", "n": "5"})                      # schema, in one arm
    protocol_dict["model_variability"] = {"NOT_A_PARAMETER": 0.1}
    msg = errors_of(protocol_dict)
    assert "seed:" in msg
    assert "arms[3].n:" in msg
    assert "schedule: days [200.0] lie after follow_up_days = 100; extend the follow-up or drop those days" in msg
    assert "schedule: days [-40.0] lie before day -30" in msg
    assert "arms[0] (auto).product: unknown product 'autologous_cd91'" in msg
    assert "arms[1] (tyu19).lymphodepletion: unknown regimen 'erlangenn'" in msg
    assert "arms: arm id 'auto' is used twice" in msg
    assert "model_variability: unknown parameters ['NOT_A_PARAMETER']" in msg


def test_a_schedule_is_checked_against_the_follow_up_even_when_other_blocks_fail(protocol_dict):
    protocol_dict["population"]["sex"]["female"] = "0.9"
    protocol_dict["schedule"] = {"every": 7, "start": 0, "stop": 140}
    msg = errors_of(protocol_dict)
    assert "population.sex.female:" in msg
    assert "schedule: days [126.0, 133.0, 140.0] lie after follow_up_days = 120" in msg


def test_only_the_checks_whose_fields_parsed_are_run(protocol_dict):
    """A failed follow_up_days cannot be compared with the schedule: its own error is the only
    one about it, with no second message built on a guess."""
    protocol_dict["follow_up_days"] = "120"
    protocol_dict["arms"][0]["product"] = "autologous_cd91"
    msg = errors_of(protocol_dict)
    assert "follow_up_days:" in msg
    assert "lie after follow_up_days" not in msg
    assert "arms[0] (auto).product: unknown product" in msg


def test_rule_arms_are_checked_beside_schema_errors(protocol_dict):
    protocol_dict["seed"] = -1
    protocol_dict["rules"] = [{"id": "toci", "when": [{"test": "CRS_GRADE", "at_least": 2}],
                               "give": {"drug": "tocilizumab", "mg_per_kg": 8}, "arms": ["nope"]}]
    msg = errors_of(protocol_dict)
    assert "seed:" in msg
    assert "unknown arms ['nope']" in msg
