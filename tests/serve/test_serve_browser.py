"""``cartwin serve`` as a person uses it: headless Chromium (Debian's) through design -> run ->
read -> score -> design search -> download, at desktop and phone widths, offline.

The server is started as the README says (``cartwin serve PROTOCOL --runs DIR``) on a tiny trial
(two arms of one patient, eight weeks) and a tiny design search over its four patients (one product
and dose, three intensities). Every request the pages make must go to the app itself; a request
elsewhere, a console error or a page error fails the test. Screenshots are written to the test's
folder, and to ``$CARTWIN_SCREENSHOTS`` when that is set.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
import zipfile
from pathlib import Path

import polars as pl
import pytest

from cartwin.serve import design, design_search
from tests.serve.tiny import tiny_protocol, tiny_spec

from tests.report.test_report_browser import CHROMIUM
ROOT = Path(__file__).resolve().parents[2]
DESKTOP = {"width": 1400, "height": 1000}
PHONE = {"width": 390, "height": 844}

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (/usr/bin/chromium); "
                                                     "`apt-get install -y chromium` (.ci/run does this)"),
    pytest.mark.skipif(any(__import__("importlib").util.find_spec(m) is None for m in ("starlette", "uvicorn", "playwright")),
                       reason="needs the serve and test extras"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    protocol = folder / "tiny.toml"
    protocol.write_text(tiny_protocol())
    port = _free_port()
    log = open(folder / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "cartwin.cli", "serve", str(protocol), "--runs", str(folder / "runs"),
                             "--port", str(port), "--workers", "1"], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    while True:
        try:
            urllib.request.urlopen(url + "/design", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() - t0 > 90:
                proc.kill()
                raise RuntimeError("the server did not start:\n" + (folder / "server.log").read_text())
            time.sleep(0.3)
    yield {"url": url, "folder": folder, "protocol": protocol}
    proc.send_signal(signal.SIGINT)  # as Ctrl-C: the server ends its workers
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


class Watched:
    """A page whose console errors, page errors and requests to anywhere but the app are recorded."""

    def __init__(self, browser, url: str, viewport: dict, shots: Path):
        self.context = browser.new_context(viewport=viewport, accept_downloads=True)
        self.page = self.context.new_page()
        self.errors, self.foreign = [], []
        self.shots, self.width = shots, viewport["width"]
        self.page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}")
                     if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

        def guard(route):
            if route.request.url.startswith(url + "/"):
                route.continue_()
            else:  # offline: anything but the app is a defect
                self.foreign.append(route.request.url)
                route.abort()

        self.page.route("**/*", guard)

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}-{self.width}.png"
        self.page.screenshot(path=str(path), full_page=True)
        extra = os.environ.get("CARTWIN_SCREENSHOTS")
        if extra:
            Path(extra).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(extra) / path.name)
        assert path.stat().st_size > 5000
        return path

    def fits_the_screen(self) -> bool:
        return self.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")

    def close(self):
        self.context.close()


def _until(page, expression: str, timeout_s: float = 30) -> None:
    """Poll a JavaScript expression until it is true (the pages' policy forbids the eval that
    Playwright's wait_for_function uses; evaluate goes through the debugger protocol)."""
    t0 = time.monotonic()
    while not page.evaluate(expression):
        assert time.monotonic() - t0 < timeout_s, f"timed out waiting for {expression}"
        time.sleep(0.1)


def _download(page, selector: str) -> bytes:
    with page.expect_download(timeout=120_000) as info:
        page.click(selector)
    return Path(info.value.path()).read_bytes()


def _wait_done(page, url: str, run_id: str, timeout_s: float = 240) -> None:
    page.goto(f"{url}/runs/{run_id}")
    page.wait_for_selector("#status[data-state='done']", timeout=timeout_s * 1000)


def _design_search(desk: "Watched", url: str, server: dict, tmp_path: Path) -> str:
    """The design search on the Design page: a spec checked as `cartwin design --check` checks a
    file, searched in a worker process, its answer read as tables, charts and the design report."""
    page = desk.page
    page.goto(f"{url}/design")
    assert page.inner_text("#spec-message") == "ok design_least_ld.toml: design least-lymphodepletion"
    # a spec with a mistake: the command's message, naming the field
    bad = tiny_spec().replace('endpoint = "bcell_aplasia"', 'endpoint = "bcell_aplasa"', 1)
    page.fill("#spec", bad)
    page.dispatch_event("#spec", "change")
    page.wait_for_selector("#spec-check.bad")
    expected = design_search.check_spec(bad, "design_least_ld.toml", tiny_protocol(), "tiny.toml").message()
    assert page.inner_text("#spec-message") == expected
    assert "goal.require[0].endpoint: unknown endpoint 'bcell_aplasa'" in expected
    # upload a spec naming a protocol the app does not hold; then design around the editor's protocol
    uploaded = tmp_path / "tiny-design.toml"
    uploaded.write_text(tiny_spec(protocol="elsewhere.toml"))
    page.set_input_files("#spec-upload", str(uploaded))
    _until(page, "document.querySelector('#spec-message').textContent.includes(\"no protocol 'elsewhere.toml'\")")
    page.click("#use-editor-protocol")
    _until(page, "document.querySelector('#spec-message').textContent === 'ok tiny-design.toml: design tiny-design'")
    assert 'protocol = "tiny.toml"' in page.input_value("#spec")
    assert tomllib.loads(_download(page, "#download-spec").decode()) == tomllib.loads(page.input_value("#spec"))
    desk.shot("design-search")

    # the search: a job of the runs' queue, computed by a worker, its progress shown live
    t0 = time.monotonic()
    page.click("#search")
    page.wait_for_url(re.compile(r".*/designs/d[0-9-a-f]+$"))
    design_id = page.url.rsplit("/", 1)[1]
    page.wait_for_selector("#status[data-state='done']", timeout=180_000)
    print(f"the design search took {time.monotonic() - t0:.1f} s from the click")
    page.wait_for_selector("#design-figures[data-drawn='1']", timeout=30_000)
    written = json.loads((server["folder"] / "runs" / design_id / "design" / "design.json").read_text())
    (rec,) = written["recommendations"]
    assert page.inner_text("#recommendations tr[data-product='tyu19'] td:nth-child(3)") == f"{rec['intensity']:.3g}"
    (req,) = rec["requirements"]
    assert page.inner_text("#requirements td.num").startswith(f"{req['k']}/{req['n']} (")
    assert page.inner_text("#trials tr[data-size='4'] td:nth-child(3)") == "at least 2 of 4"
    # interactive charts: a line per dose with its intervals, the requirement and the answer marked
    chart = "document.querySelector(\"[data-chart='design_0_bcell_aplasia']\")"
    assert page.evaluate(f"{chart}.data.length") == 1
    assert page.evaluate(f"{chart}.data[0].error_y.array.length") == page.evaluate(f"{chart}.data[0].x.length") >= 2
    assert page.evaluate(f"{chart}.layout.shapes.map(s => s.line.dash)") == ["dash", "dot"]
    assert page.locator("#design-charts .chart").count() == 2  # the requirement and the toxicity
    desk.shot("design-result")
    with zipfile.ZipFile(io.BytesIO(_download(page, "#design-download-zip"))) as z:
        assert {"design/design.html", "design/design.json", "design/points.csv"} <= set(z.namelist())
    # the design report, served from the search's folder
    page.goto(f"{url}/designs/{design_id}/report")
    assert "tiny-design" in page.content()
    return design_id


def test_design_run_read_score_download(server, browser, tmp_path):
    url = server["url"]
    t_start = time.monotonic()
    desk = Watched(browser, url, DESKTOP, tmp_path)
    page = desk.page

    # --- Design: the form is generated from the schema and checked as `cartwin validate` checks
    page.goto(f"{url}/design")
    assert "follow_up_days = 56" in page.input_value("#toml")
    assert page.locator("#check.ok").count() == 1
    dose = page.locator("input[name='arms.0.dose.cells_per_kg']")
    assert dose.input_value() == "1e+06"
    dose.fill("1e10")
    dose.dispatch_event("change")
    bad = tiny_protocol().replace("cells_per_kg = 1e6", "cells_per_kg = 1e10", 1)
    expected = design.check(bad, "tiny.toml").problems
    page.wait_for_selector("#check.bad")
    assert page.locator("#problems li").all_inner_texts() == expected
    # the message stands beside the field it names
    assert page.locator("[data-path='arms.0.dose'] .problem").inner_text() == expected[0]
    desk.shot("design-problem")
    dose.fill("1e6")
    dose.dispatch_event("change")
    page.wait_for_selector("#check.ok")

    # add an arm in the form, see its TOML, remove it again
    page.click("button[data-action='add:arms']")
    page.wait_for_selector("[data-path='arms.2']")
    assert page.input_value("#toml").count("[[arms]]") == 3
    page.click("button[data-action='remove:arms.2']")
    _until(page, "document.querySelectorAll('[data-path=\"arms.2\"]').length === 0")

    # upload a protocol file: the form follows it
    uploaded = tmp_path / "uploaded.toml"
    uploaded.write_text(tiny_protocol().replace('label = "TyU19 1e6/kg after reduced Flu/Cy"', 'label = "uploaded arm"'))
    page.set_input_files("#upload", str(uploaded))
    _until(page, "document.querySelector(\"input[name='arms.0.label']\").value === 'uploaded arm'")
    assert page.inner_text("#check-message").startswith("ok uploaded.toml: study NCT05988216-twin, 2 arm(s)")
    downloaded = _download(page, "#download").decode()
    assert tomllib.loads(downloaded) == tomllib.loads(page.input_value("#toml"))
    desk.shot("design")

    print(f"design done {time.monotonic() - t_start:.1f}")
    # --- Run: two runs asked at once; the second waits in the queue
    page.fill("#run-n", "1")
    page.click("#run")
    page.wait_for_url(re.compile(r".*/runs/r[0-9-a-f]+$"))
    run_a = page.url.rsplit("/", 1)[1]
    page.goto(f"{url}/design")
    page.fill("#run-n", "1")
    page.fill("#run-seed", "2")
    page.click("#run")
    page.wait_for_url(re.compile(r".*/runs/r[0-9-a-f]+$"))
    run_b = page.url.rsplit("/", 1)[1]
    assert page.inner_text("#state") == "queued" and "number 1 in the queue" in page.inner_text("#queue")

    # live progress, then cancel the running run; the queued one starts
    page.goto(f"{url}/runs/{run_a}")
    _until(page, "document.querySelector('#progress-text').textContent.startsWith('simulating')", 120)
    desk.shot("run-progress")
    page.click("#cancel")
    page.wait_for_selector("#status[data-state='cancelled']", timeout=60_000)
    assert page.locator("#resume").count() == 1
    page.click("#resume")  # queued behind B; continues from the chunks A stored
    page.wait_for_selector("#status[data-state='queued'], #status[data-state='running']")

    print(f"cancel/resume done {time.monotonic() - t_start:.1f}")
    _wait_done(page, url, run_b)
    print(f"B done {time.monotonic() - t_start:.1f}")
    _wait_done(page, url, run_a)
    print(f"A done {time.monotonic() - t_start:.1f}")
    job_a = json.loads((server["folder"] / "runs" / run_a / "job.json").read_text())
    assert job_a["attempts"] == 2 and job_a["state"] == "done"

    # --- Read: interactive charts, endpoint table, patients
    page.wait_for_selector("#charts[data-drawn='1']", timeout=60_000)
    charts = page.locator("#timecourses .chart")
    assert charts.count() >= 6
    cart = page.locator("#timecourses .chart[data-chart='cart']")
    cart.scroll_into_view_if_needed()
    # hover: the value under the pointer
    box = cart.locator(".nsewdrag").first.bounding_box()
    traces = page.evaluate("() => document.querySelector(\"[data-chart='cart']\").data.length")
    assert traces == 4  # band and median of each arm
    point = page.evaluate("""() => { const d = document.querySelector("[data-chart='cart']");
        const m = d.data[1]; const i = m.y.indexOf(Math.max(...m.y.filter(v => v !== null)));
        const xa = d._fullLayout.xaxis, ya = d._fullLayout.yaxis;
        return [xa.l2p(m.x[i]) + xa._offset, ya.l2p(ya.type === 'log' ? Math.log10(m.y[i]) : m.y[i]) + ya._offset, m.y[i]]; }""")
    cart_box = cart.bounding_box()
    page.mouse.move(cart_box["x"] + point[0], cart_box["y"] + point[1])
    page.wait_for_selector("[data-chart='cart'] .hoverlayer .hovertext", timeout=10_000)
    assert "median" in cart.locator(".hoverlayer").text_content()
    # toggle an arm off and on through the legend: its band and median go, the other arm stays
    cart.locator(".legend .traces").first.click()
    _until(page, "document.querySelector(\"[data-chart='cart']\").data[1].visible === 'legendonly'")
    assert page.evaluate("document.querySelector(\"[data-chart='cart']\").data.map(d => d.visible === 'legendonly')") == [
        True, True, False, False]
    cart.locator(".legend .traces").first.click()
    _until(page, "document.querySelector(\"[data-chart='cart']\").data[1].visible !== 'legendonly'")
    # zoom: drag across the plot narrows the day axis
    before = page.evaluate("document.querySelector(\"[data-chart='cart']\")._fullLayout.xaxis.range.slice()")
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.5)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5, steps=5)
    page.mouse.up()
    _until(page, f"(() => {{ const r = document.querySelector(\"[data-chart='cart']\")._fullLayout.xaxis.range;"
                           f" return r[1] - r[0] < {before[1] - before[0]} * 0.6; }})()")

    # the endpoint table says what the run's per-patient endpoints say
    scores = pl.read_parquet(server["folder"] / "runs" / run_a / "run" / "report" / "scores" / "patients" / "*.parquet")
    assert scores.height == 2
    for (arm,), rows in scores.group_by(["arm"]):
        aplasia = rows["bcell_aplasia"].drop_nulls()
        cell = page.inner_text(f"#endpoint-table td[data-endpoint='bcell_aplasia'][data-arm='{arm}']")
        assert cell.startswith(f"{int(aplasia.sum())}/{aplasia.len()} (") if aplasia.len() else "not evaluable" in cell
    # patient by patient: a swimmer lane per patient, trajectories per test
    lanes = page.evaluate("[0, 1].flatMap(i => document.querySelector(`#swimmers [data-chart='swimmer_${i}']`).data[0].y)")
    assert sorted(lanes) == sorted(scores["subject"].to_list())
    page.select_option("#trajectory-test", "BCELL")
    _until(page, "document.querySelector('#trajectories').layout.title.text.startsWith('BCELL')")
    assert page.evaluate("document.querySelector('#trajectories').data.length") == 2
    # the second arm against the first, with intervals
    assert page.locator("#differences .chart").count() >= 1
    desk.shot("run")

    print(f"read done {time.monotonic() - t_start:.1f}")
    # --- Downloads: Parquet, the report, CDISC and NONMEM exports
    with zipfile.ZipFile(io.BytesIO(_download(page, "#download-parquet"))) as z:
        names = z.namelist()
    assert any(n.startswith("parquet/observations.parquet/") for n in names) and "parquet/manifest.json" in names
    with zipfile.ZipFile(io.BytesIO(_download(page, "#download-cdisc"))) as z:
        assert {"cdisc/dm.csv", "cdisc/lb.xpt"} <= set(z.namelist()) or any(n.lower().endswith("dm.csv") for n in z.namelist())
    with zipfile.ZipFile(io.BytesIO(_download(page, "#download-nonmem"))) as z:
        nonmem = [n for n in z.namelist() if n.endswith("nonmem.csv")]
        assert nonmem and z.read(nonmem[0]).decode().splitlines()[0].startswith("ID")
    print(f"exports done {time.monotonic() - t_start:.1f}")
    report = _download(page, "#download-report").decode()
    print(f"report done {time.monotonic() - t_start:.1f}")
    assert "virtual trial report" in report and "NCT05988216-twin" in report

    # --- Two runs side by side
    page.goto(f"{url}/compare?a={run_a}&b={run_b}")
    _until(page, "document.querySelectorAll('.compare-charts[data-drawn=\"1\"]').length === 2", 60)
    assert page.locator("#endpoint-table-a").count() == 1 and page.locator("#endpoint-table-b").count() == 1
    desk.shot("compare")

    print(f"compare done {time.monotonic() - t_start:.1f}")
    # --- Score: real patients' data, and an error shown against its rows
    page.goto(f"{url}/score")
    page.set_input_files("#score-file", str(ROOT / "examples" / "observations_example.csv"))
    page.click("#score")
    page.wait_for_selector("#score-summary")
    assert page.inner_text("#score-summary").startswith("Scored 2 subject(s)")
    scored = _download(page, "#score-download")
    assert scored[:2] == b"PK"
    desk.shot("score")
    lines = (ROOT / "examples" / "observations_example.csv").read_text().splitlines()
    cells = lines[2].split(",")
    cells[4] = "n.d."  # the value column of data row 2
    lines[2] = ",".join(cells)
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("\n".join(lines) + "\n")
    before = list(desk.errors)
    page.set_input_files("#score-file", str(bad_csv))
    page.click("#score")
    page.wait_for_selector("#score-error")
    # the refused upload is answered 400, which the browser logs; nothing else may be logged
    assert [e for e in desk.errors[len(before):] if "status of 400" not in e] == []
    desk.errors = before
    assert page.inner_text("#score-message").startswith("error: bad.csv")
    assert page.locator("#offending-rows tr[data-row='2']").count() == 1
    desk.shot("score-error")

    print(f"score done {time.monotonic() - t_start:.1f}")
    design_id = _design_search(desk, url, server, tmp_path)
    assert desk.errors == [] and desk.foreign == []
    desk.close()
    print(f"design search done {time.monotonic() - t_start:.1f}")
    # --- the same pages at a phone's width: nothing wider than the screen
    phone = Watched(browser, url, PHONE, tmp_path)
    for name, path in (("design", "/design"), ("run", f"/runs/{run_a}"), ("runs", "/runs"),
                       ("compare", f"/compare?a={run_a}&b={run_b}"), ("score", "/score"),
                       ("design-result", f"/designs/{design_id}")):
        phone.page.goto(url + path)
        if name == "run":
            phone.page.wait_for_selector("#charts[data-drawn='1']", timeout=60_000)
        if name == "design-result":
            phone.page.wait_for_selector("#design-figures[data-drawn='1']", timeout=60_000)
        phone.shot(name)
        assert phone.fits_the_screen(), name
    assert phone.errors == [] and phone.foreign == []
    phone.close()
    print(f"browser test: {time.monotonic() - t_start:.1f} s")
