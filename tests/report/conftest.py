"""A small two-arm run of the NCT05988216 twin, simulated once per test session and reported."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import tomli_w

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def twin_run(tmp_path_factory) -> Path:
    """The 4-patient twin (TyU19 after reduced Flu/Cy) plus the same patients without lymphodepletion:
    two arms, so that overlays, swimmer plots per arm and arm differences all appear."""
    from cartwin.protocol import load_protocol
    from cartwin.run import run_protocol

    protocol = tomllib.loads((ROOT / "examples" / "nct05988216.toml").read_text())
    second = dict(protocol["arms"][0], id="tyu19_none", label="TyU19 1e6/kg without lymphodepletion",
                  lymphodepletion="none")
    protocol["arms"].append(second)
    base = tmp_path_factory.mktemp("report")
    path = base / "twin2.toml"
    path.write_text(tomli_w.dumps(protocol))
    out = base / "run"
    run_protocol(load_protocol(path), out, workers=1)
    return out


@pytest.fixture(scope="session")
def reported_twin(twin_run) -> tuple[Path, Path, dict]:
    from cartwin.report import write_report

    timings: dict = {}
    html = write_report(twin_run, workers=1, timings=timings)
    return twin_run, html, timings


@pytest.fixture(scope="session")
def clinical_scores(twin_run, tmp_path_factory) -> Path:
    """The clinical layer's own scoring of the whole run, independent of the report's part-wise cache."""
    from cartwin.scoring import score

    out = tmp_path_factory.mktemp("clinical")
    score(twin_run, out)
    return out
