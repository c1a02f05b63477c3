"""Body size, renal function and doses against hand-computed values."""

import math

import numpy as np
import pytest

from cartwin.protocol import parse_protocol
from cartwin.therapy.arm import resolve_arm
from cartwin.body import (CREATININE_UMOL_PER_MG_DL, bsa_dubois, bsa_mosteller, creatinine_mg_dl, creatinine_umol_l,
                          crcl_cockcroft_gault, egfr_ckd_epi_2021)
from cartwin.therapy.dosing import fludarabine_renal_factor
from cartwin.therapy.products import PRODUCTS


def test_bsa_mosteller_hand_values():
    # sqrt(170 * 70 / 3600) = sqrt(3.30556) = 1.81812
    assert bsa_mosteller(170, 70) == pytest.approx(1.818119, abs=1e-6)
    # sqrt(160 * 50 / 3600) = sqrt(2.22222) = 1.490712
    assert bsa_mosteller(160, 50) == pytest.approx(1.490712, abs=1e-6)


def test_cockcroft_gault_hand_values():
    # man, 40 y, 80 kg, creatinine 1.0 mg/dL: (140-40)*80/(72*1.0) = 111.111 mL/min
    assert crcl_cockcroft_gault(40, 80, 88.42, False) == pytest.approx(111.111, abs=1e-3)
    # woman, 22 y, 55 kg, 60 umol/L = 0.678579 mg/dL: 6490 / 48.8577 = 132.835; x 0.85 = 112.910
    assert crcl_cockcroft_gault(22, 55, 60, True) == pytest.approx(112.9095, abs=1e-3)


def test_creatinine_conversion_constant():
    # creatinine MW 113.12 g/mol: 1 mg/dL = 10 mg/L / 113.12 g/mol * 1000 = 88.40 umol/L (88.42 by convention)
    assert CREATININE_UMOL_PER_MG_DL == pytest.approx(10 / 113.12 * 1000, rel=5e-4)


# US label "creatinine clearance 30 to 70 mL/min": both ends are in the reduced band
# Cases of the scoring reference (section O): formula values computed by hand there.
@pytest.mark.parametrize("case,h,w,mosteller,dubois", [
    ("BSA-01", 170, 70, 1.8181, 1.8097), ("BSA-02", 160, 60, 1.6330, 1.6221),
    ("BSA-03", 180, 100, 2.2361, 2.1950), ("BSA-04", 150, 45, 1.3693, 1.3698),
])
def test_bsa_reference_cases(case, h, w, mosteller, dubois):
    assert bsa_mosteller(h, w) == pytest.approx(mosteller, abs=1e-4)
    assert bsa_dubois(h, w) == pytest.approx(dubois, abs=1e-4)


def test_bsa_cap():
    assert bsa_mosteller(180, 100, cap=2.0) == 2.0  # BSA-03 capped at 2.0 m^2
    assert bsa_mosteller(170, 70, cap=2.0) == pytest.approx(1.8181, abs=1e-4)  # below the cap: unchanged
    np.testing.assert_allclose(bsa_mosteller([170, 180], [70, 100], cap=2.0), [1.818119, 2.0], atol=1e-6)


@pytest.mark.parametrize("case,age,w,scr_mg_dl,female,expected", [
    ("REN-01", 50, 70, 1.0, False, 87.50), ("REN-02", 50, 70, 1.0, True, 74.38), ("REN-03", 30, 60, 0.8, True, 97.40),
    ("REN-04", 65, 80, 1.4, False, 59.52), ("REN-05", 40, 50, 1.2, True, 49.19),
])
def test_cockcroft_gault_reference_cases(case, age, w, scr_mg_dl, female, expected):
    assert crcl_cockcroft_gault(age, w, creatinine_umol_l(scr_mg_dl), female) == pytest.approx(expected, abs=0.01)


def test_creatinine_units_round_trip():
    # REN-06: 88.4 umol/L is 1.0 mg/dL to the reference's precision (88.42 here: 0.99977)
    assert creatinine_mg_dl(88.4) == pytest.approx(1.0, abs=5e-4)
    assert creatinine_mg_dl(creatinine_umol_l(1.3)) == pytest.approx(1.3, rel=1e-15)


@pytest.mark.parametrize("case,female,age,scr_mg_dl,expected", [
    ("EGF-01a", True, 40, 0.7, 112.05), ("EGF-01b", False, 40, 0.9, 110.73), ("EGF-02a", True, 50, 1.0, 68.63),
    ("EGF-02b", False, 50, 1.0, 91.69), ("EGF-03", True, 60, 2.0, 28.07), ("EGF-04a", True, 25, 0.5, 133.40),
    ("EGF-04b", False, 45, 3.0, 25.31), ("EGF-04c", True, 30, 1.5, 47.78),
])
def test_ckd_epi_2021_reference_cases(case, female, age, scr_mg_dl, expected):
    assert egfr_ckd_epi_2021(age, creatinine_umol_l(scr_mg_dl), female) == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("crcl, factor", [(120, 1.0), (70.01, 1.0), (70, 0.8), (69.99, 0.8), (30, 0.8), (29.99, 0.0)])
def test_fludarabine_renal_rule_boundaries(crcl, factor):
    assert fludarabine_renal_factor(crcl)[0] == factor


def _therapy(protocol_dict, regimen, product="autologous_cd19", dose=None):
    protocol_dict["arms"][0].update(lymphodepletion=regimen, product=product)
    if dose:
        protocol_dict["arms"][0]["dose"] = dose
    p = parse_protocol(protocol_dict)
    return resolve_arm(p, p.arms[0])


def test_erlangen_doses_for_a_patient(protocol_dict):
    doses = _therapy(protocol_dict, "erlangen").doses(bsa_m2=1.6, weight_kg=55.0, crcl_ml_min=110)
    flu = [d for d in doses if d.drug == "fludarabine"]
    cy = [d for d in doses if d.drug == "cyclophosphamide"]
    cart = [d for d in doses if d.route == "CART"]
    assert [d.day for d in flu] == [-5, -4, -3]
    assert all(d.amount == pytest.approx(25 * 1.6) for d in flu)  # 40 mg
    assert [(d.day, d.amount) for d in cy] == [(-3, pytest.approx(1600.0))]
    assert all(d.duration_days == pytest.approx(0.5 / 24) for d in flu)
    assert cart[0].amount == pytest.approx(55e6) and cart[0].day == 0


def test_renal_adjustment_applies_to_fludarabine_only(protocol_dict):
    doses = _therapy(protocol_dict, "standard").doses(bsa_m2=1.8, weight_kg=70.0, crcl_ml_min=45)
    flu = [d for d in doses if d.drug == "fludarabine"]
    cy = [d for d in doses if d.drug == "cyclophosphamide"]
    assert all(d.amount == pytest.approx(30 * 1.8 * 0.8) for d in flu)
    assert all("reduced by 20%" in d.note for d in flu)
    assert all(d.amount == pytest.approx(500 * 1.8) for d in cy)


def test_flat_dose(protocol_dict):
    doses = _therapy(protocol_dict, "none", dose={"cells": 5e7}).doses(1.7, 60.0, 100)
    assert [(d.route, d.amount) for d in doses] == [("CART", 5e7)]


def test_product_edit_mapping():
    auto = PRODUCTS["autologous_cd19"].mechanism_parameters()
    tyu = PRODUCTS["tyu19"].mechanism_parameters()
    intact = PRODUCTS["allo_hla_intact"].mechanism_parameters()
    assert auto["ALLO"] == 0 and auto["F_HLA"] == 0
    # HLA-A/B/CIITA KO: class I keeps HLA-C (1/3 of 0.6), class II gone -> 0.2
    assert tyu["F_HLA"] == pytest.approx(0.2)
    # HLA-A and HLA-B lost as NK ligands: 0.05 + 0.15
    assert tyu["F_MS"] == pytest.approx(0.2)
    assert tyu["TCR_ALLO"] == 0 and intact["TCR_ALLO"] == 0
    assert intact["F_HLA"] == pytest.approx(1.0) and intact["F_MS"] == 0
