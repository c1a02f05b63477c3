"""``cartwin serve``: a local web app to design, run and read virtual trials, and to score patients.

A front door like the command line (docs/serve.md): it imports the other rooms thinly. The pieces:
:mod:`~cartwin.serve.forms` (the protocol editor generated from the schema),
:mod:`~cartwin.serve.design` (the checks of ``cartwin validate``), :mod:`~cartwin.serve.jobs` (the
run folder, the queue and the worker processes), :mod:`~cartwin.serve.worker` (one run),
:mod:`~cartwin.serve.read` (what the pages chart and tabulate) and :mod:`~cartwin.serve.app`
(the Starlette application).
"""

from __future__ import annotations

from pathlib import Path


def serve(runs_dir: str | Path = "cartwin-runs", *, host: str = "127.0.0.1", port: int = 8765,
          workers: int = 1, max_running: int = 1, protocol: str | Path | None = None,
          max_upload_mb: float = 5.0, log_level: str = "warning") -> None:
    """Serve the app until interrupted (``cartwin serve``). Binds to the loopback address unless
    ``host`` says otherwise."""
    import uvicorn

    from cartwin.serve.app import create_app

    opening = None
    if protocol is not None:
        path = Path(protocol)
        opening = (path.read_text(encoding="utf-8"), path.name)
    hosts = ["*"] if host in ("0.0.0.0", "::") else sorted({host, "127.0.0.1", "localhost"})
    app = create_app(runs_dir, max_running=max_running, workers=workers, allowed_hosts=hosts,
                     max_upload_bytes=int(max_upload_mb * 1024 * 1024), protocol=opening)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
