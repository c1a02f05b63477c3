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
    assert cartwin.write_report(tmp_path / "run").name == "report.html"


def test_run_needs_the_protocol_text(protocol_dict, tmp_path):
    from cartwin.protocol import parse_protocol
    with pytest.raises(TypeError, match="keeps the protocol's text"):
        cartwin.run_trial(parse_protocol(protocol_dict), tmp_path / "run")
