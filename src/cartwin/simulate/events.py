"""Per-patient event tables with NONMEM meaning, and their translation into solver schedules.

EVID 1 rows are doses (planned, or given by a protocol rule: RULE names it), EVID 2 rows are a
rule's decisions that are not doses (deferral) (AMT in the dose route's unit: mg of drug, or CAR-T cells; RATE in
amount/day for infusions, 0 for a bolus), EVID 0 rows are observations. TIME is in days
relative to the CAR-T infusion (day 0). At equal TIME, observation rows come first: a sample at
the time of a dose is a pre-dose sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from cartwin.simulate.schedule import Schedule, build_schedules
from cartwin.therapy.dosing import Dose


# The one event table: (column, Arrow type, meaning). Stored as events.parquet, described in
# the run directory's dictionary, and the source of the NONMEM export.
EVENT_FIELDS = (
    ("ID", pa.string(), "subject identifier"),
    ("TIME", pa.float64(), "day relative to the CAR-T infusion (day 0); negative before it"),
    ("EVID", pa.int8(), "event type: 0 observation, 1 dose, 2 other event (a protocol rule's decision that is not a dose, e.g. deferring lymphodepletion) (NONMEM meaning; 3-4 not used by cartwin runs)"),
    ("CMT", pa.int16(), "compartment number (1-based position of the target state in the model)"),
    ("CMTNAME", pa.string(), "name of the target state (dose) or test code (observation)"),
    ("AMT", pa.float64(), "dose amount in the route's unit (mg for drugs, cells for CAR-T); 0 on observations"),
    ("AMTU", pa.string(), "unit of AMT"),
    ("RATE", pa.float64(), "infusion rate in AMT units per day; 0 = bolus"),
    ("DVID", pa.string(), "observation test code (observation rows)"),
    ("DV", pa.float64(), "observed value; empty in a simulation's event table"),  # the store says where values are
    ("MDV", pa.int8(), "1 when DV is missing or the row is a dose"),
    ("DRUG", pa.string(), "drug or product given (dose rows)"),
    ("NOTE", pa.string(), "dose rule applied (e.g. renal adjustment), or what a protocol rule saw and did"),
    ("RULE", pa.string(), "id of the protocol rule that caused the event; empty for planned doses and samples"),
)
EVENT_COLUMNS = {name: meaning for name, _, meaning in EVENT_FIELDS}
EVENT_SCHEMA = pa.schema([(name, arrow_type) for name, arrow_type, _ in EVENT_FIELDS])


def doses_to_schedule(doses: list[Dose], model, dose_scales: np.ndarray) -> Schedule:
    """Doses -> state-space schedule, using this patient's route scales (amount -> state unit)."""
    return doses_to_schedules([doses], model, np.asarray(dose_scales, float)[None, :])[0]


def doses_to_schedules(doses: Sequence[Sequence[Dose]], model, dose_scales: np.ndarray) -> list[Schedule]:
    """Each patient's doses -> state-space schedule, with the patient's route scales (row of
    ``dose_scales``: amount -> state unit). Patients whose doses fall at the same times into the
    same states for the same durations (an arm's patients, unless a rule changed their course)
    share the breakpoints, found once for them all."""
    state_index = {s: i for i, s in enumerate(model.state_names)}
    route_index = {d.name: i for i, d in enumerate(model.doses)}
    n_states = len(state_index)
    out: list[Schedule | None] = [None] * len(doses)
    groups: dict[tuple, list[int]] = {}
    for p, patient_doses in enumerate(doses):
        key = tuple((d.day, d.route, d.duration_days) for d in patient_doses)
        groups.setdefault(key, []).append(p)
    for key, patients in groups.items():
        if not key:
            for p in patients:
                out[p] = Schedule(np.empty(0), np.zeros((0, n_states)), np.zeros((0, n_states)))
            continue
        routes = np.array([route_index[route] for _, route, _ in key])
        amounts = np.array([[d.amount for d in doses[p]] for p in patients], float) * \
            np.asarray(dose_scales, float)[np.asarray(patients)[:, None], routes[None, :]]
        built = build_schedules(n_states, np.array([day for day, _, _ in key], float),
                                np.array([state_index[model.dose_input(route).state] for _, route, _ in key]),
                                amounts, np.array([duration for _, _, duration in key], float))
        for p, schedule in zip(patients, built):
            out[p] = schedule
    return out
