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


def test_every_product_preset_is_listed_in_the_protocol_docs():
    """docs/protocol.md's preset table names every product a protocol may ask for by name."""
    from cartwin.therapy.products import PRODUCTS

    text = (ROOT / "docs" / "protocol.md").read_text()
    missing = [name for name in PRODUCTS if f"| `{name}` |" not in text]
    assert not missing, f"presets missing from docs/protocol.md's Products table: {missing}"
