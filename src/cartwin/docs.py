"""Regenerate the generated parts of docs/ from the code: ``python -m cartwin.docs``.

Generated: the protocol JSON Schema, the test-code table of docs/run_directory.md and the patient
covariate and cited-correlation tables of docs/protocol.md (between marker comments) and, when the model layer provides it, docs/model.md. Tests compare the
committed files with what this module renders, so the docs cannot go stale silently.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from cartwin.protocol.schema import Protocol
from cartwin.vocabulary import PATIENT_COVARIATES, test_codes

START, END = "<!-- test-codes:start -->", "<!-- test-codes:end -->"
COV_START, COV_END = "<!-- covariates:start -->", "<!-- covariates:end -->"
CORR_START, CORR_END = "<!-- correlations:start -->", "<!-- correlations:end -->"


def protocol_schema_json() -> str:
    return json.dumps(Protocol.model_json_schema(), indent=2, sort_keys=True) + "\n"


def test_code_table() -> str:
    lines = ["| code | name | unit | kind | CDISC LBTESTCD | description |", "|---|---|---|---|---|---|"]
    for c in test_codes().values():
        lines.append(f"| `{c.code}` | {c.name} | {c.unit} | {c.kind} | {c.cdisc_lbtestcd or '-'} | "
                     f"{c.description} |")
    return "\n".join(lines)


def _between_markers(markdown: str, start: str, end: str, table: str, where: str) -> str:
    """``markdown`` with the text between the marker comments ``start`` and ``end`` replaced."""
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if not pattern.search(markdown):
        raise ValueError(f"{where} lacks the markers {start} ... {end}")
    return pattern.sub(lambda _: f"{start}\n{table}\n{end}", markdown)


def with_test_codes(markdown: str) -> str:
    return _between_markers(markdown, START, END, test_code_table(), "docs/run_directory.md")


def covariate_table() -> str:
    """The patient vocabulary as a table (docs/protocol.md)."""
    lines = ["| covariate | protocol field | unit | also accepted | physiologic range | meaning |",
             "|---|---|---|---|---|---|"]
    for c in PATIENT_COVARIATES.values():
        field = (f"`{c.field}`" if c.kind != "descriptor" else f"descriptor `{c.field}`") if c.field else \
            "derived from " + ", ".join(f"`{n}`" for n in c.derived_from)
        other = ", ".join(u for u in c.unit_factors if u != c.unit) or "-"
        ranged = f"{c.low:g}-{c.high:g}" if c.low is not None else "-"
        lines.append(f"| `{c.name}` | {field} | {c.unit} | {other} | {ranged} | {c.description} |")
    return "\n".join(lines)


def with_covariates(markdown: str) -> str:
    return _between_markers(markdown, COV_START, COV_END, covariate_table(), "docs/protocol.md")


def correlation_table() -> str:
    """cartwin's cited covariate correlations (cartwin.population.correlation) as a table."""
    from cartwin.population.correlation import CITED
    lines = ["| pair | rho | source |", "|---|---|---|"]
    for c in CITED:
        lines.append(f"| {c.first} - {c.second} | {c.rho:g} | {c.source} |")
    return "\n".join(lines)


def with_correlations(markdown: str) -> str:
    return _between_markers(markdown, CORR_START, CORR_END, correlation_table(), "docs/protocol.md")


def regenerate(docs: Path) -> list[Path]:
    written = []
    schema = docs / "protocol.schema.json"
    schema.write_text(protocol_schema_json())
    written.append(schema)
    rd = docs / "run_directory.md"
    rd.write_text(with_test_codes(rd.read_text()))
    written.append(rd)
    pd = docs / "protocol.md"
    pd.write_text(with_correlations(with_covariates(pd.read_text())))
    written.append(pd)
    try:
        from cartwin.model import DEFAULT_MODEL
        from cartwin.model.docs import render_model_markdown
    except ImportError:
        pass
    else:
        (docs / "model.md").write_text(render_model_markdown(DEFAULT_MODEL))
        written.append(docs / "model.md")
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs")
    for p in regenerate(target):
        print(p)
