"""Design runs on tiny cohorts: common random numbers, and the command end to end."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import tomli_w

from tests.conftest import BASE_PROTOCOL

ROOT = Path(__file__).resolve().parents[2]


def _protocol(tmp: Path) -> Path:
    protocol = copy.deepcopy(BASE_PROTOCOL)
    path = tmp / "protocol.toml"
    path.write_text(tomli_w.dumps(protocol))
    return path


def _evaluator(protocol_path: Path, stream: str, follow_up: float = 28.0):
    from cartwin.design.evaluate import Evaluator
    from cartwin.design.space import anchor_regimens
    from cartwin.plan import make_work
    from cartwin.protocol import load_protocol

    work = make_work(load_protocol(protocol_path).protocol)
    work = replace(work, days=tuple(d for d in work.days if d <= follow_up))
    return Evaluator(work, anchor_regimens(["none", "reduced", "erlangen"], {}), {}, ("cart_cmax",), stream=stream)


def test_common_random_numbers_cut_the_variance_of_a_difference(tmp_path):
    """The difference in log CAR-T Cmax between two lymphodepletion intensities, estimated on the same
    virtual patients (as the design search does) and on independent patients: the variance of the
    mean difference is Var(Y_B - Y_A) / n with common patients and (Var(Y_A) + Var(Y_B')) / n with
    independent ones, both estimated from the same simulation."""
    from cartwin.design.space import DesignPoint, Dose

    n = 24
    path = _protocol(tmp_path)
    common = _evaluator(path, stream="design-population")
    a, b = (DesignPoint("tyu19", Dose(1e6), t) for t in (0.5, 1.0))
    common.ensure([(a, n), (b, n)])
    y_a = np.log(common.frame(a)["cart_cmax"].to_numpy())
    y_b = np.log(common.frame(b)["cart_cmax"].to_numpy())
    # independent patients for B: each point keyed by its own stream (as randomised arms are)
    other = _evaluator(path, stream="")
    other.ensure([(DesignPoint("tyu19", Dose(1e6), 0.0), 1), (b, n)])  # b is the second point: its own stream
    y_b_independent = np.log(other.frame(b)["cart_cmax"].to_numpy())
    assert not np.allclose(y_b, y_b_independent)  # other patients indeed
    # same patients: the same covariates, so the same patient at both points
    assert np.all(np.isfinite(y_a)) and np.all(np.isfinite(y_b))
    var_common = np.var(y_b - y_a, ddof=1) / n
    var_independent = (np.var(y_a, ddof=1) + np.var(y_b_independent, ddof=1)) / n
    assert var_independent >= 5 * var_common, (var_common, var_independent)
    # the design point's patients do not depend on how they were simulated (4 then 24, or 24 at once)
    again = _evaluator(path, stream="design-population")
    again.ensure([(b, 4)])
    again.ensure([(b, n)])
    assert again.frame(b)["cart_cmax"].to_list() == common.frame(b)["cart_cmax"].to_list()
    assert again.simulated == n


def test_a_search_keeps_one_pool_of_workers_for_all_its_evaluations(tmp_path, monkeypatch):
    """A design search evaluates its points call after call. Each call used to start its own
    worker processes, which imported cartwin and loaded the model again: `cartwin design
    --workers 2` on the bundled example started 43 pools and took six times as long as one
    process. The evaluator keeps one pool from its first parallel evaluation until it is closed,
    and the numbers are those of a single process."""
    import cartwin.design.evaluate as evaluate
    from cartwin.design.space import DesignPoint, Dose

    started = []

    class CountedPool(evaluate.WorkerPool):
        def __init__(self, *args, **kwargs):
            started.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(evaluate, "WorkerPool", CountedPool)
    path = _protocol(tmp_path)
    points = [DesignPoint("tyu19", Dose(1e6), t) for t in (0.0, 0.5, 1.0)]
    alone = _evaluator(path, stream="design-population")
    alone.ensure([(p, 3) for p in points])
    with _evaluator(path, stream="design-population") as pooled:
        pooled.workers = 2
        pooled.ensure([(p, 2) for p in points[:2]])  # two chunks: evaluated in the pool
        pooled.ensure([(p, 3) for p in points])  # three more chunks, in the same pool
        assert len(started) == 1 and pooled._pool is not None
    assert pooled._pool is None  # closed with the block
    for p in points:
        assert pooled.frame(p).equals(alone.frame(p))


def test_a_failed_search_drops_the_chunks_it_had_queued(tmp_path):
    """A search that fails (a bad point, Ctrl-C) reports at once: its pool is shut down with the
    queued chunks cancelled, where a search that ends normally lets them finish."""
    calls = []

    class Pool:
        def shutdown(self, cancel_futures=False):
            calls.append(cancel_futures)

    path = _protocol(tmp_path)
    evaluator = _evaluator(path, stream="design-population")
    evaluator._pool = Pool()
    with pytest.raises(KeyboardInterrupt):
        with evaluator:
            raise KeyboardInterrupt
    evaluator._pool = Pool()
    with evaluator:
        pass
    assert calls == [True, False] and evaluator._pool is None


SPEC = """
schema_version = 1
design_id = "tiny"
title = "tiny design"
protocol = "protocol.toml"
follow_up_days = 90
patients = 8

[space]
products = ["tyu19"]
doses = [{{ cells_per_kg = 1e6 }}]
intensity_path = ["none", "reduced", "erlangen"]
intensity_levels = 3

[goal]
toxicity = ["neutropenia_grade3"]
[[goal.require]]
endpoint = "remission_m3"
at_least = {remission}
[[goal.require]]
endpoint = "bcell_aplasia_days"
days_at_least = 14
at_least = 0.5

[search]
start_patients = 4
compare_grid = true

[[trials]]
endpoint = "remission_m3"
size = 4
at_least = 3

[[uncertainty]]
parameter = "RHO"
low = 0.8
high = 1.25
note = "assumed"
"""


@pytest.fixture(scope="module")
def tiny_design(tmp_path_factory) -> Path:
    """``cartwin design`` on a tiny spec: one product, one dose, three intensities, 8 patients."""
    from cartwin.cli import app
    from typer.testing import CliRunner

    tmp_path = tmp_path_factory.mktemp("design")
    _protocol(tmp_path)
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(remission=0.5))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["design", str(spec), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_design_command_end_to_end(tiny_design):
    out = tiny_design
    summary = json.loads((out / "design.json").read_text())
    (search,) = summary["searches"]
    assert search["grid"]["same_answer"] is True
    assert search["grid"]["patients"] == 3 * 8
    points = pl.read_csv(out / "points.csv")
    base = points.filter(pl.col("parameters").fill_null("") == "")
    assert sorted(base["intensity"].to_list()) == [0.0, 0.5, 1.0] and set(base["patients"]) == {8}
    # the search's answer is the least grid level whose estimates reach every threshold
    feasible = base.filter((pl.col("remission_m3") >= 0.5) & (pl.col("bcell_aplasia_days") >= 0.5))
    (rec,) = summary["recommendations"]
    assert feasible.height  # this tiny space has an answer (seed 7)
    assert rec["intensity"] == feasible["intensity"].min()
    assert rec["requirements"][0]["n"] == 8
    (trial,) = rec["trials"]
    assert 0.0 <= trial["mc_lower"] <= trial["estimate"] <= trial["mc_upper"] <= 1.0
    assert {s["side"] for s in rec["sensitivity"]} == {"low", "high"}
    html = (out / "design.html").read_text()
    assert "Benefit-risk frontier" in html and "<svg" in html and 'id="patients-simulated"' in html
    outcomes = pl.read_parquet(out / "outcomes.parquet")
    assert outcomes.filter(pl.col("parameters") == "").height == 3 * 8


def test_design_command_bad_spec_exits_2(tmp_path):
    import subprocess
    import sys

    _protocol(tmp_path)
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(remission=0.5).replace('"remission_m3"\nat_least', '"remission_m9"\nat_least'))
    run = subprocess.run([sys.executable, "-m", "cartwin.cli", "design", str(spec), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert "goal.require[0].endpoint: unknown endpoint 'remission_m9'" in run.stderr
    assert "Traceback" not in run.stderr


def test_design_report_reads_on_desktop_and_phone(tiny_design):
    from tests.report.test_report_browser import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium)")
    from playwright.sync_api import sync_playwright

    url = (tiny_design / "design.html").resolve().as_uri()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        for width in (1400, 420):
            page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
            errors, foreign = [], []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.route("**/*", lambda route: (foreign.append(route.request.url), route.abort())
                       if route.request.url != url else route.continue_())
            page.goto(url, wait_until="load")
            assert errors == [] and foreign == []
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            box = page.locator("figure.frontier svg").first.bounding_box()
            assert box is not None and 100 < box["width"] <= width
            assert page.inner_text("#n-per-point") == "8"
        browser.close()


def test_design_outputs_state_the_patients_that_n_asks_for(tmp_path):
    """`cartwin design --n N` simulates N patients per design point, and design.json, the points
    and the report say N (they used to repeat the spec's own number)."""
    from cartwin.cli import app
    from typer.testing import CliRunner

    _protocol(tmp_path)
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(remission=0.5).replace("compare_grid = true", "compare_grid = false"))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["design", str(spec), "--out", str(out), "--n", "6"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "design.json").read_text())
    assert summary["patients_per_point"] == 6 and summary["grid_patients"] == 3 * 6
    assert set(pl.read_csv(out / "points.csv")["patients"]) <= {4, 6}
    assert '<span id="n-per-point">6</span>' in (out / "design.html").read_text()
