"""Regenerate the generated parts of docs/ from the code: ``python -m cartwin.docs``.

Generated: the protocol JSON Schema, the test-code table of docs/run_directory.md (between
marker comments) and, when the model layer provides it, docs/model.md. Tests compare the
committed files with what this module renders, so the docs cannot go stale silently.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from cartwin.protocol.schema import Protocol
from cartwin.vocabulary import test_codes

START, END = "<!-- test-codes:start -->", "<!-- test-codes:end -->"


def protocol_schema_json() -> str:
    return json.dumps(Protocol.model_json_schema(), indent=2, sort_keys=True) + "\n"


def test_code_table() -> str:
    lines = ["| code | name | unit | kind | CDISC LBTESTCD | description |", "|---|---|---|---|---|---|"]
    for c in test_codes().values():
        lines.append(f"| `{c.code}` | {c.name} | {c.unit} | {c.kind} | {c.cdisc_lbtestcd or '-'} | "
                     f"{c.description} |")
    return "\n".join(lines)


def with_test_codes(markdown: str) -> str:
    block = f"{START}\n{test_code_table()}\n{END}"
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(markdown):
        raise ValueError("docs/run_directory.md lacks the test-code markers")
    return pattern.sub(lambda _: block, markdown)


def regenerate(docs: Path) -> list[Path]:
    written = []
    schema = docs / "protocol.schema.json"
    schema.write_text(protocol_schema_json())
    written.append(schema)
    rd = docs / "run_directory.md"
    rd.write_text(with_test_codes(rd.read_text()))
    written.append(rd)
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
