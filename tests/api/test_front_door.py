"""The Python front door: `import cartwin` gives the verbs a notebook needs, and each does what
the matching CLI command does."""

import polars as pl
import pytest

import cartwin
from tests.conftest import write_protocol


def test_the_verbs_run_end_to_end(tmp_path, protocol_dict):
    protocol_dict["arms"][0]["n"] = 2
    protocol_dict["arms"][1]["n"] = 2
    loaded = cartwin.load_protocol(write_protocol(tmp_path / "p.toml", protocol_dict))
    sim = cartwin.simulate_trial(loaded, n=2)
    assert sim.patients.height == 4 and set(sim.observations["test"]) >= {"CART", "BCELL"}

    summary = cartwin.run_trial(loaded, tmp_path / "run", n=2, workers=1)
    assert summary.n_total == 4
    results = cartwin.open_run(tmp_path / "run")
    # the same patients, whether simulated in memory or read back from the run directory
    stored = results.observations(tests=["CART"]).collect().sort("subject", "day")
    mem = sim.observations.filter(pl.col("test") == "CART").sort("subject", "day")
    assert stored["value"].to_list() == mem["value"].to_list()

    scores = cartwin.score(tmp_path / "run")
    assert set(scores["patients"]["subject"]) == set(sim.patients["subject"])
    assert scores["endpoints"]["subject"].to_list() == scores["patients"]["subject"].to_list()
    assert cartwin.write_report(tmp_path / "run").name == "report.html"


def test_run_needs_the_protocol_text(protocol_dict, tmp_path):
    from cartwin.protocol import parse_protocol
    with pytest.raises(TypeError, match="keeps the protocol's text"):
        cartwin.run_trial(parse_protocol(protocol_dict), tmp_path / "run")


@pytest.mark.parametrize("options, error, message", [
    ({"n": 0}, ValueError, r"n \(patients per arm\): 0 is not from 1 to 1,000,000, as `cartwin run --n`"),
    ({"n": 2.5}, TypeError, r"n \(patients per arm\): give a whole number .* got float 2.5"),
    ({"n": "3"}, TypeError, r"n \(patients per arm\): give a whole number .* got str '3'"),
    ({"seed": "a"}, TypeError, r"seed: give a whole number \(int\) at least 0, .* got str 'a'"),
    ({"seed": -1}, ValueError, r"seed: -1 is not at least 0"),
    ({"workers": 0}, ValueError, r"workers \(worker processes\): 0 is not at least 1"),
])
def test_options_are_checked_as_the_command_line_checks_them_never_coerced(tmp_path, protocol_dict, options,
                                                                           error, message):
    """n=0 ended in a bare pyarrow error and n=2.5 or n='3' were silently made whole numbers."""
    loaded = cartwin.load_protocol(write_protocol(tmp_path / "p.toml", protocol_dict))
    with pytest.raises(error, match=message):
        cartwin.simulate_trial(loaded, **options)
    with pytest.raises(error, match=message):
        cartwin.run_trial(loaded, tmp_path / "run", **options)
    assert not (tmp_path / "run").exists()


def test_a_wrong_kind_of_argument_is_named(tmp_path):
    """A number for a path, or a list for observations, named the argument, not pathlib's internals."""
    with pytest.raises(TypeError, match=r"protocol: give a path \(str or pathlib.Path\), not int 3"):
        cartwin.load_protocol(3)
    with pytest.raises(TypeError, match=r"path: give a path"):
        cartwin.open_run(5)
    with pytest.raises(TypeError, match=r"run_dir: give a path"):
        cartwin.write_report(None)
    with pytest.raises(TypeError, match=r"observations: give a polars DataFrame .* not list"):
        cartwin.score([1, 2])
