"""``observations_from_simulation`` (the in-stream scoring's check of the simulator's own frames, by
column) returns exactly the frame and flags of ``observations_from_frame`` (row by row), and leaves
every frame that is not as the simulator writes it, or has any problem, to the row-by-row checks:
the same error or the same flags."""

import numpy as np
import polars as pl
import pytest

from cartwin.clinical import ObservationError, observations_from_frame, observations_from_simulation
from cartwin.clinical.observations import _simulated_frame

TESTS = [("CART", "cells/uL"), ("BCELL", "cells/uL"), ("NEUT", "10^9/L"), ("C3", "g/L"), ("PGA", "points")]


def _simulated(n_subjects=4, days=(0.0, 1.0, 2.5, 7.0), lower=True):
    rng = np.random.default_rng(7)
    rows = [(f"arm_a-{s:06d}", d, t, u) for s in range(1, n_subjects + 1) for d in days for t, u in TESTS]
    values = rng.uniform(0.0, 2.5, size=len(rows))
    values[::7] = 0.0
    values[3::11] = -0.0  # a negative zero: validate's value x 1 + 0 makes it 0.0
    frame = pl.DataFrame({"subject": [r[0] for r in rows], "arm": ["arm_a"] * len(rows),
                          "day": [r[1] for r in rows], "test": [r[2] for r in rows], "value": values,
                          "unit": [r[3] for r in rows]})
    frame = frame.with_columns(pl.col("arm", "test", "unit").cast(pl.Categorical))
    if lower:
        frame = frame.with_columns(pl.when(pl.col("test") == "CART").then(0.2).otherwise(None)
                                   .cast(pl.Float64).alias("lower"))
    return frame


def _bits(frame):
    return [frame[c].to_numpy().view("u8").tolist() if frame[c].dtype == pl.Float64 and not frame[c].null_count()
            else frame[c].to_list() for c in frame.columns]


@pytest.mark.parametrize("first_day", [0.0, -0.0], ids=["day-0", "day-minus-0"])
@pytest.mark.parametrize("lower", [True, False])
def test_simulated_frame_is_the_validated_frame_to_the_bit(lower, first_day):
    """Both give the same frame, bit for bit; a day -0.0 is day 0.0 in both."""
    raw = _simulated(lower=lower, days=(first_day, 1.0, 2.5, 7.0))
    assert _simulated_frame(raw, "run") is not None  # the column checks took it
    fast, full = observations_from_simulation(raw, "run"), observations_from_frame(raw, "run")
    assert not np.signbit(full.frame["day"].to_numpy()).any()
    assert fast.frame.schema == full.frame.schema
    assert fast.frame.equals(full.frame) and _bits(fast.frame) == _bits(full.frame)
    assert fast.flags.equals(full.flags) and fast.source == full.source


def _problems():
    raw = _simulated()
    yield "duplicated row", pl.concat([raw, raw.slice(3, 1)])
    yield "duplicated row, days not ascending", pl.concat([raw.slice(0, 6), raw.slice(0, 1), raw.slice(6)])
    yield "subject split", pl.concat([raw.slice(0, 5), raw.slice(30, 10), raw.slice(5, 25), raw.slice(40)])
    yield "value out of range", raw.with_columns(pl.when(pl.col("test") == "PGA").then(9.0).otherwise(pl.col("value")).alias("value"))
    yield "missing value", raw.with_columns(pl.when(pl.int_range(pl.len()) == 4).then(None).otherwise(pl.col("value")).alias("value"))
    yield "NaN value", raw.with_columns(pl.when(pl.int_range(pl.len()) == 4).then(float("nan")).otherwise(pl.col("value")).alias("value"))
    yield "infinite day", raw.with_columns(pl.when(pl.int_range(pl.len()) == 9).then(float("inf")).otherwise(pl.col("day")).alias("day"))
    yield "negative limit", raw.with_columns(pl.when(pl.col("lower").is_not_null()).then(-1.0).otherwise(None).alias("lower"))
    yield "unknown unit", raw.with_columns(pl.col("unit").cast(pl.String).replace("g/L", "mg/dL").cast(pl.Categorical))
    yield "unknown test", raw.with_columns(pl.col("test").cast(pl.String).replace("C3", "C3X").cast(pl.Categorical))
    yield "padded subject", raw.with_columns(pl.col("subject") + " ")
    yield "empty subject", raw.with_columns(pl.when(pl.col("subject") == "arm_a-000002").then(pl.lit("")).otherwise(pl.col("subject")).alias("subject"))
    yield "text test column", raw.with_columns(pl.col("test").cast(pl.String))
    dsdna = raw.filter(pl.col("test") == "C3").with_columns(
        pl.lit("DSDNA").cast(pl.Categorical).alias("test"), pl.lit("U/mL").cast(pl.Categorical).alias("unit"),
        pl.lit(5.0).alias("upper"))
    yield "anti-dsDNA in an assay unit, judged against its cut-off", pl.concat(
        [raw.with_columns(pl.lit(None, pl.Float64).alias("upper")), dsdna]).sort("subject", "day", maintain_order=True)
    yield "extra column", raw.with_columns(pl.lit("sle").alias("cause"))


@pytest.mark.parametrize("name,raw", list(_problems()), ids=[p[0] for p in _problems()])
def test_frames_not_as_the_simulator_writes_them_get_the_row_checks(name, raw):
    assert _simulated_frame(raw, "run") is None
    try:
        full = observations_from_frame(raw, "run")
    except ObservationError as error:
        with pytest.raises(ObservationError) as fast_error:
            observations_from_simulation(raw, "run")
        assert str(fast_error.value) == str(error)
        return
    fast = observations_from_simulation(raw, "run")
    assert fast.frame.equals(full.frame) and fast.flags.equals(full.flags)
