"""Fuzzing the doors a user opens: protocol values, observation files and CLI arguments.

Every input ends in success or in a clear refusal that names the file, the field or the row: no
traceback, no hang, no silent coercion (an accepted protocol holds no NaN, infinity or a boolean
where a number belongs), exit codes 0 (success) or 2 (bad input) only.

CI runs a bounded number of cases per property (``CARTWIN_FUZZ_EXAMPLES``, default 50, a few
seconds each). The long mode runs at least 10,000 per property:

    CARTWIN_FUZZ_EXAMPLES=10000 python -m pytest -q tests/fuzz
"""

from __future__ import annotations

import copy
import math
import os
import sys
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cartwin.clinical import ObservationError
from cartwin.io.observations import read_observations
from cartwin.protocol import ProtocolError, parse_protocol
from cartwin.protocol.load import schedule_days
from cartwin.protocol.schema import MAX_SCHEDULE_DAYS
from tests.conftest import BASE_PROTOCOL

EXAMPLES = int(os.environ.get("CARTWIN_FUZZ_EXAMPLES", "50"))
FUZZ = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=5), derandomize=EXAMPLES <= 50,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# --- protocols ---------------------------------------------------------------------------------
def _leaves(obj, path=()):
    """Every (path, value) of a nested dict/list, containers included."""
    yield path, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, path + (i,))


PATHS = [p for p, _ in _leaves(BASE_PROTOCOL) if p]

WEIRD = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, True, False, 0, -1, 1e12, 10**12, -1e-300, 1e308,
                     "", " ", "5", "true", "no", "nan", [], {}, [True], [math.nan], {"x": 1}]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**15), max_value=10**15),
    st.text(max_size=12),
    st.lists(st.one_of(st.floats(), st.integers(-5, 400), st.booleans()), max_size=6),
)


def _set(data, path, value):
    target = data
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = value


def _numbers(obj):
    """Every number of a validated protocol (booleans only where a flag belongs)."""
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, float):
        yield obj


@FUZZ
@given(mutations=st.lists(st.tuples(st.sampled_from(PATHS), WEIRD), min_size=1, max_size=3))
def test_protocol_mutations_are_accepted_cleanly_or_refused_by_field(mutations):
    data = copy.deepcopy(BASE_PROTOCOL)
    for path, value in mutations:
        try:
            _set(data, path, copy.deepcopy(value))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation replaced the container
    try:
        p = parse_protocol(data, "fuzz.toml")
    except ProtocolError as exc:
        assert exc.source == "fuzz.toml" and exc.problems
        for problem in exc.problems:
            assert ": " in problem, problem  # "<field>: <what is wrong>"
        return
    dumped = p.model_dump()
    assert all(math.isfinite(x) for x in _numbers(dumped)), dumped
    assert not isinstance(dumped["seed"], bool)
    assert all(not isinstance(a["n"], bool) for a in dumped["arms"])
    assert len(schedule_days(p)) <= MAX_SCHEDULE_DAYS + 1


# --- observation files -------------------------------------------------------------------------
CELLS = {
    "subject": st.sampled_from(["P1", "P2", "", " P1", "P 3", "é"]),
    "day": st.one_of(st.sampled_from(["0", "7", "7 ", " -3", "inf", "-inf", "nan", "", "x", "1e400",
                                      "true", "3.5"]), st.floats().map(repr)),
    "test": st.sampled_from(["NEUT", "HGB", "PLT", "CRP", "SD_RASH", "neut", "", "XYZ", "PGA"]),
    "value": st.one_of(st.sampled_from(["1.2", "400", "-1", "inf", "nan", "", "NA", "1,2", "0", "1e308"]),
                       st.floats().map(repr)),
    "unit": st.sampled_from(["10^9/L", "g/L", "g/dL", "mmol/L", "mg/L", "", "cells/uL", "???"]),
    "lower": st.sampled_from(["", "1.5", "3", "-1", "inf", "x"]),
    "upper": st.sampled_from(["", "2", "100", "-2", "inf", "nan"]),
}
ROW = st.fixed_dictionaries(CELLS)


@FUZZ
@given(rows=st.lists(st.tuples(ROW, st.integers(2, 7)), min_size=1, max_size=8))
def test_observation_files_are_read_or_refused_with_file_row_and_column(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("fuzz-obs") / "obs.csv"
    header = list(CELLS)
    lines = [",".join(header)]
    for cells, width in rows:  # some rows are short on purpose
        lines.append(",".join(cells[c] for c in header[:width]))
    path.write_text("\n".join(lines) + "\n")
    try:
        obs = read_observations(path)
    except ObservationError as exc:
        msg = str(exc)
        assert "obs.csv" in msg, msg
        assert exc.rows or exc.column, msg
        assert "polars" not in msg.lower(), msg
        return
    frame = obs.frame
    for column in ("day", "value", "lower", "upper"):
        if column in frame.columns:
            values = [v for v in frame[column].to_list() if v is not None]
            assert all(math.isfinite(v) for v in values), (column, values)


# --- CLI arguments -----------------------------------------------------------------------------
TOKENS = st.sampled_from([
    "run", "validate", "show", "score", "report", "export", "sdtm", "nonmem", "sbml", "fit",
    "sensitivity", "--out", "-o", "--n", "--seed", "--workers", "--chunk-size", "--resume",
    "--cluster", "--tests", "--estimate", "-1", "0", "1e3", "abc", "", "/nonexistent",
    "/dev/null", "--version", "--bogus", "local", "tcp://", "NAME=", "=1",
])


@FUZZ
@given(argv=st.lists(TOKENS, min_size=0, max_size=6))
def test_cli_arguments_exit_0_or_2_never_a_traceback(tmp_path_factory, monkeypatch, capsys, argv):
    from cartwin import cli
    cwd = tmp_path_factory.mktemp("fuzz-cli")
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["cartwin", *argv])
    with pytest.raises(SystemExit) as exc:
        cli.main()
        raise SystemExit(0)
    captured = capsys.readouterr()
    text = captured.err + captured.out
    code = exc.value.code or 0
    assert code in (0, 2), (argv, code, text)
    assert "Traceback" not in text, (argv, text)
    if code == 2:
        assert text.strip(), argv  # a refusal always says why
