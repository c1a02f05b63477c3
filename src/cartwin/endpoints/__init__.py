"""Endpoints of a virtual trial, declared once as data and computed once.

``definitions.toml`` declares every endpoint (name, label, standard and version, definition,
censoring rule, population, unit, type) and the per-patient variables it is built from; a small
generic engine reads it:

    tables = clinical.score_observations(obs)              # the clinical layer's frames
    frame = endpoints.compute(tables, obs.frame)           # one row per patient, every endpoint
    table = endpoints.summarise(frame, by="arm")           # per arm, exact 95% intervals

The report, the README's twin table and any validation or design search use these functions; the
report scores a run directory part by part with ``endpoints.scoring``.
"""

from cartwin.endpoints.compute import compute
from cartwin.endpoints.summary import binary_summary, continuous_summary, summarise, time_to_event_summary
from cartwin.endpoints.table import Endpoint, EndpointTableError, Table, Variable, definitions, parse

__all__ = ["compute", "summarise", "definitions", "parse", "Endpoint", "Variable", "Table", "EndpointTableError",
           "binary_summary", "continuous_summary", "time_to_event_summary"]
