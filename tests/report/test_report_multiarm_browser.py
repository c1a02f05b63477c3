"""A nine-arm report (three products x three lymphodepletion regimens) as a clinician reads it,
on a 1400-px desktop screen and a 420-px phone, in headless Chromium; screenshots of both.

Set CARTWIN_SCREENSHOTS=DIR to keep the screenshots (desktop.png, phone.png) in DIR."""

from __future__ import annotations

import os
import shutil
import tomllib
from pathlib import Path

import pytest
import tomli_w

from tests.report.test_report_browser import CHROMIUM

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (/usr/bin/chromium)")


@pytest.fixture(scope="module")
def nine_arms(tmp_path_factory) -> tuple[Path, Path]:
    """examples/lymphodepletion.toml with 3 patients per arm."""
    from cartwin.protocol import load_protocol
    from cartwin.report import write_report
    from cartwin.run import run_protocol

    protocol = tomllib.loads((ROOT / "examples" / "lymphodepletion.toml").read_text())
    for arm in protocol["arms"]:
        arm["n"] = 3
    base = tmp_path_factory.mktemp("nine")
    path = base / "nine.toml"
    path.write_text(tomli_w.dumps(protocol))
    run_protocol(load_protocol(path), base / "run", workers=1)
    return base / "run", write_report(base / "run", workers=1)


def _open(browser, html: Path, width: int, height: int):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.goto(html.resolve().as_uri(), wait_until="load")
    return page


def _keep(shot: Path) -> None:
    target = os.environ.get("CARTWIN_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(target) / shot.name)


def test_desktop_nine_arms_side_by_side(nine_arms, browser, tmp_path):
    run_dir, html = nine_arms
    page = _open(browser, html, 1400, 1000)
    assert page.locator("#endpoint-table thead th").count() == 1 + 9
    # the whole endpoint table is visible without scrolling sideways on a 1400-px screen
    box = page.eval_on_selector("#endpoint-table", "t => [t.scrollWidth, t.parentElement.clientWidth]")
    assert box[0] <= box[1], box
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400
    # Kaplan-Meier curves with censoring, the per-product intensity chart, reference lines
    for key in ("km_bcell_return", "km_cart_loss", "km_relapse", "intensity"):
        assert page.locator(f"figure[data-figure='{key}'] svg path").count() > 10, key
    assert "censored" in page.locator("figure[data-figure='km_bcell_return'] svg").text_content()
    neutrophils = page.locator("figure[data-figure='timecourse_neutrophils'] svg").text_content()
    assert "ANC 0.5" in neutrophils and "ANC 1.0" in neutrophils
    assert "C3 lower limit 0.9" in page.locator("figure[data-figure='timecourse_complement'] svg").text_content()
    assert "aplasia below 1" in page.locator("figure[data-figure='timecourse_bcell'] svg").text_content()
    # comparisons within each product: every arm against its product's Erlangen arm
    pairs = page.eval_on_selector_all("#difference-table tbody tr", "els => els.map(e => [e.dataset.arm, e.dataset.reference])")
    assert {tuple(p) for p in pairs} == {(f"{p}_{r}", f"{p}_erlangen") for p in ("tyu19", "autologous_cd19", "allo_hla_intact")
                                         for r in ("reduced", "none")}
    shot = tmp_path / "desktop.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000
    _keep(shot)


def test_phone_layout_reads_at_420_px(nine_arms, browser, tmp_path):
    _, html = nine_arms
    page = _open(browser, html, 420, 900)
    # nothing but the wide tables' own boxes scrolls sideways
    assert page.evaluate("document.documentElement.scrollWidth") <= 420
    for key in ("timecourse_cart", "km_relapse", "intensity"):
        box = page.locator(f"figure[data-figure='{key}'] svg").bounding_box()
        assert box is not None and box["width"] <= 420 and box["height"] > 80, key
    font = page.eval_on_selector("body", "b => parseFloat(getComputedStyle(b).fontSize)")
    assert font >= 14
    shot = tmp_path / "phone.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000
    _keep(shot)
