import copy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

BASE_PROTOCOL = {
    "schema_version": 1,
    "study_id": "TEST-001",
    "seed": 7,
    "follow_up_days": 120,
    "schedule": {"days": [-6, 0, 7, 14, 28, 56, 90, 120]},
    "population": {
        "sex": {"female": 0.9},
        "age": {"dist": "uniform", "low": 18, "high": 45},
        "weight": {"dist": "lognormal", "median": 62, "cv": 0.18, "low": 40, "high": 120},
        "height": {"dist": "normal", "mean": 165, "sd": 7},
        "creatinine": {"unit": "umol/L", "distribution": {"dist": "lognormal", "median": 68, "cv": 0.25}},
        "disease": {
            "dsdna": {"unit": "IU/mL", "distribution": {"dist": "lognormal", "median": 150, "cv": 0.8}},
            "c3": {"unit": "g/L", "distribution": {"dist": "lognormal", "median": 0.65, "cv": 0.2}},
            "c4": {"unit": "g/L", "distribution": {"dist": "lognormal", "median": 0.08, "cv": 0.3}},
            "proteinuria": {"unit": "g/24h", "distribution": {"dist": "lognormal", "median": 0.6, "cv": 0.8}},
            "pga": {"dist": "uniform", "low": 1.5, "high": 2.8},
            "descriptors": {"arthritis": 0.8, "rash": 0.5, "alopecia": 0.5, "hematuria": 0.3},
        },
    },
    "arms": [
        {"id": "auto", "product": "autologous_cd19", "dose": {"cells_per_kg": 1e6},
         "lymphodepletion": "erlangen", "n": 6},
        {"id": "tyu19", "product": "tyu19", "dose": {"cells_per_kg": 1e6},
         "lymphodepletion": "reduced", "n": 5},
    ],
}


def explicit_patient(pid: str, **changes) -> dict:
    """One explicit patient of a protocol's population list (a young woman with active SLE)."""
    patient = {"id": pid, "sex": "F", "age": 22, "weight": 55, "height": 160, "creatinine": 60,
               "dsdna": 100, "c3": 0.6, "c4": 0.07, "proteinuria": 0.5, "pga": 2}
    patient.update(changes)
    return patient


def use_explicit_patients(protocol: dict, patients: list[dict]) -> None:
    """Replace the drawn population by ``patients``; arms then take the list's size."""
    protocol["population"] = {"patients": patients}
    for arm in protocol["arms"]:
        arm.pop("n")


@pytest.fixture
def protocol_dict():
    return copy.deepcopy(BASE_PROTOCOL)


def write_protocol(path: Path, data: dict) -> Path:
    """Write a protocol dict as TOML (a tiny writer for the shapes our tests use)."""
    import tomli_w
    path.write_text(tomli_w.dumps(data))
    return path


def call_cli(monkeypatch, capsys, *args) -> tuple[int, str]:
    """Run the CLI in-process as a user would call it; its exit code and everything it printed."""
    import sys

    from cartwin import cli
    monkeypatch.setattr(sys, "argv", ["cartwin", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        cli.main()
        raise SystemExit(0)
    captured = capsys.readouterr()
    return exc.value.code or 0, captured.err + captured.out


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium under Playwright, one per test module (the browser tests of the
    report and of the web app)."""
    from playwright.sync_api import sync_playwright

    from tests.report.test_report_browser import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()
