"""NONMEM-format datasets: export of a run, the record logic, and import as observed data."""

from __future__ import annotations

import json
import os

import numpy as np
import polars as pl
import pytest

from cartwin.io.observations import read_observations
from cartwin.io import NonmemDatasetError
from cartwin.io.nonmem import export_nonmem, read_nonmem
from cartwin.therapy.dosing import fludarabine_renal_factor
from cartwin.therapy.regimens import PRESETS

TESTS = ["CART", "BCELL", "NEUT", "C3", "DSDNA"]


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("nm") / "dataset.csv"
    export = export_nonmem(run_dir, out, tests=TESTS)
    data = pl.read_csv(out, null_values=".")
    return export, data, json.loads(export.dictionary_json.read_text())


def _patients(run_dir):
    return pl.read_parquet(str(run_dir / "patients.parquet" / "*.parquet"))


def _observations(run_dir):
    return (pl.read_parquet(str(run_dir / "observations.parquet" / "*.parquet"))
            .with_columns(pl.col("test").cast(pl.String), pl.col("unit").cast(pl.String)))


def dictionary_dvid(dictionary, test):
    return next(int(k) for k, v in dictionary["dvid"].items() if v["test"] == test)


def test_record_layout_follows_nonmem_conventions(exported):
    export, data, dictionary = exported
    assert export.dictionary_csv.exists()
    assert data.columns[:9] == ["ID", "TIME", "DV", "AMT", "RATE", "EVID", "MDV", "CMT", "DVID"]
    assert set(dictionary["columns"]) == set(data.columns)
    assert data["TIME"].min() == 0.0
    # one contiguous block per ID, TIME non-decreasing inside it
    ids = data["ID"].to_numpy()
    assert np.all(np.diff(ids) >= 0)
    for _, block in data.group_by("ID"):
        assert np.all(np.diff(block["TIME"].to_numpy()) >= 0)
    doses, obs = data.filter(pl.col("EVID") == 1), data.filter(pl.col("EVID") == 0)
    assert doses["MDV"].to_list() == [1] * doses.height and doses["DV"].null_count() == doses.height
    # CAR-T before the infusion (and at its time: pre-dose) is no observation: MDV 1, DV missing
    cart = dictionary_dvid(dictionary, "CART")
    pre = (pl.col("DVID") == cart) & (pl.col("DAY") <= 0)
    assert obs.filter(pre).height > 0
    assert set(obs.filter(pre)["MDV"]) == {1} and obs.filter(pre)["DV"].null_count() == obs.filter(pre).height
    assert obs.filter(~pre)["MDV"].to_list() == [0] * obs.filter(~pre).height and obs["AMT"].null_count() == obs.height
    assert (obs.filter((pl.col("DVID") == cart) & (pl.col("DAY") > 0))["DV"] > 0).any()
    # a sample on a dose day comes before the dose (pre-dose), as NONMEM reads rows in order
    for (_, time), rows in data.group_by(["ID", "TIME"]):
        evid = rows["EVID"].to_list()
        assert evid == sorted(evid)
    day0 = data.filter((pl.col("DAY") == 0.0) & (pl.col("ID") == 1))
    assert day0["EVID"].to_list()[0] == 0 and day0["EVID"].to_list()[-1] == 1
    # TIME and DAY differ by the subject's origin, the same for all its rows
    offset = data.group_by("ID").agg((pl.col("DAY") - pl.col("TIME")).n_unique().alias("n"))
    assert offset["n"].to_list() == [1] * offset.height
    assert {v["test"] for v in dictionary["dvid"].values()} == set(TESTS)


def test_dose_amounts_match_the_patients_and_the_regimen(exported, run_dir):
    _, data, dictionary = exported
    patients = _patients(run_dir)
    cart_cmt = [k for k, v in dictionary["compartments"].items() if v["amount_unit"] == "cells"]
    flu_cmt = [k for k, v in dictionary["compartments"].items() if v["state"] == "A_F1"]
    assert len(cart_cmt) == 1 and len(flu_cmt) == 1
    for n, subject in dictionary["subjects"].items():
        p = patients.filter(pl.col("subject") == subject).row(0, named=True)
        mine = data.filter(pl.col("ID") == int(n))
        cart = mine.filter((pl.col("EVID") == 1) & (pl.col("CMT") == int(cart_cmt[0])))
        assert cart.height == 1 and cart["DAY"][0] == 0.0 and cart["RATE"][0] == 0.0
        assert cart["AMT"][0] == pytest.approx(p["dose_cells_per_kg"] * p["WT"], rel=1e-12)
        flu = mine.filter((pl.col("EVID") == 1) & (pl.col("CMT") == int(flu_cmt[0])))
        per_m2 = [a.dose_mg_m2 for a in PRESETS[p["regimen"]].administrations if a.drug == "fludarabine"]
        factor = fludarabine_renal_factor(p["CRCL"])[0]
        np.testing.assert_allclose(flu["AMT"].to_numpy(), np.array(per_m2) * p["BSA"] * factor, rtol=1e-12)
        # 30-minute infusions: RATE = AMT / (0.5 h in days)
        np.testing.assert_allclose(flu["RATE"].to_numpy(), flu["AMT"].to_numpy() / (0.5 / 24), rtol=1e-12)
        assert mine["WT"].unique().to_list() == [p["WT"]]


def test_import_gives_back_the_run_observations(exported, run_dir, tmp_path):
    export, _, _ = exported
    back = read_nonmem(export.data)
    original = (_observations(run_dir).filter(pl.col("test").is_in(TESTS))
                .filter(~((pl.col("test") == "CART") & (pl.col("day") <= 0)))  # pre-infusion CAR-T: not observations
                .select("subject", "day", "test", "value", "unit"))
    key = ["subject", "day", "test"]
    joined = original.join(back.observations, on=key, how="full", suffix="_back", coalesce=True)
    assert joined.height == original.height == back.observations.height
    np.testing.assert_array_equal(joined["value"].to_numpy(), joined["value_back"].to_numpy())
    assert (joined["unit"] == joined["unit_back"]).all()
    # the clinical layer accepts it as observed data
    path = tmp_path / "observed.csv"
    back.observations.write_csv(path)
    observed = read_observations(path)
    assert observed.frame.height == back.observations.height
    assert set(back.doses["cmt"].unique()) == {int(k) for k in json.loads(export.dictionary_json.read_text())["compartments"]}


def test_import_without_dictionary_uses_test_codes_and_the_infusion_compartment(tmp_path):
    path = tmp_path / "external.csv"
    path.write_text("ID,TIME,DV,AMT,EVID,MDV,CMT,DVID\n"
                    "7,0,.,30,1,1,1,.\n"
                    "7,5,0,.,0,0,0,CART\n"
                    "7,5,.,6e7,1,1,17,.\n"
                    "7,12,42.5,.,0,0,0,CART\n"
                    "7,12,.,.,0,1,0,BCELL\n")
    ds = read_nonmem(path, infusion_cmt=17)
    assert ds.observations.to_dicts() == [
        {"subject": "7", "day": 0.0, "test": "CART", "value": 0.0, "unit": "cells/uL"},
        {"subject": "7", "day": 7.0, "test": "CART", "value": 42.5, "unit": "cells/uL"},
    ]
    assert ds.doses["day"].to_list() == [-5.0, 0.0]
    with pytest.raises(NonmemDatasetError, match="give infusion_cmt"):
        read_nonmem(path)


HEADER = "ID,TIME,DV,AMT,EVID,MDV,CMT,DVID\n"


@pytest.mark.parametrize("rows, message", [
    ("1,0,.,100,1,1,1,.\n1,1,5,20,0,0,0,CART\n", "row 2: observation (EVID 0) with a dose amount AMT"),
    ("1,0,.,100,1,0,1,.\n", "row 1: dose or other event (EVID != 0) with MDV 0"),
    ("1,0,.,.,1,1,1,.\n", "row 1: dose (EVID 1/4) without AMT"),
    ("1,0,.,.,0,0,0,CART\n", "row 1: observation with MDV 0 but no DV"),
    ("1,0,.,100,7,1,1,.\n", "row 1: EVID is not one of 0-4"),
    ("1,0,.,100,1,2,1,.\n", "row 1: MDV is not 0 or 1"),
    ("1,0,.,-5,1,1,1,.\n", "row 1: negative AMT"),
    ("1,3,2,.,0,0,0,CART\n1,1,2,.,0,0,0,CART\n", "row 2: TIME goes backwards"),
    ("1,0,2,.,0,0,0,CART\n2,0,2,.,0,0,0,CART\n1,4,2,.,0,0,0,CART\n", "row 3: ID 1 appears again"),
    ("1,abc,2,.,0,0,0,CART\n", "row 1: column TIME is not a number"),
])
def test_inconsistent_rows_are_named(tmp_path, rows, message):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + rows)
    with pytest.raises(NonmemDatasetError) as info:
        read_nonmem(path, infusion_cmt=1)
    assert isinstance(info.value, ValueError)
    assert message in str(info.value)


def test_all_problems_are_reported_together(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "1,0,.,100,1,0,1,.\n1,1,5,20,0,0,0,CART\n1,2,.,.,1,1,1,.\n")
    with pytest.raises(NonmemDatasetError) as info:
        read_nonmem(path, infusion_cmt=1)
    text = str(info.value)
    assert "row 1: dose or other event" in text and "row 2: observation (EVID 0) with a dose" in text
    assert "row 3: dose (EVID 1/4) without AMT" in text


def test_export_refuses_what_is_not_a_run(tmp_path, run_dir):
    with pytest.raises(NonmemDatasetError, match="not a completed cartwin run directory"):
        export_nonmem(tmp_path, tmp_path / "x.csv")
    with pytest.raises(NonmemDatasetError, match=r"tests \['NOPE'\] are not in the run"):
        export_nonmem(run_dir, tmp_path / "x.csv", tests=["NOPE"])


def _pharmpy():
    """pharmpy (the test extra installs it); outside CI a missing install skips, in CI it fails."""
    if os.environ.get("CI"):
        import pharmpy.modeling
        return pharmpy.modeling
    return pytest.importorskip("pharmpy.modeling")


def test_pharmpy_reads_the_export_and_its_dataset_checks_pass(exported, tmp_path):
    """An independent NONMEM dataset reader (pharmpy) reads the export through a control stream
    with the dictionary's $INPUT line; its dataset checks pass and it sees our records."""
    modeling = _pharmpy()
    export, data, dictionary = exported
    control = tmp_path / "run1.mod"
    control.write_text(
        "$PROBLEM cartwin export read back\n"
        f"{dictionary['nmtran_input']}\n"
        f"$DATA {export.data} IGNORE=@\n"
        "$PRED\nY = THETA(1) + ETA(1) + EPS(1)\n"
        "$THETA 1\n$OMEGA 0.1\n$SIGMA 0.1\n")
    model = modeling.read_model(control)
    # tell pharmpy what the covariates are, so that its checks test their units and ranges too
    from pharmpy.model.datainfo import ColumnInfo, DataVariable
    info = model.datainfo
    for name, kind, properties in (("WT", "covariate", {"descriptor": "body weight", "unit": "kg"}),
                                   ("AGE", "covariate", {"descriptor": "age", "unit": "yr"}),
                                   ("HT", "covariate", {"descriptor": "body height", "unit": "cm"}),
                                   ("DVID", "dvid", {})):
        variable = DataVariable.create(name, type=kind, properties=properties)
        info = info.set_column(ColumnInfo.create(name, variable_mapping=variable, datatype=info[name].datatype))
    model = model.replace(datainfo=info)
    checks = modeling.check_dataset(model, dataframe=True, verbose=True)
    checked = " ".join(checks["check"])
    assert "body weight" in checked and "age" in checked and "dvid" in checked, checked
    assert (checks["result"] == "OK").all(), checks.to_string()
    df = model.dataset
    assert len(df) == data.height and df["ID"].nunique() == data["ID"].n_unique()
    assert model.datainfo.id_column.name == "ID" and model.datainfo.dv_column.name == "DV"
    # '.' is read as 0 (as NM-TRAN does) and MDV says which rows are not observations
    for column in ("ID", "TIME", "DV", "AMT", "RATE", "EVID", "MDV", "CMT", "DVID", "WT"):
        np.testing.assert_allclose(df[column].to_numpy(dtype=float), data[column].fill_null(0.0).to_numpy(),
                                   rtol=1e-12, err_msg=column)
    # and an error in the data is caught by the same checks: a weight of 0 kg
    bad = model.replace(dataset=df.assign(WT=0.0))
    assert (modeling.check_dataset(bad, dataframe=True)["result"] == "FAIL").any()


def test_arm_numbers_follow_the_protocol_order(tmp_path):
    """ARMN 1 is the protocol's first arm, even when its id sorts after the others."""
    import copy

    import tomli_w

    from cartwin.protocol import load_protocol
    from cartwin.run import run_protocol
    from tests.conftest import BASE_PROTOCOL

    protocol = copy.deepcopy(BASE_PROTOCOL)
    protocol["arms"] = list(reversed(protocol["arms"]))
    for arm in protocol["arms"]:
        arm["n"] = 1
    protocol["schedule"] = {"days": [0, 7, 28]}
    first = protocol["arms"][0]["id"]
    assert first > protocol["arms"][1]["id"]  # the first arm sorts last
    path = tmp_path / "protocol.toml"
    path.write_bytes(tomli_w.dumps(protocol).encode())
    run_protocol(load_protocol(path), tmp_path / "run", workers=1)
    export = export_nonmem(tmp_path / "run", tmp_path / "nm.csv")
    data = pl.read_csv(tmp_path / "nm.csv", null_values=".")
    dictionary = json.loads(export.dictionary_json.read_text())
    assert dictionary["arms"]["1"]["arm"] == first
    assert data.filter(pl.col("ID") == 1)["ARMN"].unique().to_list() == [1]


def test_a_run_of_an_imported_sbml_model_exports_without_patient_covariates(tmp_path):
    """A run of an imported SBML model has no sex, covariates, products or regimens: its dataset
    has the event and observation columns and ARMN (before, the export failed looking for 'sex'),
    and reads back to the run's observations."""
    from cartwin.protocol import load_protocol
    from cartwin.run import run_protocol
    from tests.conftest import write_protocol
    from tests.engine.test_sbml_run import kimmel_protocol

    path = write_protocol(tmp_path / "k.toml", kimmel_protocol(arms=[{"id": "k", "n": 2}]))
    run_protocol(load_protocol(path), tmp_path / "run", workers=1)
    export = export_nonmem(tmp_path / "run", tmp_path / "k.csv")
    data = pl.read_csv(export.data, null_values=".")
    dictionary = json.loads(export.dictionary_json.read_text())
    assert data.columns == ["ID", "TIME", "DV", "AMT", "RATE", "EVID", "MDV", "CMT", "DVID", "LLOQ", "BLQ",
                            "CENS", "DAY", "TAFD", "ARMN", "SUBJ"]
    assert dictionary["nmtran_input"].split()[1:] == [*data.columns[:-1], "SUBJ=DROP"]
    assert set(dictionary["columns"]) == set(data.columns)
    assert dictionary["arms"] == {"1": {"arm": "k", "product": None, "regimen": None}}
    back = read_nonmem(export.data)
    original = _observations(tmp_path / "run").select("subject", "day", "test", "value")
    joined = original.join(back.observations, on=["subject", "day", "test"], how="full", suffix="_back",
                           coalesce=True)
    assert joined.height == original.height == back.observations.height == export.n_rows
    np.testing.assert_array_equal(joined["value"].to_numpy(), joined["value_back"].to_numpy())


def test_patients_whose_observations_the_run_did_not_store_are_left_out_and_counted(tmp_path, sampled_run_dir):
    """A run keeps the observations of the first [store] observations_per_arm patients of each
    arm; the others were exported as subjects of doses alone (19,000 of 20,000 in a run of the
    expansion cohort), which inform no fit and made the subject count a false promise."""
    export = export_nonmem(sampled_run_dir, tmp_path / "d.csv")
    data = pl.read_csv(export.data, null_values=".", infer_schema_length=None)
    stored = _observations(sampled_run_dir)["subject"].unique().sort().to_list()
    assert len(stored) == 2
    assert sorted(data["SUBJ"].unique().to_list()) == stored
    assert export.n_subjects == 2 and export.n_without_observations == 3
    dictionary = json.loads(export.dictionary_json.read_text())
    assert dictionary["subjects_without_observations"]["count"] == 3
    assert set(dictionary["subjects"].values()) == set(stored)
