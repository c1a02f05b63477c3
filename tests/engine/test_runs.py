"""Runs end to end: reproducibility across chunking and workers, resume after a kill, the
run-directory contract, failures reported, bad input rejected with exit code 2."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from cartwin.protocol import load_protocol, parse_protocol
from cartwin.run import run_protocol
from cartwin.simulate import solvers
from cartwin.run import simulate
from tests.conftest import explicit_patient, use_explicit_patients, write_protocol

CLI = [sys.executable, "-m", "cartwin.cli"]


def sorted_obs(df: pl.DataFrame) -> pl.DataFrame:
    return df.sort(["subject", "day", "test"])


def test_identical_results_across_chunk_sizes_and_workers(protocol_dict):
    protocol_dict["arms"][0]["n"] = 9
    p = parse_protocol(protocol_dict)
    runs = [simulate(p, chunk_size=c, workers=w) for c, w in ((1, 1), (7, 1), (1000, 1), (7, 2))]
    base = sorted_obs(runs[0].observations)
    for other in runs[1:]:
        assert sorted_obs(other.observations).equals(base)  # bit for bit
        assert other.patients.sort("subject").equals(runs[0].patients.sort("subject"))


def test_patient_is_the_same_whatever_the_arm_size(protocol_dict):
    """Patient i depends on (seed, arm, i) only: growing the arm does not change patient 3."""
    small = simulate(parse_protocol(protocol_dict), n_per_arm=4)
    large = simulate(parse_protocol(protocol_dict), n_per_arm=11)
    pick = lambda s: sorted_obs(s.observations.filter(pl.col("subject") == "auto-000004"))
    assert pick(small).equals(pick(large))


def test_seed_changes_the_patients(protocol_dict):
    a = simulate(parse_protocol(protocol_dict), n_per_arm=3)
    b = simulate(parse_protocol(protocol_dict), n_per_arm=3, seed=8)
    assert not a.patients["WT"].equals(b.patients["WT"])


def test_covariates_respect_physiologic_and_protocol_bounds(protocol_dict):
    s = simulate(parse_protocol(protocol_dict), n_per_arm=40)
    assert s.patients["WT"].min() >= 40 and s.patients["WT"].max() <= 120
    assert s.patients["AGE"].min() >= 18 and s.patients["AGE"].max() <= 45
    assert s.patients["HT"].min() >= 120 and s.patients["HT"].max() <= 220
    bsa = np.sqrt(s.patients["HT"].to_numpy() * s.patients["WT"].to_numpy() / 3600)
    np.testing.assert_allclose(s.patients["BSA"].to_numpy(), bsa, rtol=1e-12)


def test_run_directory_contract(tmp_path, protocol_dict):
    path = write_protocol(tmp_path / "p.toml", protocol_dict)
    out = tmp_path / "run"
    summary = run_protocol(load_protocol(path), out, workers=1)
    assert summary.n_total == 11 and summary.n_failed == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cartwin_version"] and manifest["seed"] == 7
    assert manifest["protocol"]["sha256"] == load_protocol(path).sha256
    assert manifest["model"]["name"] == "lupus_cart" and len(manifest["model"]["hash"]) == 16
    assert manifest["counts"] == {"ok": 11, "failed": 0, "per_arm": {"auto": {"ok": 6, "failed": 0},
                                                                    "tyu19": {"ok": 5, "failed": 0}}}
    assert (out / "protocol.toml").read_text() == path.read_text()
    con = duckdb.connect(str(out / "results.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM patients").fetchone()[0] == 11
    cols = [r[0] for r in con.execute("DESCRIBE observations").fetchall()]
    assert cols == ["subject", "arm", "day", "test", "value", "unit"]
    units = dict(con.execute("SELECT DISTINCT test, unit FROM observations").fetchall())
    assert units["CART"] == "cells/uL" and units["NEUT"] == "10^9/L" and units["C3"] == "g/L"
    assert units["DSDNA"] == "IU/mL" and units["IL6"] == "pg/mL" and units["ALT"] == "U/L"
    n_rows = con.execute("SELECT count(*) FROM observations").fetchone()[0]
    assert n_rows == 11 * 8 * len(units)
    evid = con.execute("SELECT EVID, count(*) FROM events GROUP BY 1 ORDER BY 1").fetchall()
    assert evid[1][0] == 1 and evid[0][0] == 0
    # one subject's records, in file order: time-sorted, the day-0 sample before the infusion
    rows = con.execute("SELECT TIME, EVID, CMTNAME, AMT FROM events WHERE ID = 'auto-000001'").fetchall()
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    day0 = [(r[1], r[2]) for r in rows if r[0] == 0.0]
    assert day0 == [(0, ""), (1, "CE")]
    assert [r[0] for r in rows if r[1] == 1 and r[2] == "A_F1"] == [-5.0, -4.0, -3.0]
    assert len([r for r in rows if r[1] == 0]) == 8
    dictionary = json.loads((out / "dictionary.json").read_text())
    assert set(dictionary) == {"patients", "parameters", "observations", "events"}


def test_a_failed_patient_is_reported_and_the_run_goes_on(tmp_path, protocol_dict, monkeypatch):
    real = solvers.ScipyLSODA._solve_one
    calls = {"n": 0}

    def flaky(self, compiled, k, y0, schedule, t_obs, out):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("LSODA between day 0 and 7: excess work done")
        return real(self, compiled, k, y0, schedule, t_obs, out)

    monkeypatch.setattr(solvers.ScipyLSODA, "_solve_one", flaky)
    protocol_dict["solver"] = {"backend": "scipy-lsoda"}
    path = write_protocol(tmp_path / "p.toml", protocol_dict)
    summary = run_protocol(load_protocol(path), tmp_path / "run", workers=1, chunk_size=100)
    assert summary.n_total == 11 and summary.n_failed == 1
    patients = pl.read_parquet(tmp_path / "run" / "patients.parquet" / "*.parquet")
    failed = patients.filter(pl.col("status") == "failed")
    assert failed["subject"].to_list() == ["auto-000002"]
    assert "excess work done" in failed["failure_reason"][0]
    obs = pl.read_parquet(tmp_path / "run" / "observations.parquet" / "*.parquet")
    assert "auto-000002" not in obs["subject"].unique().to_list()
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["counts"]["failed"] == 1 and manifest["failed"][0]["subject"] == "auto-000002"


def _cli(*args, **kw):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, **kw)


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, protocol_dict):
    protocol_dict["arms"][0]["product"] = "nonexistent"
    path = write_protocol(tmp_path / "bad.toml", protocol_dict)
    out = tmp_path / "run"
    res = _cli("run", path, "--out", out)
    assert res.returncode == 2
    assert "bad.toml" in res.stderr and "arms[0] (auto).product" in res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists()
    res = _cli("validate", path)
    assert res.returncode == 2 and "unknown product 'nonexistent'" in res.stderr


def test_cli_refuses_a_directory_holding_something_else(tmp_path, protocol_dict):
    path = write_protocol(tmp_path / "p.toml", protocol_dict)
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    res = _cli("run", path, "--out", out, "--n", "2")
    assert res.returncode == 2 and "holds other files" in res.stderr
    assert sorted(os.listdir(out)) == ["notes.txt"]


def test_cli_run_validate_show(tmp_path, protocol_dict):
    path = write_protocol(tmp_path / "p.toml", protocol_dict)
    assert _cli("validate", path).returncode == 0
    res = _cli("run", path, "--out", tmp_path / "r", "--n", "3", "--seed", "11", "--workers", "1")
    assert res.returncode == 0, res.stderr
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["seed"] == 11 and manifest["n_per_arm"] == {"auto": 3, "tyu19": 3}
    res = _cli("show", tmp_path / "r")
    assert res.returncode == 0 and "CAR-T Cmax" in res.stdout and "tyu19" in res.stdout
    res = _cli("run", path, "--out", tmp_path / "r", "--n", "3")
    assert res.returncode == 2 and "--resume" in res.stderr


def test_resume_after_kill_loses_and_duplicates_nothing(tmp_path, protocol_dict):
    protocol_dict["arms"][0]["n"] = 60
    protocol_dict["arms"][1]["n"] = 60
    path = write_protocol(tmp_path / "p.toml", protocol_dict)
    out = tmp_path / "run"
    proc = subprocess.Popen(CLI + ["run", str(path), "--out", str(out), "--chunk-size", "4",
                                   "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    parts = out / "patients.parquet"
    deadline = time.time() + 120
    while time.time() < deadline:
        if parts.exists() and len(list(parts.glob("part-*.parquet"))) >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(parts.glob("part-*.parquet")))
    assert 5 <= done_before < 30, "the kill should land mid-run"
    assert not (out / "manifest.json").exists()
    res = _cli("run", path, "--out", out, "--resume", "--workers", "2")
    assert res.returncode == 0, res.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["execution"]["chunks_reused"] >= done_before - 1
    assert manifest["counts"]["ok"] == 120
    con = duckdb.connect(str(out / "results.duckdb"), read_only=True)
    assert con.execute("SELECT count(*), count(DISTINCT subject) FROM patients").fetchone() == (120, 120)
    # the resumed run equals an uninterrupted one
    fresh = simulate(load_protocol(path).protocol, workers=1)
    resumed = pl.read_parquet(out / "observations.parquet" / "*.parquet").with_columns(
        pl.col("arm").cast(pl.String), pl.col("test").cast(pl.String), pl.col("unit").cast(pl.String))
    assert sorted_obs(resumed).equals(sorted_obs(fresh.observations))
    assert not list(out.rglob("*.tmp"))


def test_an_arm_larger_than_the_explicit_list_repeats_it_with_unique_ids(protocol_dict):
    use_explicit_patients(protocol_dict, [
        explicit_patient("A"),
        explicit_patient("B", age=24, weight=60, height=165, creatinine=65, dsdna=200, c3=0.5,
                         c4=0.06, proteinuria=1.0, pga=2.5)])
    s = simulate(parse_protocol(protocol_dict), n_per_arm=5)
    subjects = s.patients.filter(pl.col("arm") == "auto")["subject"].to_list()
    assert subjects == ["auto-A", "auto-B", "auto-A-2", "auto-B-2", "auto-A-3"]
    assert s.patients["WT"].to_list()[:5] == [55, 60, 55, 60, 55]


def test_tiny_negative_round_off_is_zeroed_and_real_negatives_fail():
    from cartwin.model.lupus_cart import MODEL
    from cartwin.simulate.engine import reject_negative_states
    from cartwin.simulate.solvers import SolveResult
    states = np.ones((3, 2, len(MODEL.state_names)))
    states[0, 1, 3] = -1e-12   # round-off
    states[1, 0, 5] = -0.5     # a broken solve
    res = reject_negative_states(SolveResult(states, np.array([True, True, True]), ["", "", ""]),
                                 MODEL, atol=1e-9)
    assert list(res.ok) == [True, False, True]
    assert res.states[0, 1, 3] == 0.0
    assert MODEL.state_names[5] in res.reasons[1] and "negative" in res.reasons[1]
    assert np.isnan(res.states[1]).all()


def _reject_negative_states_reference(states, ok, names, atol, rtol, which):
    """Every patient's limits computed, every value compared: the plain statement of the rule."""
    states = states.copy()
    ok = ok.copy()
    reasons = [""] * len(ok)
    mask = np.broadcast_to(np.asarray(which, bool), (states.shape[2],))
    x = states[:, :, mask]
    limit = -100.0 * (atol + rtol * np.nanmax(np.abs(x), axis=1, initial=0.0))
    below = x < limit[:, None, :]
    for i in np.flatnonzero(below.any(axis=(1, 2))):
        row, col = np.argwhere(below[i])[0]
        reasons[i] = f"{np.asarray(names)[mask][col]} {row}"
        ok[i] = False
        states[i, row:] = np.nan
    sub = states[:, :, mask]
    np.maximum(sub, 0.0, out=sub, where=~np.isnan(sub))
    states[:, :, mask] = sub
    return states, ok, reasons


@pytest.mark.parametrize("seed", range(12))
def test_negative_state_check_equals_the_rule_applied_to_every_value(seed):
    """The check screens patients by their lowest values before computing limits: the states, the
    failed patients and the named state and day are those of comparing every value with its limit
    (values just below and above the limits, NaN from a failed solve, negative zeros, states not
    checked, patients with no value at all)."""
    from cartwin.model.lupus_cart import MODEL
    from cartwin.simulate.engine import NEGATIVE_TOLERANCE_FACTOR, reject_negative_states
    from cartwin.simulate.solvers import SolveResult
    rng = np.random.default_rng(seed)
    n, t, s = 9, int(rng.integers(0, 6)), len(MODEL.state_names)
    atol, rtol = 1e-9, 1e-6
    states = rng.lognormal(0.0, 3.0, size=(n, t, s)) * (rng.random((n, 1, s)) < 0.8)
    largest = np.abs(states).max(axis=1, initial=0.0)
    edge = -NEGATIVE_TOLERANCE_FACTOR * (atol + rtol * largest)
    for _ in range(int(rng.integers(0, 8))) if t else ():
        i, row, j = rng.integers(n), rng.integers(t), rng.integers(s)
        states[i, row, j] = rng.choice([edge[i, j] * 1.01, edge[i, j] * 0.99, -1e-12, -0.0, -NEGATIVE_TOLERANCE_FACTOR * atol * 1.5])
    if t:
        states[rng.integers(n), int(rng.integers(t)):] = np.nan
        states[rng.integers(n)] = np.nan
    which = rng.random(s) < 0.7 if seed % 2 else True
    ok = rng.random(n) < 0.9
    expected, expected_ok, expected_reasons = _reject_negative_states_reference(states, ok, MODEL.state_names, atol, rtol, which)
    result = reject_negative_states(SolveResult(states.copy(), ok.copy(), [""] * n), MODEL, atol, rtol, which,
                                    np.arange(t, dtype=float))
    np.testing.assert_array_equal(result.states, expected)
    assert np.array_equal(np.signbit(result.states), np.signbit(expected))
    assert list(result.ok) == list(expected_ok)
    for i, reason in enumerate(expected_reasons):
        if reason and ok[i]:
            name, row = reason.split()
            assert f"state {name} went negative" in result.reasons[i] and f"day {int(row)}" in result.reasons[i]
        elif not reason:
            assert result.reasons[i] == ""


def test_outputs_limit_the_stored_tests(protocol_dict):
    protocol_dict["outputs"] = ["CART", "BCELL"]
    s = simulate(parse_protocol(protocol_dict), n_per_arm=2)
    assert sorted(s.observations["test"].unique().to_list()) == ["BCELL", "CART"]
    protocol_dict["outputs"] = ["CART", "NOPE"]
    from cartwin.protocol import ProtocolError
    with pytest.raises(ProtocolError, match="outputs: unknown test codes \\['NOPE'\\]"):
        parse_protocol(protocol_dict)


def test_a_moved_run_directory_still_answers(tmp_path, protocol_dict):
    import shutil
    from cartwin.store.run_directory import RunDirectory
    path = write_protocol(tmp_path / "p.toml", protocol_dict)
    run_protocol(load_protocol(path), tmp_path / "run", workers=1, n_per_arm=2)
    shutil.move(tmp_path / "run", tmp_path / "moved")
    con = RunDirectory(tmp_path / "moved").connect()
    assert con.execute("SELECT count(*) FROM patients").fetchone()[0] == 4
    res = _cli("show", tmp_path / "moved")
    assert res.returncode == 0, res.stderr


def test_mixed_flat_and_per_kg_arms_store_one_column_type_and_score(tmp_path, protocol_dict):
    """A protocol mixing a flat dose and a per-kg dose writes patients parts with the same column
    types, so the run directory reads as one table and `cartwin score RUN` works."""
    protocol_dict["arms"][0].update(n=2, dose={"cells": 5e7})  # the flat arm's parts come first
    protocol_dict["arms"][1]["n"] = 2
    loaded = load_protocol(write_protocol(tmp_path / "mixed.toml", protocol_dict))
    run_protocol(loaded, tmp_path / "run", workers=1)
    patients = pl.read_parquet(tmp_path / "run" / "patients.parquet")
    assert patients.schema["dose_cells_per_kg"] == pl.Float64
    flat = patients.filter(pl.col("arm") == "auto")
    assert flat["dose_cells_per_kg"].null_count() == 2 and flat["dose_cells"].to_list() == [5e7, 5e7]
    scored = subprocess.run([*CLI, "score", str(tmp_path / "run"), "--out", str(tmp_path / "scores")],
                            capture_output=True, text=True)
    assert scored.returncode == 0, scored.stderr
    # `cartwin score` also writes every patient's endpoints
    endpoints = pl.read_parquet(tmp_path / "scores" / "endpoints.parquet")
    assert endpoints.height == 4 and endpoints["cart_cmax"].null_count() == 0


@pytest.mark.parametrize("args, shown", [
    (["run", "examples/nct05988216.toml"], "--out"),          # a required option missing
    (["run", "examples/nct05988216.toml", "--out", "x", "--n", "0"], "--n"),  # out of range
    (["frobnicate"], "frobnicate"),                             # an unknown command
])
def test_usage_errors_exit_2_with_a_message_not_a_traceback(args, shown):
    res = subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert res.returncode == 2, res.stderr
    assert shown in res.stderr and "Traceback" not in res.stderr


def test_an_interrupted_run_exits_130_and_says_how_to_resume(tmp_path, protocol_dict, monkeypatch, capsys):
    """Ctrl-C (KeyboardInterrupt inside the command) is exit 130 with the resume hint, never 0."""
    import cartwin.cli as cli
    import cartwin.run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(cartwin.run, "run_protocol", interrupted)
    path = write_protocol(tmp_path / "p.toml", protocol_dict)
    monkeypatch.setattr(sys, "argv", ["cartwin", "run", str(path), "--out", str(tmp_path / "run")])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 130
    # the command that resumes this very run, not a template to fill in
    assert f"resume with `cartwin run {path} --out {tmp_path / 'run'} --resume`" in capsys.readouterr().err


def test_a_patient_has_reached_the_output_days_where_any_state_is_known():
    """Patients with a known state on the first output day are not searched further; the others
    (failed before it, or with NaN in the first day's states only) are, so a patient counts as
    reached exactly when any of its states on any day is not NaN."""
    from cartwin.simulate.engine import _reached
    rng = np.random.default_rng(5)
    for t in (0, 1, 4):
        states = rng.normal(size=(40, t, 3))
        states[rng.random(states.shape) < 0.6] = np.nan
        states[:5] = np.nan
        expected = ~np.all(np.isnan(states), axis=(1, 2)) if t else np.zeros(40, bool)
        assert _reached(states).tolist() == expected.tolist()
