"""The report of a run with replicate trials and withdrawal: the replicate table and the
non-responder imputation, on a case whose answer is known by hand."""

from __future__ import annotations

import json
import tomllib

import polars as pl

from tests.report.conftest import ROOT


def _protocol(tmp_path, **sections) -> object:
    import tomli_w

    from cartwin.protocol import load_protocol

    protocol = tomllib.loads((ROOT / "examples" / "nct05988216.toml").read_text())
    protocol["population"]["patients"] = protocol["population"]["patients"][:2]
    protocol.update(sections)
    path = tmp_path / "p.toml"
    path.write_text(tomli_w.dumps(protocol))
    return load_protocol(path)


def test_everyone_withdrawn_on_day_0_is_a_non_responder_in_the_denominator(tmp_path):
    from cartwin.report import write_report
    from cartwin.run import run_protocol

    # hazard 10/day from day 0 over the 1-day gap to the next visit: every patient withdraws on day 0
    # (probability 1 - exp(-10) each), so no SLEDAI visit after infusion remains. Without imputation
    # remission by month 3 would be not evaluable (0 of 0); with it, 0 of every patient.
    loaded = _protocol(tmp_path, uncertainty={"replicates": 2, "se_log": {"RHO": 0.2}, "se_source": "assumed: test"},
                       conduct={"dropout": [{"reason": "toxicity", "hazard_per_day": 10.0}]})
    out = tmp_path / "run"
    run_protocol(loaded, out, workers=1)
    patients = pl.read_parquet(out / "patients.parquet")
    assert patients["withdrawn_day"].to_list() == [0.0] * 4
    assert patients["replicate"].to_list() == [1, 1, 2, 2]
    html = write_report(out, workers=1)
    endpoints = json.loads((html.parent / "endpoints.json").read_text())
    cell = endpoints["binary"]["remission_m3"]["tyu19"]
    assert (cell["k"], cell["n"]) == (0, 4)
    per_replicate = {r["endpoint"]: r for r in endpoints["replicates"]["endpoints"]}["remission_m3"]
    assert [(r["k"], r["n"]) for r in per_replicate["per_replicate"]] == [(0, 2), (0, 2)]
    missing = endpoints["missing_data"]["arms"]["tyu19"]
    assert missing["withdrawn"] == 4 and missing["by_reason"] == {"toxicity": 4}
    text = html.read_text()
    assert "Uncertainty across 2 replicate trials" in text and "non-responder" in text

