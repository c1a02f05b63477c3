"""A run with the observation model on: true and observed values in the run directory, BLQ flags,
the same numbers whatever the chunking, scoring of the reported values, and the NONMEM export's
LLOQ/BLQ/CENS columns."""

from __future__ import annotations

import copy

import numpy as np
import polars as pl
import pytest

from cartwin.protocol import load_protocol
from cartwin.run import run_protocol
from cartwin.store import layout, open_run

from tests.conftest import BASE_PROTOCOL, write_protocol

OUTPUTS = ["CART", "BCELL", "WBC", "DSDNA", "C3"]


def _protocol(enabled: bool) -> dict:
    p = copy.deepcopy(BASE_PROTOCOL)
    p["arms"][0]["n"], p["arms"][1]["n"] = 3, 2
    p["outputs"] = OUTPUTS
    p["schedule"] = {"days": [-6, 0, 3, 7, 14, 28, 56, 90, 120]}
    if enabled:
        p["observation_model"] = {"enabled": True}
    return p


def _run(tmp, name: str, enabled: bool, chunk_size: int | None = None):
    path = write_protocol(tmp / f"{name}.toml", _protocol(enabled))
    out = tmp / name
    assert run_protocol(load_protocol(path), out, workers=1, chunk_size=chunk_size).n_failed == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("observation-runs")
    return {"on": _run(tmp, "on", True), "on_chunk1": _run(tmp, "on1", True, chunk_size=1),
            "off": _run(tmp, "off", False)}


def _obs(run_dir) -> pl.DataFrame:
    return (open_run(run_dir).observations().collect()
            .with_columns(pl.col("test").cast(pl.String), pl.col("arm").cast(pl.String))
            .sort("subject", "day", "test"))


def test_the_true_value_is_the_noise_free_run_and_value_is_observed(runs):
    on, off = _obs(runs["on"]), _obs(runs["off"])
    assert set(layout.OBSERVATION_MODEL_COLUMNS) <= set(on.columns)
    assert not set(layout.OBSERVATION_MODEL_COLUMNS) & set(off.columns)  # off: the table as before
    # CARTQ is derived (CART and WBC are stored); every other row matches the noise-free run
    assert set(on["test"].unique()) == set(OUTPUTS) | {"CARTQ"}
    same = on.filter(pl.col("test") != "CARTQ")
    assert same.select("subject", "day", "test").equals(off.select("subject", "day", "test"))
    np.testing.assert_array_equal(same[layout.OBSERVATION_TRUE_VALUE].to_numpy(), off["value"].to_numpy())
    noisy = same.filter(pl.col("test").is_in(["CART", "BCELL", "DSDNA"]) & (pl.col("true_value") > 0))
    assert (noisy["value"] != noisy["true_value"]).all()
    plain = same.filter(pl.col("test").is_in(["WBC", "C3"]))  # no error model declared
    assert plain["value"].equals(plain["true_value"]) and plain["lloq"].is_null().all()


def test_blq_is_flagged_exactly_when_the_observed_value_is_below_the_lloq(runs):
    on = _obs(runs["on"])
    expected = (pl.col("value") < pl.col("lloq")).fill_null(False)
    assert on.select((pl.col("blq") == expected).all()).item()
    # pre-infusion CAR-T cells are 0: below the flow cytometry limit of 1 cell/uL
    pre = on.filter((pl.col("test") == "CART") & (pl.col("day") < 0))
    assert pre["blq"].all() and (pre["lloq"] == 1.0).all()


def test_observed_values_do_not_depend_on_chunking(runs):
    assert _obs(runs["on"]).equals(_obs(runs["on_chunk1"]))


def test_the_dictionary_describes_the_new_columns(runs):
    import json
    columns = json.loads((runs["on"] / layout.DICTIONARY).read_text())["observations"]
    assert {"true_value", "lloq", "blq"} <= set(columns)


def test_scoring_reads_values_below_the_limit_as_reported(runs):
    from cartwin.io.observations import read_observations
    scored = read_observations(runs["on"]).frame.sort("subject", "day", "test")
    on = _obs(runs["on"])
    joined = scored.join(on.select("subject", "day", "test", "blq", pl.col("value").alias("observed"), "lloq"),
                         on=["subject", "day", "test"])
    blq = joined.filter(pl.col("blq"))
    assert blq.height > 0 and (blq["value"] == 0.0).all()
    quantified = joined.filter(~pl.col("blq"))
    np.testing.assert_array_equal(quantified["value"].to_numpy(), quantified["observed"].to_numpy())
    cart = joined.filter(pl.col("test") == "CART")
    assert (cart["lower"] == cart["lloq"]).all()  # the detection limit of the CAR-T kinetics


def test_nonmem_export_carries_lloq_blq_and_cens(runs, tmp_path):
    from cartwin.io.nonmem import export_nonmem, read_nonmem
    result = export_nonmem(runs["on"], tmp_path / "nm.csv")
    data = pl.read_csv(result.data, null_values=".")
    assert {"LLOQ", "BLQ", "CENS"} <= set(data.columns)
    obs = data.filter(pl.col("EVID") == 0)
    assert (obs["BLQ"] == obs["CENS"]).all() and obs["BLQ"].sum() > 0
    below = obs.filter(pl.col("BLQ") == 1)
    assert (below["DV"] == below["LLOQ"]).all()  # M3 layout: DV holds the limit
    on = _obs(runs["on"])
    # CAR-T (cells and transgene copies) before the infusion are absent by construction: not
    # observations in the export (MDV 1), so not censored observations either
    pre_infusion = pl.col("test").is_in(["CART", "CARTQ"]) & (pl.col("day") <= 0)
    assert below.height == on.filter(pl.col("blq") & ~pre_infusion).height
    assert data.filter(pl.col("EVID") == 1).select(pl.col("LLOQ").is_null().all(), (pl.col("BLQ") == 0).all()).row(0) == (True, True)
    back = read_nonmem(result.data).observations
    assert back.filter(pl.col("blq")).height == below.height
    # a run without the observation model: the columns exist, nothing is censored
    off = pl.read_csv(export_nonmem(runs["off"], tmp_path / "off.csv").data, null_values=".")
    assert off["LLOQ"].is_null().all() and off["BLQ"].sum() == 0 and off["CENS"].sum() == 0


def test_the_report_scores_the_same_reported_values_as_cartwin_score(runs):
    from cartwin.clinical import score_observations
    from cartwin.endpoints.scoring import score_run
    from cartwin.io.observations import read_observations
    from cartwin.store.run_directory import RunDirectory
    score_run(runs["on"], workers=1)
    rundir = RunDirectory(runs["on"])
    report = pl.concat([pl.read_parquet(rundir.score_part("patients", name))
                        for name in rundir.score_parts("patients")]).sort("subject")
    direct = score_observations(read_observations(runs["on"]))["patients"].sort("subject")
    for column in ("cart_auc_0_28", "cart_last_detectable_day", "cart_detection_limit", "bcell_aplasia_onset_day"):
        assert report[column].to_list() == direct[column].to_list(), column
    assert (report["cart_detection_limit"] == 1.0).all()  # the flow cytometry LLOQ


def test_the_manifest_records_the_observation_model(runs):
    from cartwin.observation import table_sha256
    assert open_run(runs["on"]).manifest()["observation_model"] == {
        "enabled": True, "name": "cartwin observation model", "version": "1", "sha256": table_sha256(),
        "tests": ["BCELL", "CART", "CARTQ", "DSDNA"]}
    assert open_run(runs["off"]).manifest()["observation_model"] == {"enabled": False}
