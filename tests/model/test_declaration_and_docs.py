"""The declaration of the default model keeps its promises: every parameter cited, the
right-hand side smooth, and docs/model.md in step with the code."""

from __future__ import annotations

import re
from pathlib import Path

import sympy as sp

from cartwin.model import DEFAULT_MODEL
from cartwin.model.symbolic import parse
from cartwin.model.docs import render_model_markdown
from cartwin.model.lupus_cart import REFERENCES

DOC = Path(__file__).resolve().parents[2] / "docs" / "model.md"
SOURCE_PREFIXES = ("assumed", "calibrated", "derived", "product edit mapping")


def test_committed_model_doc_is_current():
    """docs/model.md is generated; regenerate with
    `.venv/bin/python -m cartwin.model.docs > docs/model.md` when this fails."""
    assert DOC.read_text(encoding="utf-8") == render_model_markdown(DEFAULT_MODEL), (
        "docs/model.md is stale: run `.venv/bin/python -m cartwin.model.docs > docs/model.md`")


def test_doc_shows_every_parameter_and_thin_evidence():
    text = render_model_markdown(DEFAULT_MODEL)
    for p in DEFAULT_MODEL.parameters:
        assert f"| `{p.name}` |" in text, p.name
    assert "## Where the evidence is thin" in text
    for product in ("autologous_cd19", "tyu19", "allo_hla_intact"):
        assert f"`{product}`" in text
    for preset in ("erlangen", "standard", "reduced", "none"):
        assert f"| `{preset}` |" in text


def test_every_parameter_has_a_citation_or_a_stated_reason():
    """A source is a REFERENCES key, or 'assumed: <reason>' / 'calibrated: <target>' with the
    reason given, or a derivation."""
    keys = set(REFERENCES)
    for p in DEFAULT_MODEL.parameters:
        src = p.source.strip()
        low = src.lower()
        if low.startswith(("assumed", "calibrated")):
            assert ":" in src and len(src.split(":", 1)[1].strip()) > 3, (
                f"{p.name}: '{src}' gives no reason or target")
            continue
        if low.startswith(SOURCE_PREFIXES):
            continue
        cited = {w for w in re.findall(r"[A-Za-z]+\d{4}[a-z]*", src)}
        assert cited & keys or "doi" in low or "pmid" in low, f"{p.name}: '{src}' cites nothing known"


def test_right_hand_side_is_smooth():
    """No Max/Min/Piecewise/abs in the rates or the state-dependent assignments: a kink or a
    switch in the right-hand side trips LSODA's error control (issue 3, numerics)."""
    sym = parse(DEFAULT_MODEL)
    banned = (sp.Max, sp.Min, sp.Piecewise, sp.Abs, sp.Heaviside)
    exprs = list(sym.rates) + list(sym.dynamic_exprs.values())
    for e in exprs:
        assert not e.has(*banned), e


def test_model_version_changed_with_the_declaration():
    """The calibration of issue 3 changed the declaration; 0.1.0 was the uncalibrated seed."""
    assert DEFAULT_MODEL.version != "0.1.0"


def test_a_parameter_states_its_bounds_once_for_every_check():
    """Calibration, posterior tables and replicate draws all ask the parameter whether a value is
    within its declared bounds (inclusive, a missing bound open) and how to name them."""
    from cartwin.model.declaration import Parameter

    share = Parameter("F", 0.1, "1", "a share", "assumed: test", lower=0.0, upper=0.9)
    rate = Parameter("K", 0.5, "1/day", "a rate", "assumed: test", lower=0.01)
    assert share.within_bounds(0.0) and share.within_bounds(0.9) and not share.within_bounds(0.9000001)
    assert not share.within_bounds(-1e-12) and rate.within_bounds(1e9) and not rate.within_bounds(0.001)
    assert share.bounds_text == "0.0-0.9" and rate.bounds_text == "0.01-inf 1/day"
