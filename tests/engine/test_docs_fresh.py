"""Generated documentation matches the code (regenerate with `python -m cartwin.docs`)."""

from cartwin.docs import protocol_schema_json, with_covariates, with_test_codes
from tests.conftest import ROOT


def test_protocol_schema_is_fresh():
    assert (ROOT / "docs" / "protocol.schema.json").read_text() == protocol_schema_json(), \
        "docs/protocol.schema.json is stale: run `python -m cartwin.docs`"


def test_test_code_table_is_fresh():
    text = (ROOT / "docs" / "run_directory.md").read_text()
    assert with_test_codes(text) == text, "docs/run_directory.md is stale: run `python -m cartwin.docs`"


def test_covariate_table_is_fresh():
    text = (ROOT / "docs" / "protocol.md").read_text()
    assert with_covariates(text) == text, "docs/protocol.md is stale: run `python -m cartwin.docs`"
