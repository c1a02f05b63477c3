"""The report's numbers are the endpoints' own: its DuckDB aggregation of the per-patient endpoint
values equals ``cartwin.endpoints.summarise`` over the same score parts."""

from __future__ import annotations

import json
import math

import polars as pl

from cartwin import endpoints


def test_report_aggregates_equal_endpoints_summarise(reported_twin):
    run_dir, _, _ = reported_twin
    data = json.loads((run_dir / "report" / "endpoints.json").read_text())
    frame = pl.read_parquet(run_dir / "report" / "scores" / "patients" / "*.parquet")
    summary = endpoints.summarise(frame, by="arm")
    table = endpoints.definitions()
    checked = 0
    for row in summary.iter_rows(named=True):
        e = table.endpoint(row["endpoint"])
        if not e.report:
            assert e.key not in data["binary"] and e.key not in data["time_to_event"]
            continue
        if e.type == "binary":
            cell = data["binary"][e.key][row["arm"]]
            assert (cell["k"], cell["n"]) == (row["k"], row["n"]), e.key
            if row["n"]:
                assert math.isclose(cell["lower"], row["lower"]) and math.isclose(cell["upper"], row["upper"])
        elif e.type == "continuous":
            cell = data["continuous"][e.key][row["arm"]]
            assert cell["n"] == row["n"] and math.isclose(cell["median"], row["estimate"]), e.key
            assert math.isclose(cell["q25"], row["q25"]) and math.isclose(cell["q75"], row["q75"]), e.key
        else:
            cell = data["time_to_event"][e.key][row["arm"]]
            for name in ("n", "events", "censored", "estimate", "lower", "upper"):
                assert cell[name] == row[name], (e.key, name)
        checked += 1
    assert checked == len(data["arms"]) * sum(1 for e in table.endpoints if e.report)
    assert data["endpoint_table"] == table.version
