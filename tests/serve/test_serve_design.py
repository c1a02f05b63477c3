"""The design search in the web app: a spec checked as ``cartwin design --check`` checks a file, its
protocol looked up among those the app holds (never on the disk), a search queued as a job of the
runs' queue (cancelled, started again) and computed by the worker into the answer of
``cartwin design``; and uploads scored in a process of their own."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import time
import zipfile
from html import unescape
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

import warnings  # noqa: E402

with warnings.catch_warnings():  # starlette's notice about its future test client
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient  # noqa: E402

from cartwin.serve import design_search, jobs  # noqa: E402
from cartwin.serve.app import create_app  # noqa: E402
from tests.conftest import call_cli  # noqa: E402
from tests.serve.tiny import tiny_protocol, tiny_spec  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BASE = "http://127.0.0.1:8765"


@pytest.fixture
def client(tmp_path):
    app = create_app(tmp_path / "runs", start_scheduler=False, protocol=(tiny_protocol(), "tiny.toml"))
    with TestClient(app, base_url=BASE) as c:
        c.runs = app.state.runs
        yield c


def _spec_check(client, spec: str, spec_source: str = "mine.toml", toml: str | None = None,
                source: str = "tiny.toml") -> dict:
    r = client.post("/api/design/spec", json={"spec": spec, "spec_source": spec_source,
                                              "toml": tiny_protocol() if toml is None else toml, "source": source})
    assert r.status_code == 200
    return r.json()


def _search(client, spec: str, **extra):
    data = {"toml": tiny_protocol(), "source": "tiny.toml", "spec": spec, "spec_source": "mine.toml", **extra}
    return client.post("/designs", data=data, follow_redirects=False)


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_the_bundled_design_example_is_the_repository_example():
    assert design_search.example_spec() == (ROOT / "examples" / "design_least_ld.toml").read_text()
    for name in design_search.BUNDLED_PROTOCOLS:
        held = design_search.protocols("", "other.toml")[name]
        assert held == (ROOT / "examples" / name).read_text()


def test_the_design_page_opens_with_the_example_spec_checked(client):
    r = client.get("/design")
    assert r.status_code == 200
    shown = unescape(re.search(r'id="spec-message">(.*?)</pre>', r.text, re.S).group(1))
    assert shown == "ok design_least_ld.toml: design least-lymphodepletion"


@pytest.mark.parametrize("change, field", [
    (('endpoint = "bcell_aplasia"', 'endpoint = "bcell_aplasa"'), "goal.require[0].endpoint"),  # a cross-field check
    (("at_least = 0.5", "at_least = 5"), "goal.require[0].at_least"),  # a field's own bound
    (("patients = 4", "patients = 40"), "patients"),  # against the protocol's four explicit patients
])
def test_a_bad_spec_shows_the_message_of_cartwin_design_check(client, tmp_path, monkeypatch, capsys, change, field):
    bad = tiny_spec().replace(*change, 1)
    (tmp_path / "mine.toml").write_text(bad)
    (tmp_path / "tiny.toml").write_text(tiny_protocol())
    monkeypatch.chdir(tmp_path)
    code, printed = call_cli(monkeypatch, capsys, "design", "mine.toml", "--out", "out", "--check")
    assert code == 2
    expected = _flat(printed)
    assert expected.startswith(f"error: mine.toml: {field}: ")
    result = _spec_check(client, bad)
    assert not result["ok"] and _flat(result["message"]) == expected
    # asking for the search shows the same message on the page, and queues nothing
    r = _search(client, bad)
    assert r.status_code == 400
    assert _flat(unescape(re.search(r'id="spec-message">(.*?)</pre>', r.text, re.S).group(1))) == expected
    assert client.runs.list("design") == []


def test_a_good_spec_is_ok_as_the_command_says(client, tmp_path, monkeypatch, capsys):
    (tmp_path / "mine.toml").write_text(tiny_spec())
    (tmp_path / "tiny.toml").write_text(tiny_protocol())
    monkeypatch.chdir(tmp_path)
    code, printed = call_cli(monkeypatch, capsys, "design", "mine.toml", "--out", "out", "--check")
    assert code == 0
    result = _spec_check(client, tiny_spec())
    assert result["ok"] and _flat(result["message"]) == _flat(printed)


def test_a_spec_names_only_the_protocols_the_app_holds(client, tmp_path):
    # a valid protocol on the disk beside the run folder: no spec may reach it
    (tmp_path / "secret.toml").write_text(tiny_protocol())
    for name in ("../secret.toml", str(tmp_path / "secret.toml"), "runs/../secret.toml", "..\\\\secret.toml"):
        result = _spec_check(client, tiny_spec(protocol=name))
        assert not result["ok"]
        assert result["problems"] == [
            f"protocol: {name.replace(chr(92) * 2, chr(92))!r} names a folder; in the web app a design names, by its "
            "file name alone, the protocol in the editor (tiny.toml) or a bundled example "
            "(nct05988216.toml, nct05988216_expansion.toml)"]
        assert _search(client, tiny_spec(protocol=name)).status_code == 400
    result = _spec_check(client, tiny_spec(protocol="secret.toml"))
    assert result["problems"][0].startswith("protocol: no protocol 'secret.toml' here")
    assert client.runs.list("design") == []
    # the editor's protocol is named by its file name; a bundled example by its own
    assert _spec_check(client, tiny_spec(protocol="other.toml"), source="other.toml")["ok"]
    expansion = _spec_check(client, tiny_spec(protocol="nct05988216_expansion.toml"))
    assert expansion["ok"], expansion["message"]
    # a protocol that would read a model file is refused before anything reads it
    sbml = tiny_protocol().replace("schema_version = 1", 'schema_version = 1\nmodel = "sbml:/etc/passwd"', 1)
    result = _spec_check(client, tiny_spec(), toml=sbml)
    assert result["problems"] == ["protocol: tiny.toml uses an imported model; a design needs cartwin's own model "
                                  "and a population"]


def test_no_design_path_outside_the_run_folder_is_reachable(client, tmp_path):
    (tmp_path / "secret.txt").write_text("secret")
    run_id = client.runs.create(tiny_protocol(), source="p.toml", study_id="X")
    r = _search(client, tiny_spec())
    design_id = r.headers["location"].rsplit("/", 1)[1]
    for url in ("/designs/..%2Fsecret.txt", f"/designs/{run_id}", f"/api/designs/{run_id}",
                f"/runs/{design_id}", f"/designs/{design_id}/download/..%2Fjob.json",
                f"/designs/{design_id}/download/..%2F..%2F..%2Fsecret.txt", "/api/designs/%2Fetc%2Fpasswd",
                "/designs/d20260101-000000-abcdef/report"):
        r = client.get(url)
        assert r.status_code in (400, 404, 409), url
        assert "secret" not in r.text
    # the design's own files are read once it is done, and only those
    assert client.get(f"/designs/{design_id}/download/report").status_code == 409
    assert client.get(f"/designs/{design_id}/download/passwd").status_code == 404


def test_an_uploaded_spec_is_checked_and_named_as_uploaded(client):
    r = client.post("/api/design/spec/upload", files={"file": ("../my design.toml", tiny_spec().encode(), "application/toml")},
                    data={"toml": tiny_protocol(), "source": "tiny.toml"})
    assert r.status_code == 200
    assert r.json()["message"] == "ok my_design.toml: design tiny-design" and r.json()["spec"] == tiny_spec()
    r = client.post("/api/design/spec/upload", files={"file": ("spec.exe", b"MZ\x00", "application/octet-stream")})
    assert r.status_code == 400 and "expected a .toml file" in r.json()["error"]
    r = client.post("/design/spec/download", data={"spec": tiny_spec(), "spec_source": "../../evil"})
    assert r.text == tiny_spec() and r.headers["content-disposition"] == 'attachment; filename="evil.toml"'


def test_every_button_of_the_design_page_takes_the_whole_form(client):
    """The protocol and the spec share one form on the page (run, search, both downloads): each
    target reads the form with all its fields."""
    page = client.get("/design").text
    form = re.search(r'<form id="run-form".*?</form>', page, re.S).group(0)
    names = set(re.findall(r'name="([^"]+)"', form)) | set(re.findall(r'name="([^"]+)"[^>]*form="run-form"', page))
    assert {"toml", "source", "n", "seed", "chunk_size", "spec", "spec_source", "design_n"} <= names
    data = {name: "" for name in names} | {"toml": tiny_protocol(), "source": "tiny.toml", "spec": tiny_spec(),
                                           "spec_source": "mine.toml"}
    assert client.post("/design/download", data=data).text == tiny_protocol()
    assert client.post("/design/spec/download", data=data).text == tiny_spec()
    assert client.post("/designs", data=data, follow_redirects=False).status_code == 303
    assert client.post("/runs", data=data, follow_redirects=False).status_code == 303


def test_a_design_search_is_queued_and_can_be_cancelled_and_started_again(client):
    r = _search(client, tiny_spec(), design_n="3")
    assert r.status_code == 303 and re.fullmatch(r"/designs/d\d{8}-\d{6}-[0-9a-f]{6}", r.headers["location"])
    design_id = r.headers["location"].rsplit("/", 1)[1]
    job = client.runs.job(design_id)
    assert (job["kind"], job["state"], job["patients"], job["protocol"]) == ("design", jobs.QUEUED, 3, "tiny.toml")
    folder = client.runs.folder(design_id)
    assert (folder / jobs.INPUTS / "tiny.toml").read_text() == tiny_protocol()  # the editor's protocol, as it was
    assert (folder / jobs.SPEC).read_text() == tiny_spec()
    assert 'id="cancel"' in client.get(f"/designs/{design_id}").text
    assert client.get(f"/api/designs/{design_id}/result").status_code == 409
    # the design search waits in the same queue as runs
    run_id = client.runs.create(tiny_protocol(), source="p.toml", study_id="X")
    assert client.runs.status(run_id)["queue_position"] == 2
    r = client.post(f"/designs/{design_id}/cancel", follow_redirects=False)
    assert r.status_code == 303 and client.runs.job(design_id)["state"] == jobs.CANCELLED
    assert client.runs.status(run_id)["queue_position"] == 1
    r = client.post(f"/designs/{design_id}/cancel", follow_redirects=False)
    assert r.status_code == 409 and "only a queued or running design search can be cancelled" in unescape(r.text)
    page = client.get(f"/designs/{design_id}").text
    assert 'id="resume"' in page and 'id="cancel"' not in page
    r = client.post(f"/designs/{design_id}/restart", follow_redirects=False)
    assert r.status_code == 303
    job = client.runs.job(design_id)
    assert job["state"] == jobs.QUEUED and "starts over" in job["message"]
    # options are checked as the run's are
    r = _search(client, tiny_spec(), design_n="1")
    assert r.status_code == 400 and "patients per design point: '1' is not a whole number of at least 2" in unescape(r.text)
    # the spec and its protocol open again in the editors
    page = client.get(f"/design?design={design_id}").text
    assert "tiny-design" in unescape(page) and 'id="editor-name">tiny.toml<' in page


def _wait_done(c, design_id: str, timeout_s: float = 240) -> dict:
    t0 = time.monotonic()
    while True:
        status = c.get(f"/api/designs/{design_id}").json()
        if status["state"] not in ("queued", "running"):
            return status
        assert time.monotonic() - t0 < timeout_s, status
        time.sleep(0.3)


def test_a_design_search_is_computed_by_a_worker_into_the_answer_of_cartwin_design(tmp_path):
    """End to end with the real worker: the page shows the answer that ``run_design`` gives for
    the same spec and protocol (same seed: same virtual patients, same answer)."""
    from cartwin.design import load_spec, run_design

    app = create_app(tmp_path / "runs", protocol=(tiny_protocol(), "tiny.toml"))
    with TestClient(app, base_url=BASE) as c:
        r = _search(c, tiny_spec())
        design_id = r.headers["location"].rsplit("/", 1)[1]
        status = _wait_done(c, design_id)
        assert status["state"] == "done", (status, (app.state.runs.folder(design_id) / jobs.LOG).read_text())
        assert status["progress"]["phase"] == "done" and status["progress"]["unit"] == "steps"
        page = unescape(c.get(f"/designs/{design_id}").text)
        shown = c.get(f"/api/designs/{design_id}/result").json()
        report = c.get(f"/designs/{design_id}/report")
        bundle = c.get(f"/designs/{design_id}/download/zip")
        points = c.get(f"/designs/{design_id}/download/points").text
        json_download = c.get(f"/designs/{design_id}/download/json").json()

    (tmp_path / "direct").mkdir()
    (tmp_path / "direct" / "mine.toml").write_text(tiny_spec())
    (tmp_path / "direct" / "tiny.toml").write_text(tiny_protocol())
    direct = run_design(load_spec(tmp_path / "direct" / "mine.toml"), workers=1)
    (rec,) = direct.recommendations
    assert rec.intensity is not None  # the tiny goal is met somewhere on the path
    row = re.search(r'<tr data-product="tyu19">(.*?)</tr>', page, re.S).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    assert cells[:3] == ["tyu19", rec.dose.label, f"{rec.intensity:.3g}"]
    (req,) = rec.requirements
    cell = re.search(r'<tr data-product="tyu19" data-endpoint="bcell_aplasia">.*?<td class="num">(.*?)</td>', page, re.S)
    assert cell.group(1).startswith(f"{req['k']}/{req['n']} ({100 * req['estimate']:.1f}%)")
    (trial,) = rec.trials
    assert re.search(rf"<td>at least 2 of 4</td><td class=\"num\">{100 * trial.estimate:.1f}%</td>", page)
    # what the charts draw: the search's design points with their intervals
    assert {p["intensity"] for p in shown["points"]} == {pt.intensity for pt in direct.evaluator.points}
    assert shown["summary"]["recommendations"][0]["intensity"] == rec.intensity
    assert json_download["design_id"] == "tiny-design" and json_download["protocol"] == "inputs/tiny.toml"
    assert points.splitlines()[0].startswith("product,dose,")
    # the design report, served from the search's folder and in the zip
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "tiny-design" in report.text and str(tmp_path) not in report.text
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as z:
        assert {"design/design.json", "design/design.html", "design/points.csv"} <= set(z.namelist())


def test_uploads_are_scored_in_a_process_of_their_own(tmp_path):
    from cartwin.serve.score import ScorePool

    folder = tmp_path / "s1"
    folder.mkdir()
    shutil.copy(ROOT / "examples" / "observations_example.csv", folder / "obs.csv")
    pool = ScorePool(1)
    try:
        outcome = asyncio.run(pool.score(folder, "obs.csv"))
    finally:
        pool.shutdown()
    assert outcome["worker"] != os.getpid()
    assert outcome["result"]["subjects"] == 2 and (folder / "scored").is_dir()


def test_the_runs_page_lists_design_searches_apart(client):
    run_id = client.runs.create(tiny_protocol(), source="p.toml", study_id="X")
    design_id = _search(client, tiny_spec()).headers["location"].rsplit("/", 1)[1]
    assert [r["id"] for r in client.runs.list()] == [run_id]
    assert [d["id"] for d in client.runs.list("design")] == [design_id]
    page = client.get("/runs").text
    assert f'data-design="{design_id}"' in page and f'data-run="{run_id}"' in page
    assert json.loads(json.dumps(client.get(f"/api/designs/{design_id}").json()))["kind"] == "design"
