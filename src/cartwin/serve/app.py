"""The web app: a Starlette application over the run folder (docs/serve.md).

Pages: Design (``/design``, with the design search: ``/designs/ID``), Runs (``/runs``,
``/runs/ID``), Compare (``/compare``), Score (``/score``). JSON for the pages' scripts under
``/api``. Static files (the page's script and style sheet, the vendored plotly.js) from the
package, so the app needs no network.

Safety: requests whose Host is not the address served are refused (a web page elsewhere cannot
reach the app by renaming itself, DNS rebinding), as are form posts from another origin; request
bodies over ``max_upload_bytes`` are refused before they are read whole; run ids and downloads
are names the app made, checked before any path is built; nothing uploaded is executed (a
protocol or a design spec is TOML, read by its loader; observations are a CSV, read as text by the
clinical layer). Runs and design searches are computed by worker processes of the queue
(:mod:`~cartwin.serve.jobs`), uploads are scored in a process pool (:mod:`~cartwin.serve.score`):
no request waits on a computation in the server's own process.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import threading
import zipfile
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

import cartwin
from cartwin.protocol.schema import MAX_PATIENTS_PER_ARM
from cartwin.serve import design, design_search, forms, jobs, read
from cartwin.serve.score import ScorePool

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
EXAMPLE = "nct05988216.toml"
RUN_FORM_FIELDS = 12  # the Design page's form: protocol, spec and their names, run and search options
SCORE_ID = re.compile(r"^s\d{8}-\d{6}-[0-9a-f]{6}$")
DOWNLOADS = {
    "parquet": "the run's tables as Parquet (observations, events, parameters, patients), manifest and dictionary",
    "report": "the HTML report (written on the first download: allow some seconds)",
    "cdisc": "SDTM-like DM, EX, LB, AE, RS and ADaM-like ADSL, ADLB (CSV and SAS XPORT)",
    "nonmem": "a NONMEM-format dataset with its dictionary",
}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "connect-src 'self'; font-src 'self' data:; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
       "form-action 'self'")


def example_text() -> str:
    """The bundled example protocol (examples/nct05988216.toml, packaged beside the app)."""
    return resources.files("cartwin.serve").joinpath("examples", EXAMPLE).read_text()


class LimitBody:
    """ASGI middleware: refuse a request body over ``limit`` bytes (413) before it is read whole,
    whether or not it declares its length."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _too_large(self.limit, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _too_large(self.limit, send)


class _TooLarge(Exception):
    pass


async def _too_large(limit: int, send) -> None:
    # the limit in MiB as given (a limit under 1 MiB read '0 MiB' when rounded down), and the
    # setting that moves it
    body = (f"upload refused: larger than {limit / (1024 * 1024):.3g} MiB, the limit this server was "
            "started with (cartwin serve --max-upload-mb)").encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware: security headers on every response; form posts only from the app's origin."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if scope["method"] not in ("GET", "HEAD"):
            origin = headers.get(b"origin")
            host = headers.get(b"host", b"")
            if origin is not None and origin not in (b"http://" + host, b"https://" + host):
                body = b"refused: a request from another origin"
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return

        async def with_headers(message):
            if message["type"] == "http.response.start":
                extra = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                         (b"referrer-policy", b"same-origin"), (b"x-frame-options", b"DENY")]
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(runs_dir: str | Path, *, max_running: int = 1, workers: int = 1,
               allowed_hosts: list[str] | None = None, max_upload_bytes: int = MAX_UPLOAD_BYTES,
               start_scheduler: bool = True, protocol: tuple[str, str] | None = None,
               score_processes: int = 1) -> Starlette:
    """The application over the run folder ``runs_dir`` (created if missing). ``protocol``: the
    (text, file name) the editor opens with; the bundled example by default. ``score_processes``:
    uploads scored at once (each in a process of the scoring pool)."""
    opening = protocol or (example_text(), EXAMPLE)
    runs = jobs.Runs(runs_dir, max_running=max_running, workers=workers)
    scorer = ScorePool(score_processes)
    scores_root = runs.root / "_scores"
    scores_root.mkdir(exist_ok=True)
    env = jinja2.Environment(loader=jinja2.PackageLoader("cartwin.serve", "templates"), autoescape=True)
    env.globals.update(version=cartwin.__version__, downloads=DOWNLOADS)

    def page(template: str, code: int = 200, /, **context) -> HTMLResponse:
        context.setdefault("run_problems", [])
        context.setdefault("score_id", "")
        context.setdefault("design_problems", [])
        return HTMLResponse(env.get_template(template).render(**context), status_code=code)

    def folder_or_404(run_id: str, kind: str = "run"):
        try:
            return runs.folder(run_id, kind)
        except jobs.UnknownRun:
            what = "design search" if kind == "design" else "run"
            raise HTTPException(404, f"no {what} {run_id!r} in this app's run folder") from None

    def change_job_state(request: Request, action, kind: str) -> RedirectResponse:
        """Cancel, resume or restart a run or a design search (``kind``); a job in a state that
        does not allow it answers 409."""
        job_id = request.path_params[f"{kind}_id"]
        folder_or_404(job_id, kind)
        try:
            action(job_id)
        except jobs.RunStateError as exc:
            raise HTTPException(409, str(exc)) from None
        return RedirectResponse(f"/{kind}s/{job_id}", status_code=303)

    def complete_or_409(run_id: str) -> Path:
        folder_or_404(run_id)
        status = runs.status(run_id)
        if not status["readable"]:
            raise HTTPException(409, f"run {run_id} is {status['state']}; its results are read once it is done")
        return runs.run_dir(run_id)

    # --- design ------------------------------------------------------------------------------
    async def home(request: Request):
        return RedirectResponse("/design", status_code=303)

    async def design_page(request: Request):
        text, source = opening
        spec, spec_source = design_search.example_spec(), design_search.EXAMPLE_SPEC
        from_run = request.query_params.get("run")
        from_design = request.query_params.get("design")
        if from_run:
            folder_or_404(from_run)
            text, source = runs.protocol_text(from_run), f"{from_run}.toml"
        elif from_design:
            folder_or_404(from_design, "design")
            spec, source, text = runs.design_inputs(from_design)
            spec_source = runs.job(from_design).get("source") or design_search.DEFAULT_SPEC_SOURCE
        return await run_in_threadpool(_design_response, text, source, spec=spec, spec_source=spec_source)

    def _design_response(text: str, source: str, status: int = 200, run_problems: list[str] | None = None,
                         spec: str | None = None, spec_source: str | None = None,
                         design_problems: list[str] | None = None, options: dict[str, str] | None = None):
        """The Design page with both checks (run in a thread: the loaders read and plan); ``options``
        are the run and design options as the person typed them, shown again beside a refusal."""
        result = design.check(text, source)
        if spec is None:
            spec, spec_source = design_search.example_spec(), design_search.EXAMPLE_SPEC
        spec_check = design_search.check_spec(spec, spec_source or design_search.DEFAULT_SPEC_SOURCE, text, source)
        return page("design.html.j2", status, text=text, source=result.source, check=result,
                    form=forms.render(result.data or {}), active="design", run_problems=run_problems or [],
                    spec=spec, spec_source=spec_check.source, spec_check=spec_check,
                    design_problems=design_problems or [], designs=runs.list("design")[:10],
                    options=options or {})

    async def api_design_form(request: Request):
        body = await _json(request)
        fields = {str(k): str(v) for k, v in (body.get("fields") or {}).items()}
        if body.get("action"):
            fields = forms.apply_action(fields, str(body["action"]))
        data = forms.parse(fields)
        text = forms.to_toml(data)
        result = design.check(text, body.get("source") or design.DEFAULT_SOURCE)
        return JSONResponse({"toml": text, **_check_json(result), "form": str(forms.render(data))})

    async def api_design_toml(request: Request):
        body = await _json(request)
        text = str(body.get("toml", ""))
        result = design.check(text, body.get("source") or design.DEFAULT_SOURCE)
        return JSONResponse({"toml": text, **_check_json(result),
                             "form": str(forms.render(result.data or {})) if result.data is not None else None})

    async def api_design_upload(request: Request):
        async with request.form(max_files=1, max_fields=5) as form:
            upload = form.get("file")
            if upload is None or not hasattr(upload, "read"):
                return JSONResponse({"error": "choose a protocol file (.toml) to upload"}, status_code=400)
            name = design.safe_name(upload.filename)
            raw = await upload.read(design.MAX_PROTOCOL_BYTES + 1)
        error = _text_upload_problem(raw, name, (".toml",), design.MAX_PROTOCOL_BYTES)
        if error:
            return JSONResponse({"error": error}, status_code=400)
        text = raw.decode()
        result = design.check(text, name)
        return JSONResponse({"toml": text, **_check_json(result),
                             "form": str(forms.render(result.data or {})) if result.data is not None else None})

    async def design_download(request: Request):
        async with request.form(max_files=0, max_fields=RUN_FORM_FIELDS, max_part_size=design.MAX_PROTOCOL_BYTES) as form:
            text = str(form.get("toml", ""))
            name = design.safe_name(str(form.get("source", "")) or design.DEFAULT_SOURCE)
        if not name.endswith(".toml"):
            name += ".toml"
        return Response(text, media_type="application/toml",
                        headers={"content-disposition": f'attachment; filename="{name}"'})

    # --- design search -------------------------------------------------------------------------
    def _spec_check_json(spec: str, spec_source: str, text: str, source: str) -> dict:
        return design_search.check_spec(spec, spec_source or design_search.DEFAULT_SPEC_SOURCE, text,
                                        source or design.DEFAULT_SOURCE).as_json()

    async def api_design_spec(request: Request):
        body = await _json(request)
        spec = str(body.get("spec", ""))
        checked = await run_in_threadpool(_spec_check_json, spec, str(body.get("spec_source") or ""),
                                          str(body.get("toml", "")), str(body.get("source") or ""))
        return JSONResponse({"spec": spec, **checked})

    async def api_design_spec_upload(request: Request):
        async with request.form(max_files=1, max_fields=5, max_part_size=design.MAX_PROTOCOL_BYTES) as form:
            upload = form.get("file")
            if upload is None or not hasattr(upload, "read"):
                return JSONResponse({"error": "choose a design spec file (.toml) to upload"}, status_code=400)
            name = design.safe_name(upload.filename, design_search.DEFAULT_SPEC_SOURCE)
            raw = await upload.read(design_search.MAX_SPEC_BYTES + 1)
            text, source = str(form.get("toml", "")), str(form.get("source", ""))
        error = _text_upload_problem(raw, name, (".toml",), design_search.MAX_SPEC_BYTES)
        if error:
            return JSONResponse({"error": error}, status_code=400)
        spec = raw.decode()
        checked = await run_in_threadpool(_spec_check_json, spec, name, text, source)
        return JSONResponse({"spec": spec, **checked})

    async def design_spec_download(request: Request):
        async with request.form(max_files=0, max_fields=RUN_FORM_FIELDS, max_part_size=design.MAX_PROTOCOL_BYTES) as form:
            spec = str(form.get("spec", ""))
            name = design.safe_name(str(form.get("spec_source", "")), design_search.DEFAULT_SPEC_SOURCE)
        if not name.endswith(".toml"):
            name += ".toml"
        return Response(spec, media_type="application/toml",
                        headers={"content-disposition": f'attachment; filename="{name}"'})

    async def designs_create(request: Request):
        async with request.form(max_files=0, max_fields=RUN_FORM_FIELDS, max_part_size=design.MAX_PROTOCOL_BYTES) as form:
            text = str(form.get("toml", ""))
            source = str(form.get("source", "")) or design.DEFAULT_SOURCE
            spec = str(form.get("spec", ""))
            spec_source = str(form.get("spec_source", "")) or design_search.DEFAULT_SPEC_SOURCE
            raw_n = str(form.get("design_n", "")).strip()
            typed = {k: str(form.get(k, "")).strip() for k in ("n", "seed", "chunk_size")}
        problems = []
        patients = None
        if raw_n:
            try:
                patients = int(raw_n)
                if patients < 2:
                    raise ValueError
            except ValueError:
                problems.append(f"patients per design point: {raw_n!r} is not a whole number of at least 2")
        checked = await run_in_threadpool(design_search.check_spec, spec, spec_source, text, source)
        if problems or not checked.ok:
            return await run_in_threadpool(_design_response, text, source, 400, spec=spec, spec_source=spec_source,
                                           design_problems=problems, options={**typed, "design_n": raw_n})
        job_id = runs.create_design(spec, source=checked.source, design_id=checked.design_id,
                                    protocol_name=checked.protocol_name, protocol_text=checked.protocol_text,
                                    patients=patients)
        runs.wake()
        return RedirectResponse(f"/designs/{job_id}", status_code=303)

    async def design_job_page(request: Request):
        job_id = request.path_params["design_id"]
        folder_or_404(job_id, "design")
        status = runs.status(job_id)
        shown = None
        if status["readable"]:
            shown = await run_in_threadpool(design_search.result, runs.design_dir(job_id))
        return page("design_result.html.j2", job=status, shown=shown, active="design",
                    design_downloads={k: v[2] for k, v in design_search.DOWNLOADS.items()})

    async def api_design_job(request: Request):
        job_id = request.path_params["design_id"]
        folder_or_404(job_id, "design")
        return JSONResponse(runs.status(job_id))

    def _design_done_or_409(job_id: str) -> Path:
        folder_or_404(job_id, "design")
        status = runs.status(job_id)
        if not status["readable"]:
            raise HTTPException(409, f"design search {job_id} is {status['state']}; its result is read once it is done")
        return runs.design_dir(job_id)

    async def api_design_result(request: Request):
        out = _design_done_or_409(request.path_params["design_id"])
        return JSONResponse(await run_in_threadpool(design_search.result, out))

    async def design_job_report(request: Request):
        out = _design_done_or_409(request.path_params["design_id"])
        return FileResponse(out / "design.html", media_type="text/html")

    async def design_job_download(request: Request):
        job_id, kind = request.path_params["design_id"], request.path_params["kind"]
        if kind != "zip" and kind not in design_search.DOWNLOADS:
            raise HTTPException(404, f"no download {kind!r}; available: {sorted([*design_search.DOWNLOADS, 'zip'])}")
        out = _design_done_or_409(job_id)
        if kind == "zip":
            path = await run_in_threadpool(_zip_folder, out, runs.folder(job_id, "design") / jobs.DESIGN_ZIP)
            return FileResponse(path, media_type="application/zip", filename=f"{job_id}-design.zip")
        name, media, _ = design_search.DOWNLOADS[kind]
        if not (out / name).is_file():
            raise HTTPException(404, f"this design search wrote no {name}")
        return FileResponse(out / name, media_type=media, filename=f"{job_id}-{name}")

    async def design_job_spec(request: Request):
        job_id = request.path_params["design_id"]
        folder = folder_or_404(job_id, "design")
        return FileResponse(folder / jobs.SPEC, media_type="application/toml", filename=f"{job_id}.toml")

    async def design_job_cancel(request: Request):
        return change_job_state(request, runs.cancel, "design")

    async def design_job_restart(request: Request):
        response = change_job_state(request, runs.resume, "design")
        runs.wake()
        return response

    # --- runs ----------------------------------------------------------------------------------
    async def runs_create(request: Request):
        async with request.form(max_files=0, max_fields=RUN_FORM_FIELDS, max_part_size=design.MAX_PROTOCOL_BYTES) as form:
            text = str(form.get("toml", ""))
            source = str(form.get("source", "")) or design.DEFAULT_SOURCE
            options = {k: str(form.get(k, "")).strip() for k in ("n", "seed", "chunk_size", "design_n")}
            form_spec = (str(form.get("spec", "")), str(form.get("spec_source", "")))
        problems = []
        values: dict[str, int | None] = {}
        # the bounds of `cartwin run --n --seed --chunk-size`: a run of more patients per arm than
        # the command line allows would be queued and fill the disk before anyone noticed
        for key, low, high in (("n", 1, MAX_PATIENTS_PER_ARM), ("seed", 0, None), ("chunk_size", 1, None)):
            raw = options[key]
            if not raw:
                values[key] = None
                continue
            try:
                values[key] = int(raw)
            except ValueError:
                problems.append(f"{key}: {raw!r} is not a whole number of at least {low}")
                continue
            if values[key] < low:
                problems.append(f"{key}: {raw!r} is not a whole number of at least {low}")
            elif high is not None and values[key] > high:
                problems.append(f"{key}: {raw!r} is more than {high:,}, the most `cartwin run --{key}` allows")
        result = design.check(text, source)
        if problems or not result.ok:
            return await run_in_threadpool(_design_response, text, source, 400, problems,
                                           spec=form_spec[0] or None, spec_source=form_spec[1] or None,
                                           options=options)
        run_id = runs.create(text, source=result.source, study_id=result.study_id, n_per_arm=values["n"],
                             seed=values["seed"], chunk_size=values["chunk_size"])
        runs.wake()
        return RedirectResponse(f"/runs/{run_id}", status_code=303)

    async def runs_page(request: Request):
        return page("runs.html.j2", runs=runs.list(), designs=runs.list("design"), active="runs")

    async def run_page(request: Request):
        run_id = request.path_params["run_id"]
        folder_or_404(run_id)
        status = runs.status(run_id)
        context = {"run": status, "active": "runs", "header": None, "endpoints": None}
        if status["readable"]:
            run_dir = runs.run_dir(run_id)
            context["header"] = await run_in_threadpool(read.header, run_dir)
            context["endpoints"] = await run_in_threadpool(read.endpoint_table, run_dir)
            context["tests"] = await run_in_threadpool(read.tests, run_dir)
        return page("run.html.j2", **context)

    async def api_run(request: Request):
        run_id = request.path_params["run_id"]
        folder_or_404(run_id)
        return JSONResponse(runs.status(run_id))

    async def api_runs(request: Request):
        return JSONResponse(runs.list())

    async def run_cancel(request: Request):
        return change_job_state(request, runs.cancel, "run")

    async def run_resume(request: Request):
        response = change_job_state(request, runs.resume, "run")
        runs.wake()
        return response

    async def api_charts(request: Request):
        run_dir = complete_or_409(request.path_params["run_id"])
        return JSONResponse(await run_in_threadpool(read.charts, run_dir))

    async def api_trajectories(request: Request):
        run_dir = complete_or_409(request.path_params["run_id"])
        test = request.query_params.get("test", "")
        known = {t["test"] for t in await run_in_threadpool(read.tests, run_dir)}
        if test not in known:
            raise HTTPException(400, f"test {test!r} is not in this run; known: {sorted(known)}")
        return JSONResponse(await run_in_threadpool(read.trajectories, run_dir, test))

    async def api_endpoints(request: Request):
        run_dir = complete_or_409(request.path_params["run_id"])
        return JSONResponse(await run_in_threadpool(read.endpoint_table, run_dir))

    async def run_download(request: Request):
        run_id, kind = request.path_params["run_id"], request.path_params["kind"]
        if kind not in DOWNLOADS:
            raise HTTPException(404, f"no download {kind!r}; available: {sorted(DOWNLOADS)}")
        run_dir = complete_or_409(run_id)
        folder = runs.folder(run_id)
        if kind == "report":
            path = await run_in_threadpool(_report, run_dir)
            return FileResponse(path, media_type="text/html", filename=f"{run_id}-report.html")
        path = await run_in_threadpool(_export_zip, run_dir, folder / "exports", kind)
        return FileResponse(path, media_type="application/zip", filename=f"{run_id}-{kind}.zip")

    async def run_protocol_download(request: Request):
        run_id = request.path_params["run_id"]
        folder = folder_or_404(run_id)
        return FileResponse(folder / jobs.PROTOCOL, media_type="application/toml",
                            filename=f"{run_id}.toml")

    async def compare_page(request: Request):
        a, b = request.query_params.get("a", ""), request.query_params.get("b", "")
        done = [r for r in runs.list() if r["readable"]]
        chosen = []
        for run_id in (a, b):
            if run_id:
                folder_or_404(run_id)
                status = runs.status(run_id)
                if not status["readable"]:
                    raise HTTPException(409, f"run {run_id} is {status['state']}; compare finished runs")
                run_dir = runs.run_dir(run_id)
                chosen.append({"run": status, "header": await run_in_threadpool(read.header, run_dir),
                               "endpoints": await run_in_threadpool(read.endpoint_table, run_dir)})
        return page("compare.html.j2", done=done, a=a, b=b, chosen=chosen, active="compare")

    # --- score -------------------------------------------------------------------------------
    async def score_page(request: Request):
        return page("score.html.j2", active="score", result=None, error=None)

    async def score_post(request: Request):
        async with request.form(max_files=1, max_fields=5) as form:
            upload = form.get("file")
            if upload is None or not hasattr(upload, "read"):
                return page("score.html.j2", 400, active="score", result=None,
                            error={"message": "choose a CSV file of observations to upload", "rows": []})
            name = design.safe_name(upload.filename, "observations.csv")
            raw = await upload.read(max_upload_bytes + 1)
        problem = _text_upload_problem(raw, name, (".csv",), max_upload_bytes)
        if problem:
            return page("score.html.j2", 400, active="score", result=None, error={"message": problem, "rows": []})
        score_id = f"s{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
        folder = scores_root / score_id
        folder.mkdir()
        (folder / name).write_bytes(raw)
        outcome = await scorer.score(folder, name)
        status = 200 if "result" in outcome else 400
        if status != 200:
            shutil.rmtree(folder, ignore_errors=True)
        return page("score.html.j2", status, active="score", score_id=score_id, name=name,
                    result=outcome.get("result"), error=outcome.get("error"))

    async def score_download(request: Request):
        score_id = request.path_params["score_id"]
        if not SCORE_ID.match(score_id) or not (scores_root / score_id / "scored").is_dir():
            raise HTTPException(404, "no such scoring")
        path = await run_in_threadpool(_zip_folder, scores_root / score_id / "scored",
                                       scores_root / score_id / "scored.zip")
        return FileResponse(path, media_type="application/zip", filename=f"{score_id}-scores.zip")

    async def not_found(request: Request, exc: HTTPException):
        if request.url.path.startswith("/api/"):  # a script's request: the error as the API's JSON
            return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)
        return page("error.html.j2", exc.status_code, status=exc.status_code, detail=exc.detail, active="")

    @asynccontextmanager
    async def lifespan(app):
        if start_scheduler:
            runs.start()
        try:
            yield
        finally:
            runs.stop()
            scorer.shutdown()

    static = StaticFiles(directory=str(resources.files("cartwin.serve").joinpath("static")))
    routes = [
        Route("/", home),
        Route("/design", design_page),
        Route("/design/download", design_download, methods=["POST"]),
        Route("/api/design/form", api_design_form, methods=["POST"]),
        Route("/api/design/toml", api_design_toml, methods=["POST"]),
        Route("/api/design/upload", api_design_upload, methods=["POST"]),
        Route("/api/design/spec", api_design_spec, methods=["POST"]),
        Route("/api/design/spec/upload", api_design_spec_upload, methods=["POST"]),
        Route("/design/spec/download", design_spec_download, methods=["POST"]),
        Route("/designs", designs_create, methods=["POST"]),
        Route("/designs/{design_id}", design_job_page),
        Route("/designs/{design_id}/cancel", design_job_cancel, methods=["POST"]),
        Route("/designs/{design_id}/restart", design_job_restart, methods=["POST"]),
        Route("/designs/{design_id}/spec", design_job_spec),
        Route("/designs/{design_id}/report", design_job_report),
        Route("/designs/{design_id}/download/{kind}", design_job_download),
        Route("/api/designs/{design_id}", api_design_job),
        Route("/api/designs/{design_id}/result", api_design_result),
        Route("/runs", runs_page),
        Route("/runs", runs_create, methods=["POST"]),
        Route("/runs/{run_id}", run_page),
        Route("/runs/{run_id}/cancel", run_cancel, methods=["POST"]),
        Route("/runs/{run_id}/resume", run_resume, methods=["POST"]),
        Route("/runs/{run_id}/protocol", run_protocol_download),
        Route("/runs/{run_id}/download/{kind}", run_download),
        Route("/api/runs", api_runs),
        Route("/api/runs/{run_id}", api_run),
        Route("/api/runs/{run_id}/charts", api_charts),
        Route("/api/runs/{run_id}/endpoints", api_endpoints),
        Route("/api/runs/{run_id}/trajectories", api_trajectories),
        Route("/compare", compare_page),
        Route("/score", score_page),
        Route("/score", score_post, methods=["POST"]),
        Route("/score/{score_id}/download", score_download),
        Mount("/static", static, name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or ["127.0.0.1", "localhost"]),
                  Middleware(LimitBody, limit=max_upload_bytes), Middleware(Guard)]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan,
                    exception_handlers={HTTPException: not_found})
    app.state.runs = runs
    app.state.scorer = scorer
    return app


async def _json(request: Request) -> dict:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise HTTPException(400, "expected a JSON body") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "expected a JSON object")
    return body


def _check_json(result: design.Check) -> dict:
    return {"ok": result.ok, "problems": result.problems, "message": result.message(), "source": result.source,
            "summary": result.summary}


def _text_upload_problem(raw: bytes, name: str, suffixes: tuple[str, ...], limit: int) -> str | None:
    if len(raw) > limit:
        return f"{name}: larger than {limit // 1024} KiB; refused"
    if not name.lower().endswith(suffixes):
        return f"{name}: expected a {' or '.join(suffixes)} file"
    if b"\x00" in raw:
        return f"{name}: not a text file"
    try:
        raw.decode()
    except UnicodeDecodeError:
        return f"{name}: not UTF-8 text"
    return None


_REPORT_LOCK = threading.Lock()  # matplotlib draws one figure set at a time


def _report(run_dir: Path) -> Path:
    """The run's HTML report, written on first download (the scores it needs are already stored)."""
    from cartwin.report import write_report

    path = run_dir / "report" / "report.html"
    with _REPORT_LOCK:
        if not path.exists():
            write_report(run_dir, workers=1)
    return path


def _zip_folder(folder: Path, target: Path) -> Path:
    if not target.exists():
        tmp = target.with_suffix(".partial")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for path in sorted(folder.rglob("*")):
                if path.is_file() and not path.is_symlink():
                    z.write(path, path.relative_to(folder.parent))
        tmp.replace(target)
    return target


def _export_zip(run_dir: Path, exports: Path, kind: str) -> Path:
    """The zip of one export of a completed run, made once and kept in the run's folder."""
    from cartwin.store import layout

    exports.mkdir(exist_ok=True)
    target = exports / f"{kind}.zip"
    if target.exists():
        return target
    if kind == "parquet":
        staging = exports / "parquet"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        for name in (layout.MANIFEST, layout.DICTIONARY, layout.PROTOCOL, *(layout.table_folder(t) for t in layout.TABLES)):
            src = run_dir / name
            if src.is_dir():
                shutil.copytree(src, staging / name)
            elif src.is_file():
                shutil.copy2(src, staging / name)
        path = _zip_folder(staging, target)
        shutil.rmtree(staging, ignore_errors=True)
        return path
    staging = exports / kind
    if staging.exists():
        shutil.rmtree(staging)
    if kind == "cdisc":
        from cartwin.io.cdisc import export_cdisc
        export_cdisc(run_dir, staging)
    elif kind == "nonmem":
        from cartwin.io.nonmem import export_nonmem
        staging.mkdir()
        export_nonmem(run_dir, staging / "nonmem.csv")
    return _zip_folder(staging, target)


__all__ = ["create_app", "example_text", "MAX_UPLOAD_BYTES"]
