"""The report as a person sees it: opened offline in headless Chromium.

Checks that the page renders without console errors or network requests, that every figure is
drawn, and that the numbers a reader takes away equal what the clinical layer scores from the same
run directory (scored here independently of the report's part-wise cache).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import duckdb
import polars as pl
import pytest

from cartwin.report import aggregate, fmt

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed (/usr/bin/chromium); "
                                       "`apt-get install -y chromium` (.ci/run does this)")


@pytest.fixture(scope="module")
def page(reported_twin):
    from playwright.sync_api import sync_playwright

    _, html, _ = reported_twin
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.console_messages, page.page_errors, page.foreign_requests = [], [], []
        page.on("console", lambda m: page.console_messages.append((m.type, m.text)))
        page.on("pageerror", lambda e: page.page_errors.append(str(e)))
        url = html.resolve().as_uri()

        def guard(route):
            # The report must open offline: anything but the file itself is a defect.
            if route.request.url != url:
                page.foreign_requests.append(route.request.url)
                route.abort()
            else:
                route.continue_()

        page.route("**/*", guard)
        page.goto(url, wait_until="load")
        yield page
        browser.close()


def test_renders_offline_without_console_errors(page):
    assert page.title().endswith("virtual trial report")
    assert page.page_errors == []
    assert [m for m in page.console_messages if m[0] in ("error", "warning")] == []
    assert page.foreign_requests == []


def test_every_figure_is_drawn(page, reported_twin):
    run_dir, _, _ = reported_twin
    expected = {f"timecourse_{r.key}" for r in aggregate.READOUTS}
    expected |= {"swimmer_0", "swimmer_1", "differences"}
    # one product at two regimens: the intensity chart; Kaplan-Meier curves of every time to event
    expected |= {"intensity"} | {f"km_{c.key}" for c in aggregate.CURVES}
    shown = set(page.eval_on_selector_all("figure.plot", "els => els.map(e => e.dataset.figure)"))
    assert shown == expected
    for key in expected:
        box = page.locator(f"figure[data-figure='{key}'] svg").bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 100, key
        # each figure drew data: the time courses' lines and bands, the swimmer lanes, the intervals
        assert page.locator(f"figure[data-figure='{key}'] svg path").count() > 10, key
        for suffix in (".png", ".svg"):
            assert (run_dir / "report" / "figures" / f"{key}{suffix}").stat().st_size > 1000


def test_time_courses_overlay_both_arms(page):
    legend = page.locator("figure[data-figure='timecourse_cart'] svg").text_content()
    assert "TyU19 1e6/kg after reduced Flu/Cy" in legend
    assert "TyU19 1e6/kg without lymphodepletion" in legend


def test_summary_matches_manifest(page, reported_twin):
    run_dir, _, _ = reported_twin
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert page.inner_text("#seed") == str(manifest["seed"])
    assert manifest["model"]["version"] in page.inner_text("#model-version")
    assert page.inner_text("#n-total") == str(manifest["counts"]["ok"] + manifest["counts"]["failed"])
    for arm, n in manifest["n_per_arm"].items():
        assert page.inner_text(f"#arms tr[data-arm='{arm}'] .arm-n") == str(n)
    assert "tyu19" in page.inner_text("#protocol-text")
    assert manifest["protocol"]["sha256"] in page.inner_text("#manifest-text")


def _cell(page, endpoint: str, arm: str) -> str:
    return page.inner_text(f"#endpoint-table td[data-endpoint='{endpoint}'][data-arm='{arm}']")


def _frac(page, endpoint: str, arm: str) -> tuple[int, int] | None:
    text = _cell(page, endpoint, arm)
    if "not evaluable" in text:
        return None
    k, n = re.match(r"(\d+)/(\d+)", text).groups()
    return int(k), int(n)


def _expected_frac(values: pl.Series) -> tuple[int, int] | None:
    evaluable = values.drop_nulls()
    return (int(evaluable.sum()), evaluable.len()) if evaluable.len() else None


def _km_median(time: list[float], returned: list[bool]) -> float | None:
    """Kaplan-Meier median written out here, apart from cartwin.endpoints: the smallest time with
    S(t) <= 0.5, the middle of the interval where S(t) is exactly 0.5."""
    s, at_risk, steps = 1.0, len(time), []
    for t in sorted(set(time)):
        d = sum(1 for x, e in zip(time, returned) if x == t and e)
        s *= 1 - d / at_risk
        steps.append((t, s))
        at_risk -= sum(1 for x in time if x == t)
    for i, (t, s) in enumerate(steps):
        if math.isclose(s, 0.5):
            later = [u for u, v in steps[i + 1:] if v < 0.5 - 1e-12]
            return (t + later[0]) / 2 if later else t
        if s < 0.5:
            return t
    return None


def test_endpoints_equal_the_clinical_layer(page, clinical_scores):
    patients = pl.read_parquet(clinical_scores / "patients.parquet")
    visits = pl.read_parquet(clinical_scores / "visits.parquet").filter(pl.col("sledai_visit") & (pl.col("day") > 0))
    # the per-patient endpoints, derived here from the clinical layer's per-visit scores
    per_visit = visits.sort("subject", "day").group_by("subject").agg(
        pl.col("sri4").last().alias("sri4"), pl.col("doris_remission").any(ignore_nulls=False).alias("doris"),
        pl.col("lldas").any(ignore_nulls=False).alias("lldas"))
    patients = patients.join(per_visit, on="subject", how="left")
    for arm, rows in patients.group_by("arm"):
        arm = arm[0]
        for endpoint in ("sri4", "doris", "lldas", "bcell_aplasia"):
            assert _frac(page, endpoint, arm) == _expected_frac(rows[endpoint]), (endpoint, arm)
        for endpoint in ("cart_cmax", "cart_tmax", "cart_auc_0_28"):
            values = rows[endpoint].drop_nulls()
            text = _cell(page, endpoint, arm)
            assert text.startswith(fmt(float(values.median()))), (endpoint, arm, text)
            assert f"range {fmt(float(values.min()))}\u2013{fmt(float(values.max()))}" in text
            assert f"n = {values.len()}" in text
        # B-cell aplasia duration: to the return, or censored at the last count (Kaplan-Meier)
        aplastic = rows.filter(pl.col("bcell_aplasia"))
        if aplastic.height:
            returned = aplastic["bcell_return_day"].is_not_null().to_list()
            time = (aplastic["bcell_return_day"].fill_null(aplastic["bcell_last_measured_day"])
                    - aplastic["bcell_aplasia_onset_day"]).to_list()
            median = _km_median(time, returned)
            text = _cell(page, "bcell_aplasia_days", arm)
            assert text.startswith("not reached" if median is None else fmt(median)), (arm, text)
            assert f"{sum(returned)}/{aplastic.height} B cells returned; {aplastic.height - sum(returned)} censored" in text


def test_remission_endpoints_equal_the_scored_visits(page, clinical_scores):
    visits = pl.read_parquet(clinical_scores / "visits.parquet").filter(pl.col("sledai_visit") & (pl.col("day") > 0))
    lower_bound_shown = page.locator("#endpoint-table tr[data-endpoint='remission_m3_lb']").count() == 1
    complete = visits.filter(pl.col("selena").is_not_null()).group_by("arm").agg(pl.col("subject").n_unique())
    everyone = visits.group_by("arm").agg(pl.col("subject").n_unique())
    # the lower-bound rows appear exactly when some patient lacks a complete SELENA-SLEDAI
    assert lower_bound_shown == (complete.sort("arm").rows() != everyone.sort("arm").rows())
    for arm, rows in visits.group_by("arm"):
        arm = arm[0]
        evaluable = rows.filter(pl.col("selena").is_not_null())["subject"].n_unique()
        for month, day in ((3, 90), (6, 180)):
            by_day = rows.filter((pl.col("day") <= day) & (pl.col("pga") < 1))
            reached = by_day.filter(pl.col("selena") == 0)["subject"].n_unique()
            assert _frac(page, f"remission_m{month}", arm) == ((reached, evaluable) if evaluable else None)
            if lower_bound_shown:
                reached_lb = by_day.filter(pl.col("selena_min") == 0)["subject"].n_unique()
                assert _frac(page, f"remission_m{month}_lb", arm) == (reached_lb, rows["subject"].n_unique())


def test_adverse_event_grades_equal_the_clinical_layer(page, clinical_scores):
    adverse = pl.read_parquet(clinical_scores / "adverse_events.parquet")
    for label, term in (("Neutropenia", "Neutrophil count decreased"), ("Lymphopenia", "Lymphocyte count decreased"),
                        ("Cytokine release syndrome", "Cytokine release syndrome")):
        for arm, rows in adverse.filter(pl.col("term") == term).group_by("arm"):
            arm = arm[0]
            row = page.locator(f"#ae-table tr[data-ae='{label}'][data-arm='{arm}']")
            for grade in range(1, 5):
                expected = rows.filter(pl.col("max_grade") == grade).height
                assert row.locator(f"td[data-grade='{grade}']").inner_text() == str(expected), (label, arm, grade)
            severe = rows.filter(pl.col("max_grade") >= 3).height
            assert row.locator("td[data-grade='3+']").inner_text().startswith(f"{severe}/{rows.height}")
    gvhd = page.locator("#ae-table tr[data-ae='Acute GvHD']").first.inner_text()
    if adverse.filter(pl.col("term") == "Acute graft-versus-host disease").height == 0:
        assert "not assessed" in gvhd


def test_interval_shown_is_the_exact_one(page):
    from scipy.stats import binomtest

    k, n = _frac(page, "bcell_aplasia", "tyu19")
    ci = binomtest(k, n).proportion_ci(method="exact")
    lower, upper = (float(x.rstrip("%")) for x in
                    re.search(r"\[([\d.]+%)\u2013([\d.]+%)\]", _cell(page, "bcell_aplasia", "tyu19")).groups())
    assert math.isclose(lower, round(100 * ci.low, 1)) and math.isclose(upper, round(100 * ci.high, 1))


def test_differences_are_against_the_first_arm(page, reported_twin):
    run_dir, _, _ = reported_twin
    rows = page.locator("#difference-table tbody tr")
    assert rows.count() > 0
    arms = set(page.eval_on_selector_all("#difference-table tbody tr", "els => els.map(e => e.dataset.arm)"))
    assert arms == {"tyu19_none"}
    con = duckdb.connect()
    part = str(run_dir / "report" / "scores" / "patients" / "*.parquet")
    (k1, n1), = con.execute(f"SELECT count(*) FILTER (WHERE bcell_aplasia), count(bcell_aplasia) FROM '{part}' "
                            "WHERE arm = 'tyu19_none'").fetchall()
    (k0, n0), = con.execute(f"SELECT count(*) FILTER (WHERE bcell_aplasia), count(bcell_aplasia) FROM '{part}' "
                            "WHERE arm = 'tyu19'").fetchall()
    estimate = page.inner_text("#difference-table tr[data-endpoint='bcell_aplasia'] td:nth-child(3)")
    assert estimate == f"{100 * (k1 / n1 - k0 / n0):+.1f} pp"
