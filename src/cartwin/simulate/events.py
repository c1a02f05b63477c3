"""Per-patient event tables with NONMEM meaning, and their translation into solver schedules.

EVID 1 rows are doses (planned, or given by a protocol rule: RULE names it), EVID 2 rows are a
rule's decisions that are not doses (deferral) (AMT in the dose route's unit: mg of drug, or CAR-T cells; RATE in
amount/day for infusions, 0 for a bolus), EVID 0 rows are observations. TIME is in days
relative to the CAR-T infusion (day 0). At equal TIME, observation rows come first: a sample at
the time of a dose is a pre-dose sample.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from cartwin.simulate.schedule import Schedule, build_schedule
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
    state_index = {s: i for i, s in enumerate(model.state_names)}
    route_index = {d.name: i for i, d in enumerate(model.doses)}
    if not doses:
        return Schedule(np.empty(0), np.zeros((0, len(state_index))), np.zeros((0, len(state_index))))
    starts = np.array([d.day for d in doses], float)
    states = np.array([state_index[model.dose_input(d.route).state] for d in doses])
    amounts = np.array([d.amount * dose_scales[route_index[d.route]] for d in doses])
    durations = np.array([d.duration_days for d in doses], float)
    return build_schedule(len(state_index), starts, states, amounts, durations)
