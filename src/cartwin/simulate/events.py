"""Per-patient event tables with NONMEM meaning, and their translation into solver schedules.

EVID 1 rows are doses (AMT in the dose route's unit: mg of drug, or CAR-T cells; RATE in
amount/day for infusions, 0 for a bolus), EVID 0 rows are observations. TIME is in days
relative to the CAR-T infusion (day 0). At equal TIME, observation rows come first: a sample at
the time of a dose is a pre-dose sample.
"""

from __future__ import annotations

import numpy as np

from cartwin.simulate.schedule import Schedule, build_schedule
from cartwin.therapy.dosing import Dose


EVENT_COLUMNS = {
    "ID": "subject identifier",
    "TIME": "day relative to the CAR-T infusion (day 0); negative before it",
    "EVID": "event type: 0 observation, 1 dose (NONMEM meaning; 2-4 not used by cartwin runs)",
    "CMT": "compartment number (1-based position of the target state in the model)",
    "CMTNAME": "name of the target state (dose) or test code (observation)",
    "AMT": "dose amount in the route's unit (mg for drugs, cells for CAR-T); 0 on observations",
    "AMTU": "unit of AMT",
    "RATE": "infusion rate in AMT units per day; 0 = bolus",
    "DVID": "observation test code (observation rows)",
    "DV": "observed value; empty in a simulation's event table",  # the store says where values are
    "MDV": "1 when DV is missing or the row is a dose",
    "DRUG": "drug or product given (dose rows)",
    "NOTE": "dose rule applied (e.g. renal adjustment)",
}


def event_rows(subject: str, doses: list[Dose], model, obs_days: np.ndarray,
               obs_tests: tuple[str, ...]) -> list[dict]:
    index = {s: i + 1 for i, s in enumerate(model.state_names)}
    rows = []
    for d in doses:
        route = model.dose_input(d.route)
        rows.append({"ID": subject, "TIME": d.day, "EVID": 1, "CMT": index[route.state],
                     "CMTNAME": route.state, "AMT": d.amount, "AMTU": route.unit,
                     "RATE": d.amount / d.duration_days if d.duration_days > 0 else 0.0,
                     "DVID": "", "DV": None, "MDV": 1, "DRUG": d.drug, "NOTE": d.note})
    for day in obs_days:
        for test in obs_tests:
            rows.append({"ID": subject, "TIME": float(day), "EVID": 0, "CMT": 0,
                         "CMTNAME": test, "AMT": 0.0, "AMTU": "", "RATE": 0.0, "DVID": test,
                         "DV": None, "MDV": 1, "DRUG": "", "NOTE": ""})
    # observations before doses at equal time (pre-dose samples); stable otherwise
    rows.sort(key=lambda r: (r["TIME"], r["EVID"] != 0))
    return rows


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
