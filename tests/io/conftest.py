"""A small simulated run shared by the NONMEM and CDISC tests (two arms, five patients)."""

from __future__ import annotations

import copy

import pytest
import tomli_w

from cartwin.protocol import load_protocol
from cartwin.run import run_protocol

from tests.conftest import BASE_PROTOCOL


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    protocol = copy.deepcopy(BASE_PROTOCOL)
    protocol["arms"][0]["n"] = 3
    protocol["arms"][1]["n"] = 2
    protocol["schedule"] = {"days": [-6, -3, 0, 1, 3, 7, 10, 14, 21, 28, 56, 90, 120]}
    base = tmp_path_factory.mktemp("io-run")
    path = base / "protocol.toml"
    path.write_bytes(tomli_w.dumps(protocol).encode())
    out = base / "run"
    summary = run_protocol(load_protocol(path), out, workers=1)
    assert summary.n_failed == 0
    return out


@pytest.fixture(scope="session")
def sampled_run_dir(tmp_path_factory):
    """A run of five patients in one arm that keeps the observations of the first two only
    ([store] observations_per_arm = 2), for the exports' handling of the patients not stored."""
    protocol = copy.deepcopy(BASE_PROTOCOL)
    protocol["follow_up_days"] = 28
    protocol["schedule"] = {"days": [-6, 0, 7, 28]}
    protocol["arms"] = protocol["arms"][:1]
    protocol["arms"][0]["n"] = 5
    protocol["store"] = {"observations_per_arm": 2}
    base = tmp_path_factory.mktemp("io-sampled-run")
    path = base / "protocol.toml"
    path.write_bytes(tomli_w.dumps(protocol).encode())
    run_protocol(load_protocol(path), base / "run", workers=1)
    return base / "run"
