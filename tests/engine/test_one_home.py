"""Each body-size, renal and dose rule has one home, and every room speaks one patient vocabulary.

The scan below looks through the package's sources and rule tables for the constants and
formula shapes of the rules; a copy anywhere else (the way the clinical layer once carried its
own Cockcroft-Gault with 88.4 and its own fludarabine boundary) fails here, naming the file and
line.
"""

import re

import numpy as np
import polars as pl
import pytest

from cartwin.body import CREATININE_UMOL_PER_MG_DL
from cartwin.clinical.gvhd_body import fludarabine_dose
from cartwin.protocol import parse_protocol
from cartwin.therapy.arm import resolve_arm
from cartwin.vocabulary import DESCRIPTOR_FLAGS, DESCRIPTORS, PATIENT_COVARIATES
from tests.conftest import ROOT

PACKAGE = ROOT / "src" / "cartwin"

# signature -> the only files (relative to src/cartwin) where it may occur
HOMES = {
    "creatinine factor 88.4x": (r"88\.4", {"body.py"}),
    "Mosteller sqrt(h x w / 3600)": (r"sqrt[^\n]*3600|3600[^\n]*sqrt|mosteller_divisor", {"body.py"}),
    "Cockcroft-Gault (140 - age)": (r"\b140(?:\.0)?\s*-\s*\w|age_offset", {"body.py"}),
    "DuBois 0.007184": (r"0\.007184", {"body.py"}),
    "CKD-EPI 0.9938^age": (r"0\.9938", {"body.py"}),
    "renal thresholds in mL/min": (r"(?i)\b(?:30|70)(?:\.0)?\s*(?:-\s*(?:30|70)\s*)?mL/min", {"therapy/dosing.py"}),
    "comparison of a clearance with 30/70": (
        r"(?i)(?:crcl|clearance)\w*\s*[<>]=?\s*(?:30|70)\b|\b(?:30|70)(?:\.0)?\s*[<>]=?\s*\w*(?:crcl|clearance)",
        {"therapy/dosing.py"}),
}
# A data table cannot import a constant: the observation unit table carries the creatinine factor,
# and test_units_table_uses_the_body_constant pins it to cartwin.body.
PINNED = {("creatinine factor 88.4x", "clinical/rules/units.csv")}


def _sources():
    for path in sorted(PACKAGE.rglob("*")):
        if path.suffix in (".py", ".toml", ".csv") and "__pycache__" not in path.parts:
            yield path.relative_to(PACKAGE).as_posix(), path.read_text()


@pytest.mark.parametrize("rule", sorted(HOMES))
def test_each_rule_has_one_home(rule):
    pattern, homes = HOMES[rule]
    found = {}
    for name, text in _sources():
        lines = [i + 1 for i, line in enumerate(text.splitlines()) if re.search(pattern, line)]
        if lines:
            found[name] = lines
    strays = {n: ls for n, ls in found.items() if n not in homes and (rule, n) not in PINNED}
    assert not strays, f"{rule} re-implemented outside {sorted(homes)}: {strays}"
    assert set(homes) <= set(found), f"{rule}: the scan no longer finds it in its home {sorted(homes)}"


def test_the_scan_catches_a_copy(tmp_path):
    """The patterns match the shapes the old copies had (so that the scan can fail)."""
    copies = {
        "creatinine factor 88.4x": "creatinine_umol_per_mg_dl = 88.4",
        "Mosteller sqrt(h x w / 3600)": "math.sqrt(height_cm * weight_kg / 3600)",
        "Cockcroft-Gault (140 - age)": "value = (140 - age) * weight_kg / (72 * scr)",
        "renal thresholds in mL/min": '"CrCl 30-70 mL/min: reduced"',
        "comparison of a clearance with 30/70": "if crcl_ml_min > 70:",
    }
    for rule, line in copies.items():
        assert re.search(HOMES[rule][0], line), rule


def test_units_table_uses_the_body_constant():
    units = pl.read_csv(PACKAGE / "clinical" / "rules" / "units.csv", infer_schema_length=0)
    row = units.filter((pl.col("test") == "CREAT") & (pl.col("unit") == "mg/dL"))
    assert row.height == 1 and float(row["factor"][0]) == CREATININE_UMOL_PER_MG_DL
    assert PATIENT_COVARIATES["CREAT"].unit_factors["mg/dL"] == CREATININE_UMOL_PER_MG_DL


@pytest.mark.parametrize("crcl", [0.0, 29.99, 30.0, 45.0, 69.99, 70.0, 70.01, 120.0])
def test_dosing_and_clinical_paths_agree_on_fludarabine(protocol_dict, crcl):
    """The dose a simulated patient receives and the dose the clinical layer reports are the same
    at and around the 30 and 70 mL/min boundaries (70 itself is reduced: '30 to 70 mL/min')."""
    protocol = parse_protocol(protocol_dict)
    therapy = resolve_arm(protocol, protocol.arms[0])  # erlangen: fludarabine 25 mg/m^2
    bsa = 1.75
    flu = [d for d in therapy.doses(bsa_m2=bsa, weight_kg=60.0, crcl_ml_min=crcl) if d.drug == "fludarabine"]
    reported = fludarabine_dose(25.0, bsa, crcl)
    given_mg = flu[0].amount
    assert given_mg == pytest.approx(reported["mg"] or 0.0, rel=1e-12)
    expected_fraction = 1.0 if crcl > 70 else (0.8 if crcl >= 30 else 0.0)
    assert given_mg == pytest.approx(25.0 * bsa * expected_fraction, rel=1e-12)


# --- one vocabulary ---------------------------------------------------------------------------
def test_models_take_their_covariates_from_the_vocabulary():
    from cartwin.model import MODELS
    for model in MODELS.values():
        for c in model.covariates:
            v = PATIENT_COVARIATES[c.name]
            assert (c.unit, c.description) == (v.unit, v.description), c.name


def test_a_model_covariate_outside_the_vocabulary_is_refused():
    from dataclasses import replace

    from cartwin.model import DEFAULT_MODEL
    from cartwin.model.declaration import Covariate, ModelDeclarationError
    with pytest.raises(ModelDeclarationError, match="IGG0"):
        replace(DEFAULT_MODEL, covariates=DEFAULT_MODEL.covariates + (Covariate("IGG0", "g/L", "baseline IgG"),))
    with pytest.raises(ModelDeclarationError, match="WT"):  # a known name in another unit
        replace(DEFAULT_MODEL, covariates=(Covariate("WT", "lb", "body weight"),))


def test_protocol_and_generator_cover_the_vocabulary(protocol_dict):
    from cartwin.model import DEFAULT_MODEL
    from cartwin.population.virtual import generate
    from cartwin.protocol.schema import Disease, ExplicitPatient, Population

    assert DESCRIPTORS == tuple(DESCRIPTOR_FLAGS)
    given = [c for c in PATIENT_COVARIATES.values() if not c.derived and c.kind != "descriptor"]
    for c in given:  # every given covariate has a protocol field, as a distribution and per patient
        holder = Disease if c.kind == "disease" else Population
        assert c.field in holder.model_fields and c.field in ExplicitPatient.model_fields, c.name
    protocol = parse_protocol(protocol_dict)
    pop = generate(DEFAULT_MODEL, protocol.population, "auto", np.arange(3), 7,
                   np.array([p.value for p in DEFAULT_MODEL.parameters]))
    assert list(pop.covariates) == list(PATIENT_COVARIATES)
    for c in given:
        if c.low is not None:
            assert np.all((pop.covariates[c.name] >= c.low) & (pop.covariates[c.name] <= c.high)), c.name


def test_exporters_and_store_name_the_vocabulary():
    from cartwin.io.nonmem import NUMERIC_COVARIATES
    from cartwin.io.scenario import patient_covariates
    from cartwin.store.run_directory import DICTIONARY
    numeric = [c.name for c in PATIENT_COVARIATES.values() if c.name != "SEXF" and c.kind != "descriptor"]
    assert list(NUMERIC_COVARIATES) == numeric
    assert all(NUMERIC_COVARIATES[n][1] == PATIENT_COVARIATES[n].unit for n in numeric)
    assert list(patient_covariates()) == list(PATIENT_COVARIATES)  # the exports' typical patient
    patients = DICTIONARY["patients"]
    for c in PATIENT_COVARIATES.values():
        if c.name != "SEXF":
            assert patients[c.name][0] == c.unit, c.name
