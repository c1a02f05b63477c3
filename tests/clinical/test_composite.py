"""PGA, SRI, BICLA, DORIS, LLDAS and the SELENA flare index: scoring_cases.md sections B-G."""

import polars as pl
import pytest

from cartwin.clinical import composite

B = dict(BILAG_GEN=5, BILAG_MUC=5, BILAG_NEURO=5, BILAG_MSK=5, BILAG_CARD=5, BILAG_GI=5, BILAG_OPHTH=5,
         BILAG_RENAL=5, BILAG_HAEM=5)


def one(frame_fn, **columns):
    frame = pl.DataFrame({k: [v] for k, v in columns.items()}, strict=False)
    return frame_fn(frame).row(0, named=True)


@pytest.mark.parametrize("value,valid", [(3.0, True), (3.1, False), (-0.1, False), (0.0, True)])
def test_pga_range(value, valid):
    assert composite.pga_is_valid(value) is valid


@pytest.mark.parametrize("mark,line,expected", [(5.0, 10.0, 1.5), (4.0, 8.0, 1.5)])
def test_pga_from_line(mark, line, expected):
    assert composite.pga_from_line(mark, line) == pytest.approx(expected)


def sri_row(sledai_base, sledai, pga_base, pga, new_a=0, new_b=0, failure=None, k=None, policy=None):
    frame = pl.DataFrame({"sledai_base": [sledai_base], "sledai": [sledai], "pga_base": [pga_base], "pga": [pga],
                          "bilag_new_a": [new_a], "bilag_new_b": [new_b], "treatment_failure": [failure]},
                         schema_overrides={"sledai": pl.Float64, "treatment_failure": pl.Boolean})
    return composite.sri(frame, reduction_points=k, missing_policy=policy).row(0, named=True)


@pytest.mark.parametrize("case,args,expected", [
    ("SRI-01", dict(sledai_base=10, sledai=6, pga_base=1.5, pga=1.7), True),
    ("SRI-02", dict(sledai_base=10, sledai=7, pga_base=1.5, pga=1.7), False),
    ("SRI-03", dict(sledai_base=10, sledai=6, pga_base=1.5, pga=1.8), False),
    ("SRI-04", dict(sledai_base=10, sledai=6, pga_base=1.50, pga=1.79), True),
    ("SRI-05a", dict(sledai_base=10, sledai=6, pga_base=1.5, pga=1.5, new_b=1), True),
    ("SRI-05b", dict(sledai_base=10, sledai=6, pga_base=1.5, pga=1.5, new_b=2), False),
    ("SRI-05c", dict(sledai_base=10, sledai=6, pga_base=1.5, pga=1.5, new_a=1), False),
    ("SRI-06", dict(sledai_base=10, sledai=4, pga_base=1.5, pga=1.5, failure=True), False),
    ("SRI-07-sri4", dict(sledai_base=4, sledai=0, pga_base=1.0, pga=1.0), True),
    ("SRI-07-sri5", dict(sledai_base=4, sledai=0, pga_base=1.0, pga=1.0, k=5), False),
    ("SRI-08-nri", dict(sledai_base=10, sledai=None, pga_base=1.0, pga=1.0), False),
    ("SRI-08-observed", dict(sledai_base=10, sledai=None, pga_base=1.0, pga=1.0, policy="observed"), None),
    ("BILAG-missing", dict(sledai_base=10, sledai=6, pga_base=1.0, pga=1.0, new_a=None, new_b=None), None),
    ("BILAG-missing-but-failed", dict(sledai_base=10, sledai=8, pga_base=1.0, pga=1.0, new_a=None, new_b=None), False),
])
def test_sri(case, args, expected):
    row = sri_row(**args)
    name = f"sri{args.get('k') or 4}"
    assert row[name] is expected


def bilag(**changes):
    grades = dict(B)
    grades.update(changes)
    return grades


def bicla_row(base, now, sledai_base, sledai, pga_base, pga):
    data = {**{k: [v] for k, v in now.items()}, **{f"{k}_base": [v] for k, v in base.items()},
            "sledai2k_base": [sledai_base], "sledai2k": [sledai], "pga_base": [pga_base], "pga": [pga],
            "treatment_failure": [None]}
    frame = composite.bilag_changes(pl.DataFrame(data, schema_overrides={"treatment_failure": pl.Boolean}))
    return composite.bicla(frame).row(0, named=True)["bicla"]


@pytest.mark.parametrize("case,base,now,sl_base,sl,expected", [
    ("BIC-01", bilag(BILAG_RENAL=1, BILAG_MSK=2), bilag(BILAG_RENAL=2, BILAG_MSK=3), 12, 8, True),
    ("BIC-02", bilag(BILAG_RENAL=1, BILAG_MSK=2), bilag(BILAG_RENAL=1, BILAG_MSK=3), 12, 8, False),
    ("BIC-03", bilag(BILAG_RENAL=1, BILAG_MSK=2), bilag(BILAG_RENAL=3, BILAG_MSK=2), 12, 8, False),
    ("BIC-04", bilag(BILAG_RENAL=1, BILAG_MSK=2), bilag(BILAG_RENAL=2, BILAG_MSK=3), 8, 10, False),
])
def test_bicla(case, base, now, sl_base, sl, expected):
    assert bicla_row(base, now, sl_base, sl, 2.0, 1.5) is expected


def doris_row(csledai, pga, pred, immsup=0, antimal=1):
    return one(composite.doris, csledai=csledai, pga=pga, pred=pred, immsup=immsup, antimal=antimal)


@pytest.mark.parametrize("case,args,remission,off", [
    ("DOR-01", (0, 0.4, 5.0), True, False),
    ("DOR-02", (0, 0.5, 5.0), False, False),
    ("DOR-03a", (0, 0.4, 5.0), True, False),
    ("DOR-03b", (0, 0.4, 5.1), False, False),
    ("DOR-04", (1, 0.2, 0.0), False, False),
    ("DOR-05", (0, 0.2, 0.0, 0, 0), True, True),
    ("DOR-06", (0, None, 0.0), None, None),
])
def test_doris(case, args, remission, off):
    r = doris_row(*args)
    assert r["doris_remission"] is remission
    assert r["doris_off_therapy"] is off


def lldas_row(sledai2k, major, new, pga, pred, day=90.0, haemolysis=False, gi=False):
    frame = pl.DataFrame({"sledai2k": [sledai2k], "major_organ_activity": [major], "new_activity": [new], "pga": [pga],
                          "pred": [pred], "day": [day], "haemolysis": [haemolysis], "gi_activity": [gi]},
                         schema_overrides={"new_activity": pl.Boolean, "major_organ_activity": pl.Boolean})
    return composite.lldas(frame).row(0, named=True)["lldas"]


@pytest.mark.parametrize("case,args,expected", [
    ("LLD-01", (4, False, False, 1.0, 7.5), True),
    ("LLD-02", (4, True, False, 1.0, 7.5), False),
    ("LLD-03", (2, False, True, 1.0, 0.0), False),
    ("LLD-04a", (4, False, False, 1.0, 7.6), False),
    ("LLD-04b", (4, False, False, 1.1, 7.5), False),
    ("LLD-05", (4, False, False, 0.5, 0.0), True),
    ("LLD-06", (5, False, False, 0.5, 0.0), False),
    ("LLD-07", (1, True, False, 0.5, 0.0), False),
    ("LLD-08", (0, False, None, 0.5, 0.0), None),
    ("CAR-T-current", (0, False, False, 0.5, 0.0, 10.0), False),
])
def test_lldas(case, args, expected):
    assert lldas_row(*args) is expected


def sfi_row(**kw):
    base = dict(sledai=4, sledai_prev=4, pga=0.5, pga_prev=0.5, pred=None, pred_prev=None, weight=60.0,
                platelets_sle_new_low=None, haemolysis_severe=None, new_mild_manifestation=None,
                new_severe_manifestation=None, new_drug_mild=None, new_drug_severe=None, hospitalised=None)
    base.update(kw)
    frame = pl.DataFrame({k: [v] for k, v in base.items()}, schema_overrides={
        k: pl.Boolean for k in ("platelets_sle_new_low", "haemolysis_severe", "new_mild_manifestation",
                                "new_severe_manifestation", "new_drug_mild", "new_drug_severe", "hospitalised")} | {
        "pred": pl.Float64, "pred_prev": pl.Float64, "pga": pl.Float64, "pga_prev": pl.Float64})
    return composite.sfi(frame).row(0, named=True)["sfi_flare"]


@pytest.mark.parametrize("case,kw,expected", [
    ("SFI-01", dict(sledai_prev=4, sledai=7), "mild/moderate"),
    ("SFI-02", dict(sledai_prev=4, sledai=6), "none"),
    ("SFI-03", dict(sledai_prev=8, sledai=13), "severe"),
    ("SFI-04", dict(sledai_prev=9, sledai=12), "mild/moderate"),
    ("SFI-05", dict(sledai_prev=12, sledai=13), "severe"),
    ("SFI-06a", dict(pga_prev=0.5, pga=1.5), "mild/moderate"),
    ("SFI-06b", dict(pga_prev=0.5, pga=1.4), "none"),
    ("SFI-06c", dict(pga_prev=1.6, pga=2.6), "severe"),
    ("SFI-07a", dict(pred_prev=10.0, pred=20.0), "mild/moderate"),
    ("SFI-07b", dict(pred_prev=10.0, pred=30.0), "mild/moderate"),
    ("SFI-07c", dict(pred_prev=10.0, pred=35.0), "severe"),
    ("SFI-08", dict(platelets_sle_new_low=True), "severe"),
    ("SFI-09a", dict(new_drug_mild=True), "mild/moderate"),
    ("SFI-09b", dict(new_drug_severe=True), "severe"),
    ("SFI-10", dict(sledai_prev=4, sledai=7, hospitalised=True), "severe"),
    ("SLEDAI-missing", dict(sledai=None), None),
])
def test_sfi(case, kw, expected):
    assert sfi_row(**kw) == expected


@pytest.mark.parametrize("args, missing", [
    (dict(sledai_base=10, sledai=6, pga_base=1.0, pga=1.0, new_a=None, new_b=None), "(BILAG missing)"),
    (dict(sledai_base=10, sledai=6, pga_base=1.0, pga=None), "(PGA missing)"),
    (dict(sledai_base=10, sledai=6, pga_base=1.0, pga=None, new_a=None, new_b=None), "(PGA, BILAG missing)"),
])
def test_an_sri_not_evaluable_says_which_component_is_missing(args, missing):
    row = sri_row(**args)
    assert row["sri4"] is None and row["sri4_reason"] == f"a component is not evaluable {missing}"


def sri_bounds_row(base, now, pga=1.0):
    """SRI-4 of a visit whose SELENA-SLEDAI and baseline are ranges (min, max) with no score."""
    frame = pl.DataFrame({"sledai_base": [None], "sledai": [None], "sledai_base_min": [base[0]],
                          "sledai_base_max": [base[1]], "sledai_min": [now[0]], "sledai_max": [now[1]],
                          "pga_base": [1.0], "pga": [pga], "bilag_new_a": [0], "bilag_new_b": [0],
                          "treatment_failure": [None]},
                         schema_overrides={"sledai": pl.Float64, "sledai_base": pl.Float64,
                                           "treatment_failure": pl.Boolean})
    return composite.sri(frame).row(0, named=True)


@pytest.mark.parametrize("base, now, expected", [
    ((16, 17), (0, 1), True),     # a fall of at least 15 whatever the missing descriptors
    ((16, 17), (14, 15), False),  # at most 3 points: whatever they are, no SRI-4
    ((16, 20), (10, 14), None),   # 2 to 10 points: the missing descriptors decide (NRI: not met)
])
def test_sri_sledai_component_decided_from_bounds_when_they_decide_it(base, now, expected):
    row = sri_bounds_row(base, now)
    assert row["sri4_sledai_component"] is expected
    assert row["sri4"] is (expected if expected is not None else False)  # non-responder imputation
