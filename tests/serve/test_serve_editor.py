"""The protocol editor: generated from the schema, it round-trips every example protocol, edits
lists and forms of unions, and shows exactly the messages of ``cartwin validate``."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cartwin.protocol.schema import Protocol
from cartwin.serve import design, forms

ROOT = Path(__file__).resolve().parents[2]
# the protocols among the examples (a design spec is not one), SBML ones aside
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.toml")
                  if "design_id" not in (d := tomllib.loads(p.read_text())) and "sbml" not in d.get("model", ""))


class FormFields(HTMLParser):
    """What a browser submits for a form: every named input, selected option and textarea."""

    def __init__(self):
        super().__init__()
        self.fields, self.select, self.textarea = {}, None, None
        self.paths = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-path" in a:
            self.paths.add(a["data-path"])
        if tag == "input":
            self.fields[a["name"]] = a.get("value", "")
        elif tag == "select":
            self.select = a["name"]
            self.fields[self.select] = ""
        elif tag == "option" and self.select is not None and "selected" in a:
            self.fields[self.select] = a["value"]
        elif tag == "textarea":
            self.textarea = a["name"]
            self.fields[self.textarea] = ""

    def handle_endtag(self, tag):
        if tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None

    def handle_data(self, data):
        if self.textarea is not None:
            self.fields[self.textarea] += data


def submitted(data: dict) -> FormFields:
    parser = FormFields()
    parser.feed(str(forms.render(data)))
    return parser


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_round_trips_through_the_form(example):
    data = tomllib.loads(example.read_text())
    back = forms.parse(submitted(data).fields)
    assert back == data
    checked = design.check(forms.to_toml(back), example.name)
    if "cohort" in data.get("population", {}):
        # a protocol naming a file beside it (a cohort CSV) cannot be read by the app, which reads
        # nothing outside its run folder: refused, naming the field
        assert not checked.ok and any("population.cohort" in p for p in checked.problems)
    else:
        assert checked.ok


def test_the_form_has_a_control_for_every_schema_field():
    """A field added to the schema appears in the editor without a change to it."""
    data = tomllib.loads((ROOT / "examples" / "lymphodepletion.toml").read_text())
    paths = submitted(data).paths
    for name in Protocol.model_fields:
        if name != "schema_version":  # fixed by the schema: no choice to offer
            assert name in paths, name
    assert "arms.0.dose" in paths and "arms.0.lymphodepletion" in paths and "population.disease.pga" in paths


def test_add_and_remove_arms():
    data = tomllib.loads((ROOT / "examples" / "nct05988216.toml").read_text())
    fields = submitted(data).fields
    added = forms.parse(forms.apply_action(fields, "add:arms"))
    assert len(added["arms"]) == 2 and added["arms"][1] == {}
    again = submitted(added).fields
    again["arms.1.id"] = "second"
    removed = forms.parse(forms.apply_action(again, "remove:arms.0"))
    assert [a["id"] for a in removed["arms"]] == ["second"]


def test_switching_a_union_keeps_the_fields_both_forms_share():
    data = {"population": {"age": {"dist": "normal", "mean": 40, "sd": 8, "low": 18, "high": 70}}}
    fields = submitted(data).fields
    assert fields["population.age.__variant"] == "Normal"
    fields["population.age.__variant"] = "LogNormal"
    age = forms.parse(fields)["population"]["age"]
    assert age == {"dist": "lognormal", "low": 18, "high": 70}
    fields["arms.__count"] = "1"
    fields["arms.0.dose.__variant"] = "FlatCells"
    fields["arms.0.dose.cells"] = "5e7"
    assert forms.parse(fields)["arms"][0]["dose"] == {"cells": 5e7}


def _cli_validate(path: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "cartwin.cli", "validate", str(path.name)], cwd=path.parent,
                          capture_output=True, text=True, timeout=120)
    return (proc.stdout + proc.stderr).strip()


def test_messages_are_those_of_cartwin_validate(tmp_path):
    text = (ROOT / "examples" / "nct05988216.toml").read_text()
    bad = (text.replace("cells_per_kg = 1e6", "cells_per_kg = 1e10")
               .replace('lymphodepletion = "reduced"', 'lymphodepletion = "nonesuch"')
               .replace("follow_up_days = 365", "follow_up_days = 365\nmystery = 1"))
    cases = {"bad.toml": bad, "broken.toml": text.replace("seed = 20250601", "seed = "),
             "ok.toml": text}
    for name, body in cases.items():
        (tmp_path / name).write_text(body)
        expected = " ".join(_cli_validate(tmp_path / name).split())
        shown = " ".join(design.check(body, name).message().split())
        assert shown == expected, name


def test_a_protocol_naming_a_file_is_refused():
    check = design.check('model = "sbml:/etc/passwd"\n', "p.toml")
    assert not check.ok and "reads no file that a protocol names" in check.problems[0]


def test_oversized_protocols_are_refused():
    check = design.check("# " + "x" * design.MAX_PROTOCOL_BYTES, "big.toml")
    assert not check.ok and "larger than" in check.problems[0]


def test_names_from_uploads_are_plain_file_names():
    assert design.safe_name("../../etc/passwd") == "passwd"
    assert design.safe_name("C:\\x\\..\\evil name;.toml") == "C_x_.._evil_name_.toml"
    assert design.safe_name("") == design.DEFAULT_SOURCE
