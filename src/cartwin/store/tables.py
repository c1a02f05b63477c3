"""The Arrow tables of a chunk, in the run directory's schemas (docs/run_directory.md)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from cartwin.model.declaration import Model
from cartwin.simulate.events import EVENT_SCHEMA
from cartwin.vocabulary import PATIENT_COVARIATES


def patients_table(pop, model: Model, therapy, ok: np.ndarray, reasons) -> pa.Table:
    """One row per patient: arm, therapy, covariates, and whether the solve succeeded."""
    if therapy is None:  # an imported model: no therapy, no covariates
        n = len(pop.subject)
        return pa.table({"subject": pop.subject, "arm": [pop.arm] * n, "index": pop.index.astype(np.int64),
                         "model": [model.name] * n, "status": np.where(ok, "ok", "failed"),
                         "failure_reason": list(reasons)})
    n = len(pop.subject)
    cols = {
        "subject": pop.subject,
        "arm": [pop.arm] * n,
        "index": pop.index.astype(np.int64),
        "product": [therapy.product.name] * n,
        "regimen": [therapy.regimen.name] * n,
        # float64 in every arm (null for a flat dose), so that parts of mixed protocols concatenate
        "dose_cells_per_kg": pa.array([therapy.cells_per_kg] * n, pa.float64()),
        "dose_cells": (therapy.cells_per_kg * pop.covariates["WT"] if therapy.cells_per_kg is not None
                       else np.full(n, therapy.flat_cells)),
        "sex": np.where(pop.covariates["SEXF"] > 0.5, "F", "M"),
    }
    for name in PATIENT_COVARIATES:
        if name != "SEXF":
            cols[name] = pop.covariates[name]
    cols["status"] = np.where(ok, "ok", "failed")
    cols["failure_reason"] = list(reasons)
    return pa.table(cols)


def parameters_table(pop, model: Model) -> pa.Table:
    cols = {"subject": pop.subject}
    for j, name in enumerate(model.parameter_names):
        cols[name] = pop.theta[:, j]
    return pa.table(cols)


def observations_table(pop, model: Model, days: np.ndarray, obs: np.ndarray, ok: np.ndarray,
                        which: list[int]) -> pa.Table:
    """The long table of ok patients; ``obs`` holds the observables ``which`` (in that order)."""
    observables = [model.observables[i] for i in which]
    tests = [o.test for o in observables]
    units = [o.unit for o in observables]
    idx = np.flatnonzero(ok)
    n_ok, n_t, n_o = idx.size, days.size, len(tests)
    subject = np.repeat(np.asarray(pop.subject, dtype=object)[idx], n_t * n_o)
    day = np.tile(np.repeat(days, n_o), n_ok)
    test_idx = np.tile(np.arange(n_o), n_ok * n_t)
    test_dict = pa.array(tests)
    # a dictionary of distinct units, so that the same values always give the same bytes
    distinct_units = sorted(set(units))
    unit_code = np.array([distinct_units.index(u) for u in units], dtype=np.int32)
    unit_dict = pa.array(distinct_units)
    return pa.table({
        "subject": pa.array(subject, pa.string()),
        "arm": pa.DictionaryArray.from_arrays(np.zeros(subject.size, np.int32), pa.array([pop.arm])),
        "day": pa.array(day, pa.float64()),
        "test": pa.DictionaryArray.from_arrays(test_idx.astype(np.int32), test_dict),
        "value": pa.array(obs[idx].reshape(-1), pa.float64()),
        "unit": pa.DictionaryArray.from_arrays(unit_code[test_idx], unit_dict),
    })


def events_table(pop, model: Model, doses, days: np.ndarray, sampled: np.ndarray | None = None) -> pa.Table:
    """Dose rows (EVID 1) and one sampling row (EVID 0, MDV 1) per assessment day, ordered by
    subject, time and, at equal times, sampling first (a sample on a dose day is pre-dose).
    ``sampled``: which patients get sampling rows (those whose observations are stored; default all)."""
    index = {s: i + 1 for i, s in enumerate(model.state_names)}
    dose_rows = []
    for p, patient_doses in enumerate(doses):
        for d in patient_doses:
            route = model.dose_input(d.route)
            dose_rows.append((p, d.day, index[route.state], route.state, d.amount, route.unit,
                              d.amount / d.duration_days if d.duration_days > 0 else 0.0, d.drug, d.note))
    n, n_days, n_doses = len(pop.subject), days.size, len(dose_rows)
    sampling = np.arange(n) if sampled is None else np.flatnonzero(sampled)
    n_sampled = sampling.size
    patient = np.concatenate([np.repeat(sampling, n_days),
                              np.array([r[0] for r in dose_rows], dtype=np.int64)])
    time = np.concatenate([np.tile(days.astype(float), n_sampled), np.array([r[1] for r in dose_rows], float)])
    evid = np.concatenate([np.zeros(n_sampled * n_days, np.int8), np.ones(n_doses, np.int8)])
    order = np.lexsort((evid, time, patient))  # stable: doses keep their given order

    def column(sampling_value, dose_values, dtype):
        values = np.empty(n_sampled * n_days + n_doses, dtype=object)
        values[: n_sampled * n_days] = sampling_value
        values[n_sampled * n_days:] = dose_values
        return pa.array(values[order], dtype)

    table = {
        "ID": pa.array(np.asarray(pop.subject, dtype=object)[patient[order]], pa.string()),
        "TIME": pa.array(time[order], pa.float64()),
        "EVID": pa.array(evid[order], pa.int8()),
        "CMT": column(0, [r[2] for r in dose_rows], pa.int16()),
        "CMTNAME": column("", [r[3] for r in dose_rows], pa.string()),
        "AMT": column(0.0, [r[4] for r in dose_rows], pa.float64()),
        "AMTU": column("", [r[5] for r in dose_rows], pa.string()),
        "RATE": column(0.0, [r[6] for r in dose_rows], pa.float64()),
        "DVID": column("ALL", [""] * n_doses, pa.string()),
        "DV": pa.nulls(patient.size, pa.float64()),
        "MDV": pa.array(np.ones(patient.size, np.int8), pa.int8()),
        "DRUG": column("", [r[7] for r in dose_rows], pa.string()),
        "NOTE": column("", [r[8] for r in dose_rows], pa.string()),
    }
    return pa.table(table, schema=EVENT_SCHEMA)
