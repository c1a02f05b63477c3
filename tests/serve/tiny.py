"""A tiny trial and a tiny design search over it, for the web app's tests: the bundled example
followed for eight weeks; a design of one product, one dose and three lymphodepletion intensities
on its four patients (seconds)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def tiny_protocol() -> str:
    """The bundled example followed for eight weeks, with a second arm without lymphodepletion."""
    text = (ROOT / "examples" / "nct05988216.toml").read_text()
    text = text.replace("follow_up_days = 365", "follow_up_days = 56")
    text = re.sub(r"days = \[-6, -3, 0, [^\]]*\]", "days = [-6, -3, 0, 1, 3, 5, 7, 10, 14, 21, 28, 42, 56]", text)
    return text + ('\n[[arms]]\nid = "tyu19_none"\nlabel = "TyU19 1e6/kg without lymphodepletion"\n'
                   'product = "tyu19"\ndose = { cells_per_kg = 1e6 }\nlymphodepletion = "none"\n')


def tiny_spec(protocol: str = "tiny.toml") -> str:
    """One product and dose, intensities 0, 0.5 and 1 from no to reduced lymphodepletion, B-cell
    aplasia in at least half of the protocol's four patients, and one trial-level question."""
    return f'''schema_version = 1
design_id = "tiny-design"
title = "Least lymphodepletion for B-cell aplasia (tiny)"
protocol = "{protocol}"
patients = 4
trial_replicates = 200

[space]
products = ["tyu19"]
doses = [{{ cells_per_kg = 1e6 }}]
intensity_path = ["none", "reduced"]
intensity_levels = 3

[goal]
toxicity = ["neutropenia_grade3"]

[[goal.require]]
endpoint = "bcell_aplasia"
at_least = 0.5

[search]
start_patients = 2

[[trials]]
endpoint = "bcell_aplasia"
size = 4
at_least = 2
'''
