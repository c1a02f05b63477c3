"""The web app's requests, in process (no browser, no simulation): safe by default, uploads
checked, scoring errors those of ``cartwin score`` shown against the offending rows."""

from __future__ import annotations

import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

import warnings  # noqa: E402

with warnings.catch_warnings():  # starlette's notice about its future test client
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient  # noqa: E402

from cartwin.serve import jobs  # noqa: E402
from cartwin.serve.app import create_app, example_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OBSERVATIONS = ROOT / "examples" / "observations_example.csv"


@pytest.fixture
def client(tmp_path):
    app = create_app(tmp_path / "runs", start_scheduler=False, max_upload_bytes=64 * 1024)
    with TestClient(app, base_url="http://127.0.0.1:8765") as c:
        c.runs = app.state.runs
        yield c


def test_the_bundled_example_is_the_repository_example():
    assert example_text() == (ROOT / "examples" / "nct05988216.toml").read_text()


def test_pages_carry_a_content_security_policy_that_allows_no_other_origin(client):
    r = client.get("/design")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "http" not in csp
    assert not re.search(r"""(src|href)=["']https?://""", r.text)  # every asset is the app's own


def test_vendored_plotly_is_served_with_its_licence():
    static = ROOT / "src" / "cartwin" / "serve" / "static" / "vendor" / "plotly"
    assert "MIT" in (static / "LICENSE").read_text() or "Permission is hereby granted" in (static / "LICENSE").read_text()
    assert (static / "plotly-basic.min.js").read_text()[:200].count("plotly.js") == 1


def test_requests_for_another_host_are_refused(client):
    assert client.get("/design", headers={"host": "attacker.example"}).status_code == 400


def test_posts_from_another_origin_are_refused(client):
    r = client.post("/runs", data={"toml": example_text()}, headers={"origin": "http://attacker.example"})
    assert r.status_code == 403
    assert client.runs.list() == []


def test_no_path_outside_the_run_folder_is_reachable(client, tmp_path):
    (tmp_path / "secret.txt").write_text("secret")
    for url in ("/runs/..%2Fsecret.txt", "/runs/../secret.txt", "/static/..%2F..%2Fjobs.py",
                "/static/../app.py", "/runs/r20260101-000000-abcdef/download/..%2F..%2Fsecret.txt",
                "/score/..%2F..%2Fsecret.txt/download", "/api/runs/%2Fetc%2Fpasswd"):
        r = client.get(url)
        assert r.status_code in (404, 400), url
        assert "secret" not in r.text


def test_unknown_download_kinds_and_unfinished_runs(client):
    run_id = client.runs.create(example_text(), source="p.toml", study_id="X")
    assert client.get(f"/runs/{run_id}/download/passwd").status_code == 404
    r = client.get(f"/runs/{run_id}/download/parquet")
    assert r.status_code == 409 and "queued" in r.text
    assert client.get(f"/api/runs/{run_id}/charts").status_code == 409


def test_uploads_over_the_limit_are_refused_before_they_are_read(client):
    big = b"subject,day,test,value,unit\n" + b"a,1,ANC,1,10^9/L\n" * 10000
    r = client.post("/score", files={"file": ("big.csv", big, "text/csv")})
    assert r.status_code == 413
    # the limit as the server was given it (64 KiB, which rounded down to '0 MiB'), and its setting
    assert "larger than 0.0625 MiB" in r.text and "--max-upload-mb" in r.text


def test_uploads_are_checked_before_use(client):
    r = client.post("/api/design/upload", files={"file": ("p.exe", b"MZ\x00\x00", "application/octet-stream")})
    assert r.status_code == 400 and "expected a .toml file" in r.json()["error"]
    r = client.post("/api/design/upload", files={"file": ("p.toml", b"\xff\xfe bad", "application/toml")})
    assert r.status_code == 400 and "not UTF-8" in r.json()["error"]
    r = client.post("/score", files={"file": ("obs.parquet", b"PAR1", "application/octet-stream")})
    assert r.status_code == 400 and "expected a .csv file" in unescape(r.text)


def test_an_invalid_protocol_starts_no_run(client):
    text = example_text().replace("cells_per_kg = 1e6", "cells_per_kg = 1e10")
    r = client.post("/runs", data={"toml": text, "source": "mine.toml"}, follow_redirects=False)
    assert r.status_code == 400
    assert "mine.toml: arms[0] (tyu19).dose.cells_per_kg: 1e+10 cells/kg is outside" in unescape(r.text)
    assert client.runs.list() == []
    r = client.post("/runs", data={"toml": example_text(), "n": "0"}, follow_redirects=False)
    assert r.status_code == 400 and "n: '0' is not a whole number of at least 1" in unescape(r.text)
    assert client.runs.list() == []


def test_a_run_larger_than_the_command_line_allows_is_not_queued(client):
    """`cartwin run --n` stops at MAX_PATIENTS_PER_ARM; the app's form must not queue more."""
    from cartwin.protocol.schema import MAX_PATIENTS_PER_ARM
    too_many = str(MAX_PATIENTS_PER_ARM + 1)
    r = client.post("/runs", data={"toml": example_text(), "n": too_many}, follow_redirects=False)
    assert r.status_code == 400
    assert f"n: '{too_many}' is more than {MAX_PATIENTS_PER_ARM:,}, the most `cartwin run --n` allows" in unescape(r.text)
    assert client.runs.list() == []


def test_a_refused_run_or_search_shows_the_options_as_they_were_typed(client):
    """After a refusal the page came back with the run options empty: the person had to type
    n, seed, chunk size and design points again without seeing what had been refused."""
    typed = {"n": "0", "seed": "7", "chunk_size": "3", "design_n": "12"}
    for action in ("/runs", "/designs"):
        data = {"toml": example_text(), **typed}
        if action == "/designs":
            data.update(design_n="1", spec="not a spec")
        r = client.post(action, data=data, follow_redirects=False)
        assert r.status_code == 400
        for field, element in (("n", "run-n"), ("seed", "run-seed"), ("chunk_size", "run-chunk"),
                               ("design_n", "design-n")):
            shown = re.search(rf'id="{element}"[^>]*value="([^"]*)"', r.text)
            assert shown and shown.group(1) == data[field], (action, field)
    assert client.runs.list() == [] and client.runs.list("design") == []


def test_a_valid_protocol_is_queued_with_the_options_asked(client):
    r = client.post("/runs", data={"toml": example_text(), "n": "2", "seed": "5", "chunk_size": "1"},
                    follow_redirects=False)
    assert r.status_code == 303
    run_id = r.headers["location"].rsplit("/", 1)[1]
    job = client.runs.job(run_id)
    assert (job["n_per_arm"], job["seed"], job["chunk_size"], job["state"]) == (2, 5, 1, jobs.QUEUED)
    assert (client.runs.folder(run_id) / jobs.PROTOCOL).read_text() == example_text()
    page = client.get(f"/runs/{run_id}")
    assert page.status_code == 200 and 'id="cancel"' in page.text


def test_design_download_names_the_file_safely(client):
    r = client.post("/design/download", data={"toml": "seed = 1\n", "source": "../../evil"})
    assert r.status_code == 200 and r.text == "seed = 1\n"
    assert r.headers["content-disposition"] == 'attachment; filename="evil.toml"'


def _cli_score(csv: Path, out: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "cartwin.cli", "score", csv.name, "--out", str(out)],
                          cwd=csv.parent, capture_output=True, text=True, timeout=300)
    return " ".join((proc.stdout + proc.stderr).split())


def test_scoring_errors_are_those_of_cartwin_score_against_the_offending_rows(client, tmp_path):
    lines = OBSERVATIONS.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    value_at = header.split(",").index("value")
    bad_rows = [3, 7]  # 1-based data rows
    for k in bad_rows:
        cells = rows[k - 1].split(",")
        cells[value_at] = "n.d."
        rows[k - 1] = ",".join(cells)
    csv = tmp_path / "ward.csv"
    csv.write_text("\n".join([header, *rows]) + "\n")
    expected = _cli_score(csv, tmp_path / "cli-out")
    r = client.post("/score", files={"file": ("ward.csv", csv.read_bytes(), "text/csv")})
    assert r.status_code == 400
    shown = " ".join(unescape(re.search(r'id="score-message">(.*?)</pre>', r.text, re.S).group(1)).split())
    assert shown == expected
    shown_rows = [int(x) for x in re.findall(r'<tr data-row="(\d+)">', r.text)]
    assert shown_rows == bad_rows
    offending = re.findall(r'<td class="offending">([^<]*)</td>', r.text)
    assert offending == ["n.d."] * len(bad_rows)
    assert str(tmp_path) not in r.text  # the server's paths are not shown


def test_scoring_a_valid_file_gives_the_scores_of_cartwin_score(client, tmp_path):
    from cartwin.scoring import score

    expected = score(OBSERVATIONS, tmp_path / "direct")
    r = client.post("/score", files={"file": ("obs.csv", OBSERVATIONS.read_bytes(), "text/csv")})
    assert r.status_code == 200
    summary = re.search(r'id="score-summary">([^<]*)', r.text).group(1)
    assert summary.startswith(f"Scored {expected.subjects_scored} subject(s), {expected.visits} visit(s); "
                              f"{expected.flags} flag(s).")
    link = re.search(r'href="(/score/[^"]+/download)"', r.text).group(1)
    z = client.get(link)
    assert z.status_code == 200 and z.content[:2] == b"PK"


def test_the_per_patient_table_shows_remission_and_worst_neutropenia_from_the_endpoints(client, tmp_path):
    """remission_day and worst_neutropenia_grade are endpoints, not scores: the per-patient table
    asked the scores for them and silently left both columns out."""
    import polars as pl

    from cartwin.scoring import score

    expected = pl.read_parquet(score(OBSERVATIONS, tmp_path / "direct").paths["endpoints"])
    r = client.post("/score", files={"file": ("obs.csv", OBSERVATIONS.read_bytes(), "text/csv")})
    table = re.search(r'<table id="score-patients">(.*?)</table>', r.text, re.S).group(1)
    header = re.findall(r"<th>([^<]*)</th>", table)
    assert {"worst_neutropenia_grade", "remission_day"} <= set(header)
    for row in expected.iter_rows(named=True):
        cells = re.search(rf'<tr data-subject="{row["subject"]}">(.*?)</tr>', table, re.S).group(1)
        shown = dict(zip(header, re.findall(r"<td>([^<]*)</td>", cells)))
        for column in ("worst_neutropenia_grade", "remission_day"):
            assert shown[column] == ("" if row[column] is None else str(row[column]))


def test_serve_refuses_a_run_folder_that_is_a_file_and_a_protocol_that_is_not_text(tmp_path):
    """`cartwin serve` announced its address and then failed with a bare FileExistsError or
    UnicodeDecodeError; it names the option or file and what to give instead, and starts nothing."""
    taken = tmp_path / "runs.csv"
    taken.write_text("not a folder")
    binary = tmp_path / "protocol.toml"
    binary.write_bytes(b"\xff\xfe not text")
    for args, expected in ((["--runs", str(taken)], f"error: --runs {taken}: exists and is not a folder"),
                           ([str(binary), "--runs", str(tmp_path / "runs")], f"error: {binary}: not UTF-8 text")):
        done = subprocess.run([sys.executable, "-m", "cartwin.cli", "serve", *args, "--port", "1"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert expected in " ".join(done.stderr.split()) and "cartwin serve: http" not in done.stdout


def test_serve_refuses_a_port_already_taken_before_announcing_it(tmp_path):
    """A taken port was announced as the app's address and only then refused by uvicorn, sending
    the reader to whatever listened there (often another `cartwin serve` over other runs)."""
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "cartwin.cli", "serve", "--runs", str(tmp_path / "runs"),
                               "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"error: --port {port}: cannot listen on 127.0.0.1:{port}" in " ".join(done.stderr.split())
    assert "cartwin serve: http" not in done.stdout and not (tmp_path / "runs").exists()


def test_the_score_page_lists_the_flags_and_summarises_each_arm(client, tmp_path):
    """The page said 'N flag(s)' without saying what they were, and pooled the arms of an upload
    that names two. It now lists the flags of flags.parquet (the file named as uploaded) and
    summarises the endpoints per arm, as `cartwin score` and the run page do."""
    import polars as pl

    from cartwin.endpoints import summarise
    from cartwin.scoring import score

    expected = score(OBSERVATIONS, tmp_path / "direct")
    flags = pl.read_parquet(expected.paths["flags"])
    endpoints = pl.read_parquet(expected.paths["endpoints"])
    per_arm = summarise(endpoints, by="arm").filter(pl.col("n") > 0)
    assert flags.height and endpoints["arm"].n_unique() == 2
    r = client.post("/score", files={"file": ("obs.csv", OBSERVATIONS.read_bytes(), "text/csv")})
    page = unescape(r.text)
    shown = re.search(r'<table id="score-flags">(.*?)</table>', page, re.S).group(1)
    assert shown.count("<tr>") - 1 == min(flags.height, 50)
    for problem in flags["problem"].head(50):
        assert problem.replace(str(OBSERVATIONS), "obs.csv") in shown
    assert str(tmp_path) not in page
    rows = re.findall(r'<tr data-endpoint="([^"]+)" data-arm="([^"]+)">', r.text)
    assert sorted(rows) == sorted(zip(per_arm["endpoint"], per_arm["arm"]))


def test_the_json_api_answers_its_errors_in_json(client):
    """The JSON endpoints answered a body that is not JSON, or an unknown run, with the HTML error
    page; a script reading the API now gets {"error": ...} with the status, as for its other
    errors. Pages keep the HTML error page."""
    r = client.post("/api/design/toml", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json() == {"error": "expected a JSON body"}
    r = client.get("/api/runs/r20260101-000000-abcdef")
    assert r.status_code == 404 and "error" in r.json()
    assert "<html" in client.get("/runs/r20260101-000000-abcdef").text.lower()
