"""Target antigens are mechanism: a product declares what its CAR recognises, and a
BCMA-directed CAR reaches the CD19- BCMA+ plasma cells that a CD19 CAR cannot (Mei 2012;
BCMA-CD19 compound CAR in SLE: autoantibodies of long-lived plasma cells gone by month 3, Wang W
2024 Ann Rheum Dis 83:1304; BCMA CAR-T: marrow BCMA+ cells undetectable by a median day 28,
Blood Adv 2021;5:5290), and the autoreactive activated/memory B cells that carry BCMA in SLE
(more than naive B cells: Int J Mol Sci 2024;25:10845)."""

import numpy as np
import pytest

import lupus_virtual as lv
from cartwin.protocol import ProtocolError, parse_protocol
from cartwin.therapy.arm import resolve_arm
from cartwin.therapy.products import PRODUCTS

DAYS = np.arange(-6.0, 181.0)


def at(run, values, day):
    return values[0, int(np.searchsorted(run.days, day))]


def test_products_set_their_targets():
    assert PRODUCTS["tyu19"].mechanism_parameters()["TGT_CD19"] == 1.0
    assert PRODUCTS["tyu19"].mechanism_parameters()["TGT_BCMA"] == 0.0
    both = PRODUCTS["bcma_cd19_ccar"].mechanism_parameters()
    assert (both["TGT_CD19"], both["TGT_BCMA"]) == (1.0, 1.0)
    bcma = PRODUCTS["bcma_car"].mechanism_parameters()
    assert (bcma["TGT_CD19"], bcma["TGT_BCMA"]) == (0.0, 1.0)


def test_a_protocol_product_declares_targets_and_unknown_ones_are_named(protocol_dict):
    protocol_dict["products"] = {"dual": {"allogeneic": False, "targets": ["CD19", "BCMA"]}}
    protocol_dict["arms"][0]["product"] = "dual"
    p = parse_protocol(protocol_dict)
    assert resolve_arm(p, p.arms[0]).product.targets == {"CD19", "BCMA"}
    protocol_dict["products"]["dual"]["targets"] = ["CD20"]
    with pytest.raises(ProtocolError, match=r"products\.dual\.targets"):
        parse_protocol(protocol_dict)


def test_bcma_directed_cars_reach_cd19_negative_plasma_cells():
    """Long-lived (CD19-) plasma cells: kept after a CD19 CAR, gone by day 90 after a BCMA or a
    BCMA-CD19 compound CAR; anti-dsDNA falls further with the compound CAR, whose BCMA arm
    removes the long-lived share."""
    cd19 = lv.typical("autologous_cd19", "erlangen", days=DAYS)
    dual = lv.typical("bcma_cd19_ccar", "erlangen", days=DAYS, dose_per_kg=3e6)
    bcma = lv.typical("bcma_car", "erlangen", days=DAYS, dose_per_kg=3e6)
    assert all(r.ok[0] for r in (cd19, dual, bcma))
    ll0 = cd19.state("LL")[0, 0]
    assert at(cd19, cd19.state("LL"), 90) >= 0.85 * ll0
    assert at(dual, dual.state("LL"), 90) <= 0.1 * ll0
    assert at(bcma, bcma.state("LL"), 90) <= 0.1 * ll0
    assert at(dual, dual.obs["DSDNA"], 90) < at(cd19, cd19.obs["DSDNA"], 90)


def test_only_cd19_directed_cars_make_b_cell_aplasia():
    """B cells (CD19+; the naive and non-autoreactive ones BCMA-) are killed by a CD19 CAR, not by
    a BCMA-only CAR (which leaves them to lymphodepletion)."""
    dual = lv.typical("bcma_cd19_ccar", "erlangen", days=DAYS, dose_per_kg=3e6)
    bcma = lv.typical("bcma_car", "erlangen", days=DAYS, dose_per_kg=3e6)
    assert at(dual, dual.obs["BCELL"], 28) < lv.B_APLASIA_BELOW
    assert at(bcma, bcma.obs["BCELL"], 28) > 10 * lv.B_APLASIA_BELOW


def test_a_bcma_only_car_ends_the_disease_through_the_autoreactive_b_pool():
    """A BCMA-only CAR kills the BCMA+ autoreactive activated/memory B cells (THETA_BA) as well
    as the plasma cells: the pool and its T-cell help fade and SLEDAI-2K falls to 0 by month 6.
    A CAR that reached the plasma cells alone (THETA_BA = 0) would leave the pool, whose
    plasmablasts bring anti-dsDNA and the disease back once the CAR-T contract."""
    bcma = lv.typical("bcma_car", "standard", days=DAYS)
    plasma_only = lv.typical("bcma_car", "standard", days=DAYS, overrides={"THETA_BA": 0.0})
    assert bcma.ok[0] and plasma_only.ok[0]
    ba0 = bcma.state("BA")[0, 0]
    assert at(bcma, bcma.state("BA"), 28) < 0.01 * ba0
    assert at(bcma, bcma.state("AH"), 90) < 0.1
    assert lv.sledai(bcma, 180)[0] == 0
    assert at(plasma_only, plasma_only.state("BA"), 28) > 0.2 * ba0
    assert at(plasma_only, plasma_only.obs["DSDNA"], 180) > 0.3 * at(plasma_only, plasma_only.obs["DSDNA"], -6)
    assert lv.sledai(plasma_only, 180)[0] >= 0.75 * lv.sledai(plasma_only, -6)[0]


def test_the_bcma_share_of_the_autoreactive_pool_leaves_cd19_directed_cars_unchanged():
    """A CD19 CAR already kills every autoreactive B cell, and a compound CAR counts them once in
    its antigen: THETA_BA changes neither."""
    for product, dose in (("autologous_cd19", 1e6), ("bcma_cd19_ccar", 3e6)):
        runs = [lv.typical(product, "erlangen", days=DAYS, dose_per_kg=dose, overrides={"THETA_BA": theta})
                for theta in (0.0, 1.0)]
        for test in ("CART", "BCELL", "DSDNA", "IL6"):
            np.testing.assert_array_equal(runs[0].obs[test], runs[1].obs[test], err_msg=f"{product} {test}")
