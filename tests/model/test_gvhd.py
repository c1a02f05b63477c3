"""GvHD follows the TCR: TRAC knockout removes the donor alpha-beta TCR, the GvHD driver.

Evidence: no GvHD with TRAC-knocked-out TyU19 (Cell Research 2025; Wang X 2024, Cell) or UCART19
(Dupouy 2022); acute GvHD in 1 of 13 recipients of donor-derived, unedited CD19 CAR-T
(Blood 2023;142:146). The model has no quantitative GvHD evidence behind it beyond that
contrast (docs/model.md), so the test checks the contrast, with a wide band for the minority.
"""

import numpy as np
import polars as pl
import pytest

from cartwin.protocol import parse_protocol
from cartwin.run import simulate
from tests.model.conftest import cohort_protocol

pytestmark = pytest.mark.cohort


def test_trac_knockout_products_never_cause_gvhd(cohort_runs):
    for arm, run in cohort_runs.items():
        skin = run.obs["GVHD_SKIN"]
        assert np.nanmax(skin) == 0.0, arm


def test_unedited_donor_cells_cause_gvhd_in_a_minority():
    """Tolerance: 2-25% of 150 patients (1/13 = 8% observed; 95% CI of 1/13 is 0.2-36%)."""
    protocol = cohort_protocol()
    protocol["products"] = {"donor_unedited": {"allogeneic": True, "edits": [],
                                               "description": "donor-derived CD19 CAR-T, no edits"}}
    protocol["arms"] = [{"id": "donor", "product": "donor_unedited", "dose": {"cells_per_kg": 1e6},
                         "lymphodepletion": "standard", "n": 150}]
    protocol["schedule"] = {"every": 2, "start": 0, "stop": 120}
    protocol["follow_up_days"] = 120
    sim = simulate(parse_protocol(protocol), workers=2)
    peak = (sim.observations.filter(pl.col("test") == "GVHD_SKIN")
            .group_by("subject").agg(pl.col("value").max().alias("peak")))
    fraction = float((peak["peak"] > 0).mean())
    assert 0.02 <= fraction <= 0.25, fraction
