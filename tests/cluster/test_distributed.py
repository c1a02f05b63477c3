"""Runs on a real Dask cluster (scheduler and worker processes on loopback): the numbers equal the
in-process run's, futures in flight stay bounded, and a killed worker or a killed client loses and
duplicates no patient."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest

from cartwin.protocol import load_protocol, parse_protocol
from cartwin.run import run_protocol
from cartwin.simulate import distributed as dist
from cartwin.plan import ChunkSpec, make_plan, make_work, run_chunk
from cartwin.run import simulate
from cartwin.store.run_directory import TABLES, RunDirectory
from tests.conftest import write_protocol

CLI = [sys.executable, "-m", "cartwin.cli"]


def _cli(*args, **kw):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, **kw)


def stored_observations(run_dir: Path) -> pl.DataFrame:
    return pl.read_parquet(run_dir / "observations.parquet" / "*.parquet").with_columns(
        pl.col("arm").cast(pl.String), pl.col("test").cast(pl.String), pl.col("unit").cast(pl.String)
    ).sort(["subject", "day", "test"])


def stored_patients(run_dir: Path) -> pl.DataFrame:
    return pl.read_parquet(run_dir / "patients.parquet" / "*.parquet").sort("subject")


def assert_equals_in_process(run_dir: Path, protocol_path: Path, reference=None):
    reference = reference or simulate(load_protocol(protocol_path).protocol, workers=1, chunk_size=1000)
    assert stored_observations(run_dir).equals(reference.observations.sort(["subject", "day", "test"]))
    assert stored_patients(run_dir).equals(reference.patients.sort("subject"))


def count_patients(run_dir: Path) -> tuple[int, int]:
    con = duckdb.connect(str(run_dir / "results.duckdb"), read_only=True)
    try:
        return con.execute("SELECT count(*), count(DISTINCT subject) FROM patients").fetchone()
    finally:
        con.close()


def chunk_of(key: str) -> str:
    """cartwin-part-AAA-SSSSSSSSS-<call id> -> part-AAA-SSSSSSSSS"""
    return key.removeprefix("cartwin-").rsplit("-", 1)[0]


# --- without a cluster ---------------------------------------------------------------------------
def test_a_recomputed_chunk_rewrites_the_same_values(tmp_path, protocol_dict):
    """What makes a worker's death harmless: a chunk computed twice stores the same table under the
    same names, so the second write replaces the first and adds no patient."""
    p = parse_protocol(protocol_dict)
    ctx = make_work(p)
    spec = ChunkSpec(1, "tyu19", 2, 5)
    rundir = RunDirectory(tmp_path / "run")
    rundir.write_chunk(run_chunk(ctx, spec))
    first = {t: pq.read_table(rundir.part(t, spec.name)) for t in TABLES}
    rundir.write_chunk(run_chunk(ctx, spec))
    assert sorted(str(f.relative_to(rundir.path)) for f in rundir.path.rglob("*") if f.is_file()) == \
        sorted(f"{t}.parquet/{spec.name}.parquet" for t in TABLES)
    for table in TABLES:
        assert pq.read_table(rundir.part(table, spec.name)).equals(first[table])
    assert first["patients"]["subject"].to_pylist() == ["tyu19-000003", "tyu19-000004", "tyu19-000005"]


def test_a_worker_that_cannot_see_the_run_directory_refuses_the_chunk(tmp_path, protocol_dict):
    p = parse_protocol(protocol_dict)
    ctx = make_work(p)
    rundir = RunDirectory(tmp_path / "elsewhere")
    with pytest.raises(dist.SharedPathMissing, match="cannot see .*run.json"):
        dist.compute_and_store(ctx, ChunkSpec(0, "auto", 0, 1), rundir.write_chunk, str(rundir.run_json))
    assert not rundir.path.exists()


def test_a_worker_with_another_model_refuses_the_chunk(tmp_path, protocol_dict):
    p = parse_protocol(protocol_dict)
    ctx = make_work(p)
    rundir = RunDirectory(tmp_path / "run")
    rundir.path.mkdir()
    with pytest.raises(dist.WorkerModelMismatch, match="install the same cartwin on every worker"):
        dist.compute_and_store(ctx, ChunkSpec(0, "auto", 0, 1), rundir.write_chunk, None, "0123456789abcdef")
    assert not any(rundir.path.iterdir())
    dist.compute_and_store(ctx, ChunkSpec(0, "auto", 0, 1), rundir.write_chunk, None, ctx.model.content_hash())
    assert rundir.chunk_done("part-000-000000000")


def cartwin_main(monkeypatch, *args) -> int:
    """The CLI in this process (a subprocess would spend seconds importing): its exit code."""
    from cartwin import cli
    monkeypatch.setattr(sys, "argv", ["cartwin", *map(str, args)])
    try:
        cli.main()
    except SystemExit as exit_:
        return exit_.code
    return 0


def test_cli_rejects_inconsistent_cluster_options(tmp_path, protocol_dict, monkeypatch, capsys):
    path = write_protocol(tmp_path / "p.toml", protocol_dict)
    code = cartwin_main(monkeypatch, "run", path, "--out", tmp_path / "r", "--cluster", "tcp://127.0.0.1:8786",
                        "--workers", "2")
    assert code == 2 and "--workers sets the size of a local cluster" in capsys.readouterr().err
    code = cartwin_main(monkeypatch, "run", path, "--out", tmp_path / "r", "--cluster", "nowhere")
    assert code == 2 and "expected 'local' or a scheduler address" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# --- on the shared loopback cluster --------------------------------------------------------------
def test_cluster_run_equals_in_process_run_across_chunk_sizes(tmp_path, protocol_dict, dask_cluster):
    protocol_dict["arms"][0]["n"] = 9
    path = write_protocol(tmp_path / "p.toml", protocol_dict)
    reference = simulate(load_protocol(path).protocol, workers=1, chunk_size=1000)
    for chunk_size in (1, 7):
        out = tmp_path / f"run-{chunk_size}"
        summary = run_protocol(load_protocol(path), out, chunk_size=chunk_size,
                               cluster=dask_cluster.scheduler_address)
        assert summary.n_total == 14 and summary.chunks_computed == (14 if chunk_size == 1 else 3)
        assert_equals_in_process(out, path, reference)  # value for value
        execution = json.loads((out / "manifest.json").read_text())["execution"]
        assert execution["executor"] == "dask" and execution["cluster"] == dask_cluster.scheduler_address
        assert execution["workers"] == 2 and execution["worker_threads"] == 2


def test_futures_in_flight_stay_bounded(tmp_path, protocol_dict, dask_cluster, monkeypatch):
    """Memory on the client and the workers does not grow with the number of chunks."""
    p = parse_protocol(protocol_dict)
    plan = make_plan(p, n_per_arm=20, chunk_size=1)
    ctx = make_work(p, plan.seed)
    rundir = RunDirectory(tmp_path / "run")
    rundir.path.mkdir()
    submitted = []
    with dist.DaskExecutor(dask_cluster.scheduler_address) as executor:
        executor.start()
        real_submit = executor.client.submit
        monkeypatch.setattr(executor.client, "submit", lambda *a, **kw: submitted.append(1) or real_submit(*a, **kw))
        most_in_flight = 0
        for consumed, _ in enumerate(executor.execute(ctx, plan.chunks, rundir.write_chunk), start=1):
            most_in_flight = max(most_in_flight, len(submitted) - consumed + 1)
    assert len(submitted) == len(plan.chunks) == 40
    assert 2 <= most_in_flight <= dist.IN_FLIGHT_PER_THREAD * 2


def test_worker_killed_mid_run_loses_and_duplicates_no_patient(tmp_path, protocol_dict, dask_cluster, monitor):
    for arm in protocol_dict["arms"]:
        arm["n"] = 150
    # a daily schedule makes each chunk's tables large enough that storing it takes most of a
    # second: a worker seen busy with an unstored chunk is still busy when the kill lands
    protocol_dict["schedule"] = {"every": 1, "start": -6, "stop": 120}
    path = write_protocol(tmp_path / "p.toml", protocol_dict)
    out = tmp_path / "run"
    outcome = {}

    def run():
        try:
            outcome["summary"] = run_protocol(load_protocol(path), out, chunk_size=40,
                                              cluster=dask_cluster.scheduler_address)
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    runner = threading.Thread(target=run)
    runner.start()
    parts = out / "patients.parquet"
    lost = []
    # A worker seen busy with an unstored chunk may store it in the moment before the kill lands
    # (on a loaded machine): then it lost nothing, and another busy worker is killed, up to three.
    for _ in range(3):
        worker_pids = monitor.run(os.getpid)  # worker address -> pid of its process (a killed one restarts)
        victim, assigned = None, []
        deadline = time.time() + 120
        while time.time() < deadline and victim is None:
            if parts.exists() and len(list(parts.glob("part-*.parquet"))) >= 2:
                # a worker whose current chunk is not stored yet
                busy = {w: keys for w, keys in monitor.processing().items()
                        if w in worker_pids and keys
                        and not all((parts / f"{chunk_of(k)}.parquet").exists() for k in keys)}
                if busy:
                    victim, assigned = next(iter(busy.items()))
            time.sleep(0.01)
        assert victim is not None, "the run should still be going when the worker is killed"
        os.kill(worker_pids[victim], signal.SIGKILL)
        time.sleep(0.2)  # the process is gone: what it had not stored is lost
        lost = [chunk_of(k) for k in assigned if not (parts / f"{chunk_of(k)}.parquet").exists()]
        if lost:
            break
    assert lost, "the killed worker should have held unfinished chunks"
    runner.join(timeout=180)
    assert not runner.is_alive() and "error" not in outcome, outcome.get("error")
    assert outcome["summary"].n_total == 300
    assert count_patients(out) == (300, 300)
    # each lost chunk was recomputed (elsewhere, or by the restarted worker) to the values an
    # in-process computation gives
    p = load_protocol(path).protocol
    ctx = make_work(p)
    specs = {c.name: c for c in make_plan(p, chunk_size=40).chunks}
    reference = RunDirectory(tmp_path / "reference")
    for name in lost:
        reference.write_chunk(run_chunk(ctx, specs[name]))
        for table in TABLES:
            assert pq.read_table(out / f"{table}.parquet" / f"{name}.parquet").equals(
                pq.read_table(reference.part(table, name)))


def test_client_killed_mid_run_completes_with_resume(tmp_path, protocol_dict, dask_cluster, monitor):
    for arm in protocol_dict["arms"]:
        arm["n"] = 100
    path = write_protocol(tmp_path / "p.toml", protocol_dict)
    out = tmp_path / "run"
    n_chunks = 50
    client = subprocess.Popen(CLI + ["run", str(path), "--out", str(out), "--chunk-size", "4",
                                     "--cluster", dask_cluster.scheduler_address],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    parts = out / "patients.parquet"
    deadline = time.time() + 120
    while time.time() < deadline:
        if parts.exists() and len(list(parts.glob("part-*.parquet"))) >= 5:
            break
        time.sleep(0.01)
    client.send_signal(signal.SIGKILL)
    client.wait()
    done_before = len(list(parts.glob("part-*.parquet")))
    assert 5 <= done_before < n_chunks, "the kill should land mid-run"
    assert not (out / "manifest.json").exists()
    # tasks the dead client left running may still land while the resumed run works: they write
    # the same bytes under the same names
    summary = run_protocol(load_protocol(path), out, resume=True, cluster=dask_cluster.scheduler_address)
    assert summary.chunks_reused >= done_before
    assert summary.chunks_reused + summary.chunks_computed == n_chunks
    assert count_patients(out) == (200, 200)
    assert_equals_in_process(out, path)


# --- a local cluster started by the CLI ----------------------------------------------------------
def test_cli_local_cluster_run_equals_in_process_run(tmp_path, protocol_dict, monkeypatch):
    protocol_dict["arms"][0]["n"] = 4
    protocol_dict["arms"][1]["n"] = 3
    path = write_protocol(tmp_path / "p.toml", protocol_dict)
    out = tmp_path / "run"
    code = cartwin_main(monkeypatch, "run", path, "--out", out, "--cluster", "local", "--workers", "2",
                        "--chunk-size", "2")
    assert code == 0
    execution = json.loads((out / "manifest.json").read_text())["execution"]
    assert (execution["executor"], execution["cluster"], execution["workers"]) == ("dask", "local", 2)
    assert execution["chunks_computed"] == 4
    assert_equals_in_process(out, path)


def test_a_worker_whose_installation_has_another_model_version_refuses(tmp_path, protocol_dict, monkeypatch):
    """The work carries the client's model declaration; the worker's own installation generates
    and solves it, so a worker with another version of that model refuses the chunk."""
    import dataclasses

    from cartwin import model as model_registry
    p = parse_protocol(protocol_dict)
    ctx = make_work(p)
    other = dataclasses.replace(ctx.model, version=ctx.model.version + "-other")
    monkeypatch.setitem(model_registry.MODELS, ctx.model.name, other)
    rundir = RunDirectory(tmp_path / "run")
    rundir.path.mkdir()
    with pytest.raises(dist.WorkerModelMismatch, match="install the same cartwin"):
        dist.compute_and_store(ctx, ChunkSpec(0, "auto", 0, 1), rundir.write_chunk, None, ctx.model.content_hash())
    assert not any(rundir.path.iterdir())


def _slow_exit() -> None:
    import atexit
    import time
    atexit.register(time.sleep, 20)  # as LLVM's teardown of a compiled model, only longer


def test_a_local_cluster_closes_without_killing_its_workers():
    """Every local-cluster run used to end with "Worker process still alive after 4.0 seconds,
    killing": a worker that has solved patients takes seconds to tear down the compiled model at
    exit, longer than the nanny waits. A worker whose exit would take 20 s must leave at once."""
    import logging
    import time

    from cartwin.simulate.distributed import DaskExecutor

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep(level=logging.WARNING)
    logger = logging.getLogger("distributed.nanny")
    logger.addHandler(handler)
    try:
        executor = DaskExecutor("local", n_workers=1).start()
        executor.client.wait_for_workers(1, timeout=60)
        executor.client.run(_slow_exit)
        start = time.monotonic()
        executor.close()
        elapsed = time.monotonic() - start
    finally:
        logger.removeHandler(handler)
    assert not [r.getMessage() for r in records if "still alive" in r.getMessage()]
    assert elapsed < 4.0
