"""The Arrow tables of a chunk, in the run directory's schemas (docs/run_directory.md)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from cartwin.model.declaration import Model
from cartwin.simulate.events import EVENT_SCHEMA
from cartwin.store import layout
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
                        which: list[int], observed=None) -> pa.Table:
    """The long table of ok patients; ``obs`` holds the observables ``which`` (in that order).
    ``days``: the sampling days, (T,) for every patient or (N, T) per patient with NaN where a
    patient gave no sample (a missed visit, after withdrawal: cartwin.plan.conduct).

    With ``observed`` (a :class:`cartwin.observation.Observed` of these patients), ``value`` is the
    observed value and the table adds the true value, the LLOQ and the BLQ flag
    (layout.OBSERVATION_MODEL_COLUMNS); derived tests of the observation model are appended."""
    if np.ndim(days) == 2:
        return _observations_per_patient(pop, model, days, obs, ok, which, observed)
    if observed is None:
        observables = [model.observables[i] for i in which]
        tests = [o.test for o in observables]
        units = [o.unit for o in observables]
        values = obs
    else:
        tests, units, values = list(observed.tests), list(observed.units), observed.observed
    idx = np.flatnonzero(ok)
    n_ok, n_t, n_o = idx.size, days.size, len(tests)
    # each subject's text once, gathered by index (an object array of every row is ~20x slower)
    subject = pa.array(list(pop.subject), pa.string()).take(pa.array(np.repeat(idx, n_t * n_o)))
    day = np.tile(np.repeat(days, n_o), n_ok)
    test_idx = np.tile(np.arange(n_o), n_ok * n_t)
    test_dict = pa.array(tests)
    # a dictionary of distinct units, so that the same values always give the same bytes
    distinct_units = sorted(set(units))
    unit_code = np.array([distinct_units.index(u) for u in units], dtype=np.int32)
    unit_dict = pa.array(distinct_units)
    columns = {
        "subject": subject,
        "arm": pa.DictionaryArray.from_arrays(np.zeros(len(subject), np.int32), pa.array([pop.arm])),
        "day": pa.array(day, pa.float64()),
        "test": pa.DictionaryArray.from_arrays(test_idx.astype(np.int32), test_dict),
        "value": pa.array(values[idx].reshape(-1), pa.float64()),
        "unit": pa.DictionaryArray.from_arrays(unit_code[test_idx], unit_dict),
    }
    if observed is not None:
        lloq = observed.lloq[test_idx]
        columns[layout.OBSERVATION_TRUE_VALUE] = pa.array(observed.true[idx].reshape(-1), pa.float64())
        columns[layout.OBSERVATION_LLOQ] = pa.array(lloq, pa.float64(), mask=np.isnan(lloq))
        columns[layout.OBSERVATION_BLQ] = pa.array(observed.blq[idx].reshape(-1), pa.bool_())
    return pa.table(columns)


def _observations_per_patient(pop, model: Model, days: np.ndarray, obs: np.ndarray, ok: np.ndarray,
                              which: list[int], observed=None) -> pa.Table:
    n_o = len(which) if observed is None else len(observed.tests)
    sampled = np.asarray(ok, bool)[:, None] & np.isfinite(days)  # (N, T)
    rows = np.repeat(sampled.reshape(-1), n_o)
    table = observations_table(pop, model, np.zeros(days.shape[1]), obs, np.ones(len(pop.subject), bool), which,
                               observed=observed)
    table = table.set_column(table.schema.get_field_index("day"), "day",
                             pa.array(np.repeat(np.nan_to_num(days).reshape(-1), n_o), pa.float64()))
    return table.filter(pa.array(rows))


def events_table(pop, model: Model, doses, days: np.ndarray, other=None,
                 sampled: np.ndarray | None = None) -> pa.Table:
    """Dose rows (EVID 1), a protocol rule's other decisions (EVID 2, from ``other``: per patient,
    items with ``day``, ``note`` and ``rule``) and one sampling row (EVID 0, MDV 1) per assessment
    day, ordered by subject, time and, at equal times, sampling first (a sample on a dose day is
    pre-dose). ``sampled``: which patients get sampling rows (those whose observations are stored;
    default all)."""
    index = {s: i + 1 for i, s in enumerate(model.state_names)}
    dose_rows = []
    for p, patient_doses in enumerate(doses):
        for d in patient_doses:
            route = model.dose_input(d.route)
            dose_rows.append((p, d.day, index[route.state], route.state, d.amount, route.unit,
                              d.amount / d.duration_days if d.duration_days > 0 else 0.0, d.drug, d.note,
                              getattr(d, "rule", ""), 1))
    for p, events in enumerate(other or ()):
        for e in events:
            dose_rows.append((p, e.day, 0, "", 0.0, "", 0.0, "", e.note, e.rule, 2))
    n, n_doses = len(pop.subject), len(dose_rows)
    keep = np.ones(n, bool) if sampled is None else np.asarray(sampled, bool)
    if np.ndim(days) == 2:  # per patient, NaN where no sample was taken (cartwin.plan.conduct)
        taken = np.isfinite(days) & keep[:, None]
        sample_patient, sample_time = np.nonzero(taken)[0], days[taken].astype(float)
    else:
        sample_patient = np.repeat(np.flatnonzero(keep), days.size)
        sample_time = np.tile(np.asarray(days, float), int(keep.sum()))
    n_samples = sample_time.size
    patient = np.concatenate([sample_patient, np.array([r[0] for r in dose_rows], dtype=np.int64)])
    time = np.concatenate([sample_time, np.array([r[1] for r in dose_rows], float)])
    evid = np.concatenate([np.zeros(n_samples, np.int8), np.array([r[10] for r in dose_rows], np.int8)])
    order = np.lexsort((evid, time, patient))  # stable: doses keep their given order

    # every sampling row holds the same value: text columns gather from the distinct values by
    # index, numbers fill a typed array (an object array of every row costs ~10x as much)
    source = np.concatenate([np.zeros(n_samples, np.int64), np.arange(1, n_doses + 1)])[order]

    def column(sampling_value, dose_values, dtype):
        if pa.types.is_string(dtype):
            return pa.array([sampling_value, *dose_values], dtype).take(pa.array(source))
        values = np.empty(n_samples + n_doses, dtype=dtype.to_pandas_dtype())
        values[:n_samples] = sampling_value
        values[n_samples:] = dose_values
        return pa.array(values[order], dtype)

    table = {
        "ID": pa.array(list(pop.subject), pa.string()).take(pa.array(patient[order])),
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
        "RULE": column("", [r[9] for r in dose_rows], pa.string()),
    }
    return pa.table(table, schema=EVENT_SCHEMA)
